"""How far the pinned runs (tests/test_pinned.py) move when only the order of float sums
changes, and how far when behaviour changes: the two sides of the pinned test's tolerance.

Each variant runs the pinned runs in a fresh process (`tests/test_pinned.py dump`) and is
compared with tests/data/pinned.npz, as the test compares: each array's largest difference
relative to its largest magnitude. The order of sums changes with the thread count and with
the kernels torch picks: ATen's per instruction set (ATEN_CPU_CAPABILITY), MKL's
(MKL_ENABLE_INSTRUCTIONS, MKL_CBWR) and oneDNN's (ONEDNN_MAX_CPU_ISA); and with numpy's
(NPY_DISABLE_CPU_FEATURES), which makes the data. x86-64 names: run it on such a machine. A torch in another
virtual environment (`make floors` leaves the lowest torch allowed in .venv-floors) is one
more variant where it exists.

Targets: every kernel variant within the test's TOLERANCE; every change of behaviour beyond
10x TOLERANCE (the note gives each run's figure: a run that keeps its best evaluated weights
does not see one step more).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from .common import Row

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
import test_pinned as pinned  # noqa: E402  (the runs and the comparison are the test's own)

NO_AVX512 = "X86_V4 AVX512_ICL AVX512_SPR"  # numpy's dispatch targets above AVX2
KERNELS = {  # name: (environment, threads)
    "2 threads": ({}, 2),
    "ATEN_CPU_CAPABILITY=avx2": ({"ATEN_CPU_CAPABILITY": "avx2"}, 1),
    "ATEN_CPU_CAPABILITY=default": ({"ATEN_CPU_CAPABILITY": "default"}, 1),
    "MKL_ENABLE_INSTRUCTIONS=AVX2": ({"MKL_ENABLE_INSTRUCTIONS": "AVX2"}, 1),
    "MKL_ENABLE_INSTRUCTIONS=SSE4_2": ({"MKL_ENABLE_INSTRUCTIONS": "SSE4_2"}, 1),
    "MKL_CBWR=COMPATIBLE": ({"MKL_CBWR": "COMPATIBLE"}, 1),
    "ONEDNN_MAX_CPU_ISA=AVX2": ({"ONEDNN_MAX_CPU_ISA": "AVX2"}, 1),
    "ONEDNN_MAX_CPU_ISA=SSE41": ({"ONEDNN_MAX_CPU_ISA": "SSE41"}, 1),
    "NPY_DISABLE_CPU_FEATURES=X86_V4 (numpy without AVX-512)": ({"NPY_DISABLE_CPU_FEATURES": NO_AVX512}, 1),
    "all of the lowest, 2 threads": (
        {
            "ATEN_CPU_CAPABILITY": "default",
            "MKL_CBWR": "COMPATIBLE",
            "ONEDNN_MAX_CPU_ISA": "SSE41",
            "NPY_DISABLE_CPU_FEATURES": "X86_V3 " + NO_AVX512,
        },
        2,
    ),
}
CHANGES = {  # name: the change to every run's settings
    "one step more": {"steps": ["+", 1]},
    "learning rate x 1.001": {"lr": ["*", 1.001]},
    "learning rate x 1.0001": {"lr": ["*", 1.0001]},
}
FLOORS = ROOT / ".venv-floors" / "bin" / "python"


def _dump(python: str, env: dict, threads: int, change: dict | None = None) -> dict[str, np.ndarray]:
    with tempfile.TemporaryDirectory() as d:
        out = Path(d) / "got.npz"
        argv = [
            python,
            str(ROOT / "tests" / "test_pinned.py"),
            "dump",
            str(out),
            str(threads),
            json.dumps(change or {}),
        ]
        subprocess.run(argv, env={**os.environ, **env}, check=True, cwd=ROOT)
        with np.load(out, allow_pickle=False) as saved:
            return {k: v for k, v in saved.items() if k != "machine"}


def _runs_moved(moved: dict[str, float]) -> dict[str, float]:
    """The largest difference of each trained run: its weights and the tables made from
    them (gradnorm.model is made from sine_lstm's model; gradnorm.fresh trains nothing)."""
    out: dict[str, float] = {}
    for key, d in moved.items():
        run = key.split("/")[0]
        run = "sine_lstm" if run == "gradnorm.model" else run.split(".")[0]
        if run != "gradnorm":
            out[run] = max(out.get(run, 0.0), d)
    return out


def run() -> list[Row]:
    want, _ = pinned.reference()
    want.pop("machine", None)
    tol = pinned.TOLERANCE
    rows = []
    variants = {name: (sys.executable, env, threads) for name, (env, threads) in KERNELS.items()}
    if FLOORS.exists():
        version = subprocess.run(
            [str(FLOORS), "-c", "import torch; print(torch.__version__)"], capture_output=True, text=True
        ).stdout.strip()
        variants[f"torch {version} (.venv-floors)"] = (str(FLOORS), {}, 1)
    for name, (python, env, threads) in variants.items():
        got = _dump(python, env, threads)
        moved, changed = pinned.differences(got, want), pinned.changed_bytes(got, want)
        key = max(moved, key=moved.get)
        whole = [k for k in changed if k.endswith("/sha256")]
        note = f"largest at {key}; bytes differ in {len(changed) - len(whole)} weight arrays and {len(whole)} tables"
        rows.append(Row(f"kernels: {name}", moved[key], "", f"<= {tol:g}", moved[key] <= tol, note))
    for name, change in CHANGES.items():
        per_run = _runs_moved(pinned.differences(_dump(sys.executable, {}, 1, change), want))
        most = max(per_run.values())
        note = "largest difference of each run: " + ", ".join(f"{r} {d:.2g}" for r, d in per_run.items())
        rows.append(Row(f"change: {name}", most, "", f">= {10 * tol:g}", most >= 10 * tol, note))
    return rows
