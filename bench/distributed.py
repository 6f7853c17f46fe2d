"""Data-parallel training: samples per second of 2 processes x 1 thread against
1 process x 1 thread and 1 process x 2 threads, the same global batch, in one run; and
whole commands, start-up included: `train --nproc 2` against one process (its own
thread count) and against torchrun's launcher; beside them, the training speed-up over one
process that a whole command 1.5x faster would need: where one process's own threads
already use most of the cores, two ranks can win only what is left.

Target: 2 processes at least 1.6x one process on one thread. Throughput is from the
training seconds each summary reports (start-up and rendezvous left out), with --val 0:
every rank would compute the same validation loss, which is not data-parallel work.
"""

from __future__ import annotations

import re
import statistics
import subprocess
import tempfile
import time
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


WHOLE = "--hidden 64 --batch 256 --window 50 --steps 300 --val 0"
LAUNCHERS = {
    "one process": "seqtool train",
    "--nproc 2": "seqtool train --nproc 2",
    "torchrun, 2 processes": "GLOO_SOCKET_IFNAME=lo torchrun --standalone --local-addr 127.0.0.1 "
    "--nproc-per-node 2 -m seqtool train",
}


def _whole(d: Path, launcher: str) -> tuple[float, float]:
    """A whole command's wall seconds, and the seconds from its start to its first step (the
    first progress line's time less the training seconds its log row reports; NaN under
    torchrun, whose options take --log for an abbreviation of theirs)."""
    log = "" if "torchrun" in launcher else "--log log.csv"
    start = time.perf_counter()
    proc = subprocess.Popen(f"{launcher} d.csv {WHOLE} {log} -o w.pt", shell=True, cwd=d, env=ENV,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)  # fmt: skip
    seen = None
    for line in proc.stderr:
        if seen is None and line.startswith("seqtool: step"):
            seen = time.perf_counter() - start
    if proc.wait():
        raise RuntimeError(f"{launcher} exited {proc.returncode}")
    wall = time.perf_counter() - start
    if not log:
        return wall, float("nan")
    return wall, seen - float((d / "log.csv").read_text().splitlines()[1].split(",")[-1])


def whole_commands(d: Path, rates: dict[str, float], repeats: int = 3) -> list[Row]:
    """`train --nproc 2` as a user runs it, start-up included, in turns with the others; and
    how much faster than one process its training would have to be for a whole command 1.5x
    one process's, even with one process's start-up, beside what `rates` (LSTM 64's samples
    per second by mode, measured in this run) show two ranks and two cores give."""
    walls: dict[str, list[float]] = {name: [] for name in LAUNCHERS}
    firsts: dict[str, list[float]] = {name: [] for name in LAUNCHERS}
    for _ in range(repeats):
        for name, launcher in LAUNCHERS.items():
            wall, first = _whole(d, launcher)
            walls[name].append(wall)
            firsts[name].append(first)
    wall = {name: statistics.median(w) for name, w in walls.items()}
    first = {name: statistics.median(f) for name, f in firsts.items()}
    late = first["--nproc 2"] - first["one process"]
    speed = wall["one process"] / wall["--nproc 2"]
    training = wall["one process"] - first["one process"]
    needed = training / (wall["one process"] / 1.5 - first["one process"])
    one, threads, procs = rates.values()
    times = ", ".join(f"{n} {wall[n]:.1f} s" + (f" (first step at {first[n]:.1f} s)" if first[n] == first[n] else "")
                      for n in LAUNCHERS)  # fmt: skip
    return [
        Row("--nproc 2: start to first step, beyond one process's", late, "s", "<= 1.5 s", late <= 1.5,
            f"`seqtool train d.csv {WHOLE}`, median of {repeats}: {times}"),
        Row("--nproc 2: whole command, one process / --nproc 2", speed, "x", ">= 1.5", speed >= 1.5,
            "one process on the threads it chooses; torchrun's launcher, for comparison: "
            f"{wall['one process'] / wall['torchrun, 2 processes']:.2f}x"),
        Row("--nproc 2: training speed-up over one process that a 1.5x whole command needs", needed, "x",
            "reported", True, f"one process trains {training:.1f} s after its first step at "
            f"{first['one process']:.1f} s; "
            f"2 processes x 1 thread train {procs / threads:.2f}x faster than 1 process x 2 threads (LSTM 64 above), "
            f"and one thread's rate on each of 2 cores would be {2 * one / threads:.2f}x"),
    ]  # fmt: skip


def run() -> list[Row]:
    rows, rates_of = [], {}
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
            rates_of[model] = rate
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
        rows += whole_commands(d, rates_of["LSTM 64 x batch 256"])
    return rows
