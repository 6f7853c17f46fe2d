"""seqtool: recurrent networks on time series, as composable commands.

Every command is also a function here, with the same defaults as on the command line::

    from seqtool import generate, read_series, write_table
    table = generate("sine", n_series=4, seed=1)
"""

from __future__ import annotations

__version__ = "0.1.0"

_EXPORTS = {
    "generate": "data.generators",
    "read_table": "data.tables",
    "read_series": "data.reading",
    "write_table": "data.tables",
    "Table": "data.tables",
    "SeriesTable": "data.tables",
    "SeqtoolError": "errors",
    "train": "training.run",
    "predict": "forecast.predict",
    "rollout": "forecast.rollout",
    "backtest": "forecast.backtest",
    "profile": "data.profile",
}


def __getattr__(name: str):
    """Import on first use, so `import seqtool` (and the CLI's start-up) stays light."""
    if name in _EXPORTS:
        import importlib

        return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module 'seqtool' has no attribute {name!r}")
