"""Behaviour pinned across refactors: fixed-seed runs give the values they gave before.

Four small runs (RUNS), each exercising other parts of the loop, are trained with one
thread in a fresh process; their weights and the tables that `predict`, `rollout` and
`gradnorm` write from them are compared with tests/data/pinned.npz, which holds the values
themselves.

Everywhere, numbers are compared within TOLERANCE: torch's CPU kernels (ATen's for each
instruction set, MKL's, oneDNN's) and the thread count change the order of float sums,
so another CPU gives other last bits for the same behaviour. `python -m bench kernels`
measures that spread over thread counts and kernel choices, and what real changes (a
learning rate 1e-3 higher, one step more) move; TOLERANCE sits between the two, and
`test_a_change_of_behaviour_is_caught` keeps it there. On the machine the references were
made on (the same torch, CPU and kernel settings: `machine()`, stored beside the values),
the bytes must be the same too: there a refactor keeps every bit.

After a change of behaviour, renew the references on any machine and say why in the
commit: `.venv/bin/python tests/test_pinned.py renew`.

Changed on purpose since the first references: a stateful model learns the state each
series starts from (`SeqModel.initial`); an epoch's order is a keyed Feistel permutation
(`batches._Shuffle`), not torch.randperm.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

REFERENCE = Path(__file__).parent / "data" / "pinned.npz"
TOLERANCE = 1e-4  # relative to the largest magnitude of each array (see measure())
KERNEL_SETTINGS = (
    "ATEN_CPU_CAPABILITY",
    "MKL_ENABLE_INSTRUCTIONS",
    "MKL_CBWR",
    "ONEDNN_MAX_CPU_ISA",
    "NPY_DISABLE_CPU_FEATURES",
)

RUNS = {  # name: (generated data, training settings)
    "sine_lstm": (
        ("sine", dict(n_series=8, length=120, seed=1)),
        dict(cell="lstm", hidden=8, steps=60, batch=8, window=30),
    ),
    "sine_gru_stateful": (
        ("sine", dict(n_series=6, length=150, seed=2)),
        dict(
            cell="gru",
            hidden=8,
            layers=2,
            steps=50,
            batch=4,
            window=20,
            stateful=True,
            clip=0.5,
            schedule="plateau",
            patience=50,
        ),
    ),
    "sincos_rnn_sgd": (
        ("sincos", dict(n_series=6, length=80, seed=3)),
        dict(
            cell="rnn",
            hidden=6,
            layers=2,
            dropout=0.1,
            optimizer="sgd",
            lr=0.05,
            steps=40,
            batch=4,
            window=25,
            schedule="none",
            val=0.2,
        ),
    ),
    "adding_lstm": (
        ("adding", dict(n_series=40, length=30, seed=4)),
        dict(cell="lstm", hidden=8, steps=40, batch=8, window=30, burn_in=0, val=0.0),
    ),
}


def machine() -> str:
    """What decides the last bits of a run: torch, the CPU and its kernels' settings."""
    import torch

    cpu = platform.machine()
    if os.path.exists("/proc/cpuinfo"):
        lines = Path("/proc/cpuinfo").read_text().splitlines()
        first = {
            k.strip(): v.strip()
            for k, _, v in (line.partition(":") for line in lines[: lines.index("") if "" in lines else None])
        }
        cpu += " " + " ".join(
            first.get(k, "")
            for k in ("vendor_id", "model name", "cpu family", "model", "flags", "Features", "CPU part")
        )
    settings = {k: os.environ[k] for k in KERNEL_SETTINGS if k in os.environ}
    text = f"{torch.__version__} {torch.backends.cpu.get_cpu_capability()} {cpu} {sorted(settings.items())}"
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def run(folder: Path, threads: int = 1, change: dict | None = None, names=tuple(RUNS)) -> dict[str, np.ndarray]:
    """The pinned runs `names` in `folder`, as named arrays: each run's weights, the columns
    of each table it writes, and each table file's sha256. `change` alters the training
    settings, to show that the comparison catches it: {"steps": ["+", 1], "lr": ["*", 1.001]}."""
    from seqtool.config import TrainConfig
    from seqtool.data import generators
    from seqtool.data.tables import write_table
    from seqtool.forecast.predict import predict
    from seqtool.forecast.rollout import rollout
    from seqtool.gradients import gradnorm
    from seqtool.model.checkpoint import load_checkpoint
    from seqtool.training.run import train

    got: dict[str, np.ndarray] = {}
    tables: dict[str, Path] = {}
    for name in names:
        (kind, options), settings = RUNS[name]
        data, model = folder / f"{name}.csv", folder / f"{name}.pt"
        write_table(generators.generate(kind, **options), data)
        train(data, model, _changed(TrainConfig(seed=7, **settings), change or {}), quiet=True, threads=threads)
        for key, tensor in load_checkpoint(model)["weights"].items():
            got[f"{name}/weights/{key}"] = tensor.numpy()
        predict(model, data, output=folder / f"{name}.p.csv", quiet=True, threads=threads)
        tables[f"{name}.predict"] = folder / f"{name}.p.csv"
        if kind == "sine":
            rollout(model, data, output=folder / f"{name}.r.csv", warmup=40, quiet=True, threads=threads)
            tables[f"{name}.rollout"] = folder / f"{name}.r.csv"
    gradnorm(output=folder / "g.csv", length=30, batch=8, hidden=8, quiet=True, threads=threads)
    tables["gradnorm.fresh"] = folder / "g.csv"
    if "sine_lstm" in names:
        gradnorm(
            folder / "sine_lstm.pt",
            folder / "sine_lstm.csv",
            batch=4,
            loss="all",
            output=folder / "g2.csv",
            quiet=True,
            threads=threads,
        )
        tables["gradnorm.model"] = folder / "g2.csv"
    for name, path in tables.items():
        got.update(_columns(name, path))
        got[f"{name}/sha256"] = np.array(hashlib.sha256(path.read_bytes()).hexdigest())
    return got


