"""Shared helpers: the CLI through typer's CliRunner, and real shell pipelines."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from seqtool.cli import app

BIN = Path(sys.executable).parent  # the venv's bin, where the `seqtool` script lives


@pytest.fixture
def cli():
    """Run `seqtool ARGS` in-process; the result keeps stdout and stderr apart."""
    runner = CliRunner()

    def invoke(*args: str, input: str | bytes | None = None):
        return runner.invoke(app, [str(a) for a in args], input=input)

    return invoke


@pytest.fixture
def sh(tmp_path):
    """Run a shell pipeline with the installed `seqtool` first on PATH, in a temp folder."""

    def run(command: str, timeout: float = 120, **kwargs) -> subprocess.CompletedProcess:
        env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
        env.pop("SEQTOOL_DEBUG", None)
        return subprocess.run(
            ["bash", "-c", command], cwd=tmp_path, env=env, capture_output=True,
            timeout=timeout, **kwargs,
        )  # fmt: skip

    return run


def modules_loaded(*commands: list[str], modules: tuple[str, ...] = ("torch",)) -> list[str]:
    """Which of `modules` a fresh interpreter has loaded after running each seqtool command
    in `commands` (each must exit 0; stdout discarded): start-up cost, measured by what loads."""
    code = (
        "import sys, io, contextlib, json\n"
        "from seqtool.cli import app\n"
        f"for argv in {[[str(a) for a in c] for c in commands]!r}:\n"
        "    sys.argv = ['seqtool', *argv]\n"
        "    with contextlib.redirect_stdout(io.StringIO()):\n"
        "        try: app()\n"
        "        except SystemExit as e: assert e.code == 0, (argv, e.code)\n"
        f"print(json.dumps([m for m in {list(modules)!r} if m in sys.modules]))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.splitlines()[-1])


def one_error_line(result, *fragments: str) -> None:
    """Bad input: exit 2 and exactly one line on stderr, `seqtool: error: ...` with each fragment."""
    stderr = result.stderr if isinstance(result.stderr, str) else result.stderr.decode()
    code = getattr(result, "exit_code", getattr(result, "returncode", None))
    assert code == 2, (code, stderr)
    lines = stderr.splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith("seqtool: error: "), stderr
    assert "Traceback" not in stderr
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])


@pytest.fixture(scope="session")
def small_model(tmp_path_factory) -> Path:
    """A folder with sine.csv (8 series x 60 steps) and m.pt, an LSTM of 8 units trained
    on it for 30 steps: for tests that need a checkpoint, not a good one."""
    from seqtool.config import TrainConfig
    from seqtool.data import generators
    from seqtool.data.tables import write_table
    from seqtool.training.run import train

    folder = tmp_path_factory.mktemp("small_model")
    write_table(generators.sine(n_series=8, length=60, seed=0), folder / "sine.csv")
    train(folder / "sine.csv", folder / "m.pt", TrainConfig(hidden=8, steps=30, window=10, batch=8), quiet=True)
    return folder


def faulty_source(fault):
    """A batch source for `train(source=...)`: the real one, each step's batch passed
    through fault(step, (x, y, t0)), which may change it or act (remove a folder, ...)."""
    from seqtool.training.batches import batches

    class Faulty:
        def __init__(self, inner):
            self.inner, self.count, self.per_epoch = inner, inner.count, inner.per_epoch

        def batch(self, step: int):
            return fault(step, self.inner.batch(step))

        def __getattr__(self, name: str):  # chunks, start: the real source's
            return getattr(self.inner, name)

    return lambda rows, config: Faulty(batches(rows, config))
