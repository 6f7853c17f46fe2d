"""Memory in proportion to rows: a ragged table (one long series and many short ones)
against an even table of the same number of rows, through train, predict and rollout.

When everything was padded to the longest series, the ragged table trained
at 1.79 GB against 0.38 GB, predict asked for 9.8 GB and rollout did not finish in 7 min.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np

from .common import BIN, Row, peak_rss_mb

LONG, SHORT, N_SHORT = 200_000, 5, 1_000  # 205,000 rows
TRAIN = ["--window", "5", "--burn-in", "2", "--steps", "200", "--hidden", "32", "--threads", "1", "-q"]


def tables(d: Path) -> dict[str, Path]:
    from seqtool.data.tables import SeriesTable, write_table

    rng = np.random.default_rng(0)
    ragged = [np.sin(np.arange(LONG) * 0.1)] + [
        np.sin(rng.uniform(0, 6) + np.arange(SHORT) * 0.1) for _ in range(N_SHORT)
    ]
    per = (LONG + SHORT * N_SHORT) // (N_SHORT + 1)
    even = [np.sin(rng.uniform(0, 6) + np.arange(per) * 0.1) for _ in range(N_SHORT + 1)]
    paths = {}
    for name, series in (("ragged", ragged), ("even", even)):
        paths[name] = d / f"{name}.csv"
        write_table(SeriesTable.from_arrays(series), paths[name])
    return paths


def run() -> list[Row]:
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        paths = tables(d)
        seqtool = str(BIN / "seqtool")
        peaks: dict[str, dict[str, float]] = {}
        seconds: dict[str, dict[str, float]] = {}
        for name, path in paths.items():
            model = str(d / f"{name}.pt")
            commands = {
                "train": [seqtool, "train", str(path), *TRAIN, "-o", model],
                "predict": [seqtool, "predict", model, str(path), "-q", "-o", str(d / f"{name}_p.csv")],
                "rollout": [seqtool, "rollout", model, str(path), "-q", "-o", str(d / f"{name}_r.csv")],
            }
            peaks[name], seconds[name] = {}, {}
            for command, argv in commands.items():
                start = time.perf_counter()
                peaks[name][command] = peak_rss_mb(argv)
                seconds[name][command] = time.perf_counter() - start
        for command in ("train", "predict", "rollout"):
            ratio = peaks["ragged"][command] / peaks["even"][command]
            rows.append(Row(
                f"{command}, ragged / even table: peak memory", ratio, "x", "<= 1.5", ratio <= 1.5,
                f"{peaks['ragged'][command]:.0f} vs {peaks['even'][command]:.0f} MiB, "
                f"{seconds['ragged'][command]:.1f} vs {seconds['even'][command]:.1f} s; "
                f"1 x {LONG:,} + {N_SHORT:,} x {SHORT} steps vs "
                f"{N_SHORT + 1:,} x {(LONG + SHORT * N_SHORT) // (N_SHORT + 1)}; "
                f"train: `{' '.join(TRAIN)}`",
            ))  # fmt: skip
    return rows
