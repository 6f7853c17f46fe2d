"""Data-parallel training: samples per second of 2 processes x 1 thread against
1 process x 1 thread and 1 process x 2 threads, the same global batch, in one run.

Target: 2 processes at least 1.6x one process on one thread. Throughput is from the
training seconds each summary reports (start-up and rendezvous left out), with --val 0:
every rank would compute the same validation loss, which is not data-parallel work.
"""

from __future__ import annotations

import re
import statistics
import subprocess
import tempfile
from pathlib import Path

from .common import ENV, Row

MODES = {
    "1 process x 1 thread": "--threads 1",
    "1 process x 2 threads": "--threads 2",
    "2 processes x 1 thread": "--threads 1 --nproc 2",
}
MODELS = {  # name: (options, steps, repeats)
    "LSTM 64 x batch 256": ("--hidden 64 --batch 256 --window 50", 300, 3),
    "LSTM 32 x batch 32 (the default)": ("--hidden 32 --batch 32 --window 50", 600, 1),
}


def _samples_per_second(d: Path, options: str, steps: int) -> float:
    done = subprocess.run(
        f"seqtool train d.csv {options} --steps {steps} --val 0 -o m.pt",
        shell=True,
        cwd=d,
        env=ENV,
        capture_output=True,
        text=True,
        check=True,
    )
    seconds = float(re.search(r"in ([\d.]+) s", done.stderr).group(1))
    batch, window = (int(re.search(rf"--{k} (\d+)", options).group(1)) for k in ("batch", "window"))
    return steps * batch * window / seconds


def run() -> list[Row]:
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        subprocess.run("seqtool gen sine -n 256 --length 400 -o d.csv", shell=True, cwd=d, env=ENV, check=True)
        for model, (options, steps, repeats) in MODELS.items():
            rates: dict[str, list[float]] = {mode: [] for mode in MODES}
            for _ in range(repeats):  # in turns, so that drift hits all alike
                for mode, flags in MODES.items():
                    rates[mode].append(_samples_per_second(d, f"{options} {flags}", steps))
            rate = {mode: statistics.median(r) for mode, r in rates.items()}
            one, threads, procs = rate.values()
            note = f"{model}, {steps} steps, median of {repeats}: " + ", ".join(
                f"{m} {r:,.0f} samples/s" for m, r in rate.items()
            )
            target = model.startswith("LSTM 64")
            rows.append(
                Row(
                    f"{model}: 2 processes / 1 process x 1 thread",
                    procs / one,
                    "x",
                    ">= 1.6" if target else "beside",
                    procs >= 1.6 * one or not target,
                    note,
                )
            )
            rows.append(
                Row(
                    f"{model}: 2 processes / 1 process x 2 threads",
                    procs / threads,
                    "x",
                    "beside",
                    True,
                    "reported, no target",
                )
            )
    return rows
