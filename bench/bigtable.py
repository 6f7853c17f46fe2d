"""Tables bigger than memory: a 100M-row CSV converted to a table folder, then
trained in place: peak resident memory of `convert` and `train`, and the time from the
start of `train` to its first optimizer step; beside them, 1M rows trained from CSV and
from a folder, measured in the same run.

Targets: train of the 100M-row table under 1.5 GiB peak, its first step within 5 s.
The time to the first step is read off the run: the moment its first progress line
(step 25) appears, less the training seconds its log gives for those 25 steps.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np

from .common import BIN, ENV, Row

ROWS, LENGTH = 100_000_000, 1_000
TRAIN = ["--steps", "100", "--threads", "1"]


def write_csv(path: Path, rows: int, length: int = LENGTH) -> None:
    """Sines of random phase and frequency, `length` steps each, a million rows at a time."""
    rng = np.random.default_rng(0)
    per = max(1, 1_000_000 // length)
    with open(path, "w") as f:
        f.write("series,x\n")
        for first in range(0, rows // length, per):
            n = min(per, rows // length - first)
            phase, freq = rng.uniform(0, 2 * np.pi, (n, 1)), rng.uniform(0.05, 0.2, (n, 1))
            x = np.sin(phase + freq * np.arange(length)).ravel()
            ids = np.repeat(np.arange(first, first + n), length)
            f.write(("%d,%.6f\n" * len(x)) % tuple(np.column_stack([ids, x]).ravel().tolist()))


def _run(argv: list[str], first_step: bool = False) -> tuple[float, float]:
    """Peak resident MiB of a command and, with `first_step`, seconds from its start to its
    first optimizer step (else its wall seconds)."""
    start = time.perf_counter()
    proc = subprocess.Popen(argv, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    seen = None
    for line in proc.stderr:
        if seen is None and line.startswith("seqtool: step"):
            seen = time.perf_counter() - start
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode:
        raise RuntimeError(f"{' '.join(argv)} exited {proc.returncode}")
    wall = time.perf_counter() - start
    if not first_step:
        return usage.ru_maxrss / 1024, wall
    log = Path(argv[argv.index("--log") + 1]).read_text().splitlines()
    return usage.ru_maxrss / 1024, seen - float(log[1].split(",")[-1])


def run() -> list[Row]:
    seqtool = str(BIN / "seqtool")
    rows = []
    with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_TMP")) as tmp:
        d = Path(tmp)
        small = d / "small.csv"
        write_csv(small, 1_000_000)
        subprocess.run(
            [seqtool, "convert", str(small), "-o", str(d / "small.seq")], env=ENV, check=True, capture_output=True
        )
        csv_peak, _ = _run(
            [seqtool, "train", str(small), *TRAIN, "-o", str(d / "a.pt"), "--log", str(d / "a.csv")], True
        )
        folder_peak, _ = _run(
            [seqtool, "train", str(d / "small.seq"), *TRAIN, "-o", str(d / "b.pt"), "--log", str(d / "b.csv")], True
        )
        rows.append(
            Row(
                "1M rows: train peak memory, from CSV",
                csv_peak,
                "MiB",
                "beside",
                True,
                "`seqtool train small.csv --steps 100`",
            )
        )
        rows.append(
            Row(
                "1M rows: train peak memory, from a folder",
                folder_peak,
                "MiB",
                "beside",
                True,
                "`seqtool convert small.csv -o small.seq && seqtool train small.seq`",
            )
        )

        big = d / "big.csv"
        start = time.perf_counter()
        write_csv(big, ROWS)
        written = time.perf_counter() - start
        size = big.stat().st_size / 2**30
        convert_peak, convert_s = _run([seqtool, "convert", str(big), "-o", str(d / "big.seq")])
        big.unlink()
        os.sync()  # the folder on disk, so that its writing does not slow the runs below
        runs = [
            _run(
                [
                    seqtool,
                    "train",
                    str(d / "big.seq"),
                    *TRAIN,
                    "-o",
                    str(d / f"c{k}.pt"),
                    "--log",
                    str(d / f"c{k}.csv"),
                ],
                True,
            )
            for k in range(3)
        ]
        peak, first = max(r[0] for r in runs), statistics.median(r[1] for r in runs)
        what = (
            f"{ROWS:,} rows ({ROWS // LENGTH:,} series of {LENGTH}), a {size:.1f} GiB CSV (written in {written:.0f} s)"
        )
        rows.append(
            Row(
                "100M rows: convert peak memory",
                convert_peak,
                "MiB",
                "beside",
                True,
                f"{what}; converted in {convert_s:.0f} s",
            )
        )
        rows.append(
            Row(
                "100M rows: train peak memory",
                peak,
                "MiB",
                "< 1536",
                peak < 1536,
                f"`seqtool train big.seq {' '.join(TRAIN)}`, the most of 3 runs",
            )
        )
        seconds = ", ".join(f"{r[1]:.2f}" for r in runs)
        rows.append(
            Row(
                "100M rows: start to first step",
                first,
                "s",
                "<= 5",
                first <= 5,
                f"median of 3 runs ({seconds} s): importing torch and its optimizer (about 4 s), the folder opened, "
                "the validation rows read, the model built",
            )
        )
    return rows
