"""What every benchmark shares: interleaved timing, result rows, the machine."""

from __future__ import annotations

import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

BIN = Path(sys.executable).parent
ENV = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}  # the venv's seqtool first


@dataclass
class Row:
    """One measured figure, with its target and whether it holds."""

    name: str
    value: float
    unit: str
    target: str
    passed: bool
    note: str = ""


def interleaved(runs: dict[str, Callable[[], object]], repeats: int) -> dict[str, float]:
    """Median wall seconds of each callable, run in turns (A B A B ...) so drift hits all alike."""
    times: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(repeats):
        for name, run in runs.items():
            start = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) for name, t in times.items()}


def sh(command: str, cwd: Path) -> subprocess.CompletedProcess:
    """Run a shell pipeline (pipefail) with the venv's seqtool first on PATH; its output, text."""
    return subprocess.run(
        ["bash", "-o", "pipefail", "-c", command], cwd=cwd, env=ENV, capture_output=True, text=True, check=True
    )


def command(*argv: str) -> Callable[[], None]:
    """A callable that runs a command with the venv's bin first on PATH, output discarded."""

    def run() -> None:
        subprocess.run(argv, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)

    return run


def machine() -> str:
    cpus = os.cpu_count()
    try:
        import torch

        torch_version = torch.__version__
        if torch.cuda.is_available():
            torch_version += f", {torch.cuda.get_device_name(0)}"
    except ImportError:
        torch_version = "not installed"
    return (
        f"{platform.machine()}, {cpus} cores, Python {platform.python_version()}, "
        f"torch {torch_version}, {platform.system()} {platform.release()}"
    )


def peak_rss_mb(argv: list[str]) -> float:
    """Peak resident memory of a whole command, in MiB (it must succeed)."""
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    code = (
        "import resource, subprocess, sys\n"
        f"subprocess.run({argv!r}, check=True, stdout=subprocess.DEVNULL)\n"
        "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env)
    return int(out.stdout.split()[-1]) / 1024