def _changed(config, change: dict):
    from dataclasses import replace

    by = {"+": lambda a, b: a + b, "*": lambda a, b: a * b}
    return replace(config, **{k: by[op](getattr(config, k), v) for k, (op, v) in change.items()})


def _columns(name: str, path: Path) -> dict[str, np.ndarray]:
    """A written table read back with seqtool's reader: numbers as float64 (empty cells NaN), text as text."""
    from seqtool.data.tables import read_table
    from seqtool.errors import SeqtoolError

    table = read_table(path)
    out = {f"{name}/columns": np.array(list(table.columns))}
    for column, cells in table.columns.items():
        try:
            out[f"{name}/{column}"] = table.numbers(column, missing_ok=True)
        except SeqtoolError:
            out[f"{name}/{column}"] = cells.astype(str)
    return out


def differences(got: dict[str, np.ndarray], want: dict[str, np.ndarray]) -> dict[str, float]:
    """Each array's largest difference, relative to its largest magnitude; gradient norms,
    which span many orders (a vanishing one is what gradnorm shows), relative to each value.
    inf: another shape, other text, NaN or zeros in other places, an array missing."""
    out = {}
    for key in sorted(set(got) | set(want)):
        if key.endswith("/sha256"):
            continue
        a, b = got.get(key), want.get(key)
        if a is None or b is None or a.shape != b.shape or a.dtype.kind != b.dtype.kind:
            out[key] = np.inf
        elif a.dtype.kind not in "fc":
            out[key] = 0.0 if np.array_equal(a, b) else np.inf
        elif not np.array_equal(np.isnan(a), np.isnan(b)):
            out[key] = np.inf
        elif "/grad_norm" in key:
            if not np.array_equal(a == 0, b == 0):
                out[key] = np.inf
            else:
                nonzero = ~np.isnan(b) & (b != 0)
                out[key] = float(np.abs(a[nonzero] / b[nonzero] - 1).max(initial=0.0))
        else:
            known = ~np.isnan(b)
            scale = float(np.abs(b[known]).max(initial=0.0)) or 1.0
            out[key] = float(np.abs(a[known] - b[known]).max(initial=0.0)) / scale
    return out


