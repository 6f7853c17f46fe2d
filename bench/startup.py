"""Start-up: commands that need no model must start well under half a second.

The interpreter alone and `import torch` are measured in the same run, interleaved, as
the floor and as what a command that imported torch eagerly would pay.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from .common import Row, command, interleaved

LIMIT_S = 0.5


def run(repeats: int = 7) -> list[Row]:
    python = sys.executable
    with tempfile.TemporaryDirectory() as tmp:
        table = Path(tmp) / "ten.csv"
        command("seqtool", "gen", "sine", "--n-series", "10", "-o", str(table))()
        plot_s = interleaved({"plot": command("seqtool", "plot", str(table), "-o", str(Path(tmp) / "ten.png"))}, 3)[
            "plot"
        ]
    times = interleaved(
        {
            "python -c pass": command(python, "-c", "pass"),
            "python -c 'import torch'": command(python, "-c", "import torch"),
            "seqtool --help": command("seqtool", "--help"),
            "seqtool gen sine --n-series 1": command("seqtool", "gen", "sine", "--n-series", "1"),
        },
        repeats,
    )
    torch_s = times["python -c 'import torch'"]
    rows = []
    for name in ("seqtool --help", "seqtool gen sine --n-series 1"):
        rows.append(
            Row(
                f"start-up: {name}",
                times[name],
                "s",
                f"< {LIMIT_S} s",
                times[name] < LIMIT_S,
                f"{times[name] / torch_s:.2f}x of `import torch` ({torch_s:.2f} s); "
                f"interpreter alone {times['python -c pass']:.3f} s",
            )
        )
    rows.append(
        Row(
            "start-up: seqtool plot of a 10-series table",
            plot_s,
            "s",
            "< 2 s",
            plot_s < 2,
            "whole command, image written",
        )
    )
    return rows
