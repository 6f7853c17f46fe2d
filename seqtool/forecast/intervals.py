"""Intervals as columns and sample paths as a forecast: the bounds at `--level` as
`yhat_lo`/`yhat_hi`, the paths' point forecast and quantiles, and `--paths`' long table."""

from __future__ import annotations

import numpy as np

from seqtool.data.tables import SeriesTable, Table
from seqtool.forecast.forecaster import Forecaster
from seqtool.forecast.metrics import tail
from seqtool.model.network import StudentTHead


def from_paths(m: Forecaster, drawn: np.ndarray, level: float) -> tuple[np.ndarray, dict]:
    """Sample paths [N, ...] as a forecast: their mean (their median for a model with
    --log-values, as its one-step yhat), their quantiles at `level` ("lo", "hi"), and the
    paths for the sample CRPS ("paths"; not of a logged Student-t: its CRPS is infinite)."""
    q = tail(level)
    point = np.median(drawn, axis=0) if m.scaling.diff.log else drawn.mean(axis=0)
    bounds = {"lo": np.quantile(drawn, q, axis=0), "hi": np.quantile(drawn, 1 - q, axis=0)}
    return point, bounds if m.scaling.diff.log and isinstance(m.net.head, StudentTHead) else {**bounds, "paths": drawn}


def interval_columns(names: list[str], bounds: dict) -> dict[str, np.ndarray]:
    """The columns of an interval's bounds ("lo", "hi" in `bounds`, [rows, G]): yhat_lo, ..."""
    columns = {}
    for key in ("lo", "hi"):
        if key in bounds:
            columns.update({f"{name}_{key}": bounds[key][:, j] for j, name in enumerate(names)})
    return columns


def paths_table(result: SeriesTable, drawn: np.ndarray, names: list[str]) -> Table:
    """The sample paths in long form: `series` (where the table has one), `path`, `t`
    (where it has one), `phase` and the outputs, path after path."""
    n, rows = drawn.shape[:2]
    columns = {key: np.tile(result.columns[key], n) for key in ("series", "t") if key in result.columns}
    columns["path"] = np.repeat(np.arange(n), rows)
    columns["phase"] = np.tile(result.columns["phase"], n)
    columns.update({name: drawn[:, :, j].reshape(-1) for j, name in enumerate(names)})
    order = ["series", "path", "t", "phase", *names]
    return Table({key: columns[key] for key in order if key in columns}, result.source)