def changed_bytes(got: dict[str, np.ndarray], want: dict[str, np.ndarray]) -> list[str]:
    """The weights and tables whose bytes differ."""
    keys = sorted(k for k in set(got) | set(want) if "/weights/" in k or k.endswith("/sha256"))
    return [k for k in keys if k not in got or k not in want or got[k].tobytes() != want[k].tobytes()]


def reference() -> tuple[dict[str, np.ndarray], str]:
    with np.load(REFERENCE, allow_pickle=False) as saved:
        want = dict(saved)
    return want, str(want.pop("machine"))


@pytest.fixture
def one_thread():
    import torch

    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def test_fixed_seed_runs_give_the_pinned_values(tmp_path):
    """In a fresh process, as the references were made: no earlier test's state in it."""
    want, recorded_on = reference()
    done = subprocess.run([sys.executable, __file__, "dump", str(tmp_path / "got.npz")], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    with np.load(tmp_path / "got.npz", allow_pickle=False) as saved:
        got = dict(saved)
    ran_on = str(got.pop("machine"))
    far = {k: d for k, d in differences(got, want).items() if not d <= TOLERANCE}
    assert not far, f"a change of behaviour (largest relative differences over {TOLERANCE:g}): {far}"
    if ran_on == recorded_on:  # within the tolerance, yet another order of sums: say so
        assert not changed_bytes(got, want), (
            f"on the machine that made the references, bytes changed: {changed_bytes(got, want)}"
        )


def test_a_change_of_behaviour_is_caught(tmp_path, one_thread):
    """One optimizer step more moves the run's weights, and all it writes from them, far
    beyond the tolerance (bench/RESULTS.md, kernels: also a learning rate 1e-3 higher)."""
    want, _ = reference()
    moved = differences(run(tmp_path, change={"steps": ["+", 1]}, names=("sine_lstm",)), want)
    for made in ("sine_lstm/weights/", "sine_lstm.predict/yhat", "sine_lstm.rollout/yhat", "gradnorm.model/grad_norm"):
        assert max(d for k, d in moved.items() if k.startswith(made)) > 10 * TOLERANCE, made
    assert moved["gradnorm.fresh/grad_norm"] <= TOLERANCE  # no model: unchanged


def _renew() -> None:
    import tempfile

    import torch

    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as folder:
        got = run(Path(folder))
    np.savez_compressed(REFERENCE, machine=np.array(machine()), **got)
    print(f"{REFERENCE}: {len(got)} arrays, {REFERENCE.stat().st_size} bytes, machine {machine()}")


def _dump(out: str, threads: int, change: str) -> None:
    """The values of this process's runs: for the pinned test, and bench/kernels.py's variants."""
    import tempfile

    import torch

    torch.set_num_threads(threads)
    with tempfile.TemporaryDirectory() as folder:
        got = run(Path(folder), threads=threads, change=json.loads(change) if change else None)
    np.savez_compressed(out, machine=np.array(machine()), **got)


if __name__ == "__main__":
    ROOT = Path(__file__).resolve().parent.parent  # this tree's seqtool, whatever the venv installed
    sys.path.insert(0, str(ROOT))
    import seqtool

    if not Path(seqtool.__file__).resolve().is_relative_to(ROOT):
        sys.exit(f"tests/test_pinned.py: seqtool comes from {seqtool.__file__}, not from {ROOT}")
    if sys.argv[1:] == ["renew"]:
        _renew()
    elif len(sys.argv) in (3, 4, 5) and sys.argv[1] == "dump":
        _dump(sys.argv[2], int(sys.argv[3]) if len(sys.argv) > 3 else 1, sys.argv[4] if len(sys.argv) > 4 else "")
    else:
        sys.exit("usage: python tests/test_pinned.py renew | dump OUT.npz [THREADS [CHANGE_JSON]]")
