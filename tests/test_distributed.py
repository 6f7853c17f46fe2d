"""Data-parallel training on torch.distributed with gloo: real launchers (torchrun
and `train --nproc`), two processes, tiny models."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import time

import pytest
import torch
from conftest import BIN, one_error_line

from seqtool.data import generators
from seqtool.data.tables import write_table
from seqtool.model.checkpoint import load_checkpoint
from seqtool.training.distributed import Shard, World

FLAGS = "--hidden 8 --window 20 --threads 1"
TORCHRUN = "GLOO_SOCKET_IFNAME=lo torchrun --local-addr 127.0.0.1"  # as `--nproc` does: the host's name may not resolve
ENV = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}


@pytest.fixture
def sine(tmp_path):
    write_table(generators.sine(n_series=16, length=100, seed=0), tmp_path / "sine.csv")
    return tmp_path / "sine.csv"


def _same(a, b) -> bool:
    wa, wb = torch.load(a, weights_only=True)["weights"], torch.load(b, weights_only=True)["weights"]
    return all(torch.equal(wa[k], wb[k]) for k in wa)


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_processes_write_one_checkpoint_like_one_process_and_both_launchers_agree(sh, tmp_path):
    """torchrun and --nproc give the same bits; the run matches one process with the same
    global batch and steps (within 10% in validation loss); one file is written. The run
    is the hardest case: one long series cut into streams that hand their state on, the
    ranks' shares of them gathered after every step."""
    write_table(generators.integral(n_series=1, length=3000, seed=0), tmp_path / "long.csv")
    for out, launch in [
        ("torchrun.pt", f"{TORCHRUN} --standalone --nproc-per-node 2 -m seqtool train"),
        ("nproc.pt", "seqtool train --nproc 2"),
        ("one.pt", "seqtool train"),
    ]:
        result = sh(f"{launch} long.csv {FLAGS} --stateful --batch 6 --steps 150 -o {out} 2> {out}.err", timeout=180)
        assert result.returncode == 0, (tmp_path / f"{out}.err").read_text()
    assert _same(tmp_path / "torchrun.pt", tmp_path / "nproc.pt")
    two, one = load_checkpoint(tmp_path / "nproc.pt"), load_checkpoint(tmp_path / "one.pt")
    assert two["train"]["world_size"] == 2 and one["train"]["world_size"] == 1
    assert abs(two["history"][-1]["val_loss"] / one["history"][-1]["val_loss"] - 1) <= 0.1
    assert sorted(p.name for p in tmp_path.iterdir() if p.suffix == ".pt") == ["nproc.pt", "one.pt", "torchrun.pt"]
    err = (tmp_path / "nproc.pt.err").read_text()
    assert "6 streams cut from 1 series" in err and "on 1 thread x 2 processes" in err
    assert err.count("seqtool: trained") == 1  # rank 0 alone speaks
    assert not re.search(r"^\[?[IWEF]\d{4} ", err, re.M) and "torch.distributed" not in err  # nor do torch's logs


def test_two_launchers_joined_by_a_rendezvous_train_together(sine, tmp_path):
    """The multi-node path: two torchrun launchers (one process each) meet at a c10d
    rendezvous and train one model."""
    rdzv = (
        f"--nnodes 2 --nproc-per-node 1 --rdzv-backend c10d --rdzv-endpoint 127.0.0.1:{_port()} --rdzv-id seqtool-test"
    )
    cmd = f"{TORCHRUN} {rdzv} -m seqtool train sine.csv {FLAGS} --batch 16 --steps 60 -o nodes.pt -q"
    procs = [
        subprocess.Popen(
            ["bash", "-c", cmd], cwd=tmp_path, env=ENV, stderr=subprocess.PIPE, text=True, start_new_session=True
        )
        for _ in range(2)
    ]
    try:
        errs = [p.communicate(timeout=180)[1] for p in procs]
    finally:
        for p in procs:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(p.pid, signal.SIGKILL)
    assert [p.returncode for p in procs] == [0, 0], errs
    ckpt = load_checkpoint(tmp_path / "nodes.pt")
    assert ckpt["train"]["world_size"] == 2 and ckpt["resume"]["step"] == 60


@pytest.fixture
def started():
    """Start `seqtool train sine.csv ARGS` in a folder; whatever is left is killed after the test."""
    procs = []

    def start(tmp_path, args: str, env: dict | None = None) -> subprocess.Popen:
        argv = ["seqtool", "train", "sine.csv", *args.split()]
        procs.append(
            subprocess.Popen(
                argv,
                cwd=tmp_path,
                env={**ENV, **(env or {})},
                stderr=subprocess.PIPE,
                stdout=subprocess.DEVNULL,
                text=True,
                start_new_session=True,
            )
        )
        return procs[-1]

    yield start
    for p in procs:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(p.pid, signal.SIGKILL)


def _rank(launcher: subprocess.Popen, rank: int, timeout: float = 60) -> int:
    """The pid of the launcher's process of `rank` (named `seqtool rank N`), once it has one."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for pid in subprocess.run(["pgrep", "-P", str(launcher.pid)], capture_output=True, text=True).stdout.split():
            try:
                with open(f"/proc/{pid}/comm") as f:
                    name = f.read().strip()
            except OSError:
                continue
            if name == f"seqtool rank {rank}":
                return int(pid)
        time.sleep(0.2)
    raise AssertionError(f"no rank {rank}")


def test_sigterm_saves_once_a_killed_rank_ends_the_job_and_resume_finishes_the_run(sh, sine, tmp_path, started):
    """SIGTERM to the launcher: every rank stops at one step, rank 0 saves, exit 130. A
    SIGKILLed rank ends the resumed job within 60 s with one line naming it; the saved
    checkpoint is intact. --resume then ends at the uninterrupted run's weights."""
    args = f"{FLAGS} --batch 16 --steps 600 --val 0 --nproc 2"
    straight = sh(f"seqtool train sine.csv {args} -o straight.pt -q", timeout=180)
    assert straight.returncode == 0, straight.stderr
    run = started(tmp_path, f"{args} -o cut.pt")
    assert run.stderr.readline().startswith("seqtool: step")  # rank 0 trains
    run.send_signal(signal.SIGTERM)
    err = run.communicate(timeout=60)[1]
    assert run.returncode == 130, err
    assert err.splitlines()[-1].startswith("seqtool: stopped: SIGTERM at step") and err.count("stopped") == 1, err
    saved = (tmp_path / "cut.pt").read_bytes()
    step = load_checkpoint(tmp_path / "cut.pt")["resume"]["step"]
    assert 0 < step < 600

    run = started(tmp_path, "--resume --nproc 2 -o cut.pt")
    assert run.stderr.readline().startswith("seqtool: step")
    os.kill(_rank(run, 1), signal.SIGKILL)
    killed = time.monotonic()
    err = run.communicate(timeout=90)[1]
    assert time.monotonic() - killed < 60 and run.returncode == 1
    assert err.strip().splitlines() == [
        "seqtool: error: rank 1 was killed by SIGKILL, which ended the job; the last checkpoint stays in cut.pt"
    ]
    assert (tmp_path / "cut.pt").read_bytes() == saved

    resumed = sh("seqtool train sine.csv --resume --nproc 2 -o cut.pt -q", timeout=180)
    assert resumed.returncode == 0, resumed.stderr
    assert _same(tmp_path / "straight.pt", tmp_path / "cut.pt")


def test_a_rank_other_than_0_is_silent_from_its_first_line_and_replies_to_the_launcher(sh, tmp_path):
    """Even a usage error, found before any command runs, goes to the reply file only: a
    stop or error that reached every rank at start-up is said once, by rank 0."""
    env = "SEQTOOL_LAUNCHED=1 WORLD_SIZE=2 LOCAL_WORLD_SIZE=2 TORCHELASTIC_ERROR_FILE=reply.json"
    one = sh(f"{env} RANK=1 seqtool train sine.csv --no-such-option")
    assert one.returncode == 2 and one.stdout == b"" and one.stderr == b""
    said = json.loads((tmp_path / "reply.json").read_text())["message"]
    assert said.startswith("seqtool: error: No such option") and "--no-such-option" in said
    zero = sh(f"{env} RANK=0 seqtool train sine.csv --no-such-option")
    assert zero.returncode == 2 and zero.stderr.decode().strip() == said
    elsewhere = sh("WORLD_SIZE=2 RANK=1 seqtool gen sine -n 1 --length 3")  # a torchrun job's own command
    assert elsewhere.returncode == 0 and len(elsewhere.stdout.decode().splitlines()) == 4


def test_nproc_refuses_standard_input(sh):
    one_error_line(
        sh("seqtool gen sine | seqtool train --nproc 2"), "--nproc 2: the processes cannot share standard input"
    )


def test_each_rank_trains_its_share_of_every_batch():
    """Shares are contiguous, cover the batch once, and differ by at most one row; a rank
    with none gets one row without targets."""

    class Source:
        count, per_epoch, chunks = 10, 1, 1

        def batch(self, step):
            return torch.arange(float(step))[:, None, None], torch.arange(float(step))[:, None, None], 0

    for n in (7, 16, 1):
        got = [Shard(Source(), World(rank, 3)).batch(n) for rank in range(3)]
        rows = [x[:, 0, 0].tolist() for x, y, _ in got if not torch.isnan(y).all()]
        assert sum(rows, []) == list(range(n)) and max(map(len, rows)) - min(map(len, rows)) <= 1
        assert all(len(x) == 1 for x, y, _ in got if torch.isnan(y).all())


def test_a_distributed_run_resumes_in_another_number_of_processes(sh, sine, tmp_path, started):
    """Allowed and documented: the same batches, float sums in another order."""
    run = started(tmp_path, f"{FLAGS} --batch 16 --steps 600 --val 0 --nproc 2 -o m.pt")
    assert run.stderr.readline().startswith("seqtool: step")
    run.send_signal(signal.SIGTERM)
    assert run.wait(timeout=60) == 130
    stopped = load_checkpoint(tmp_path / "m.pt")
    assert stopped["train"]["world_size"] == 2 and 0 < stopped["resume"]["step"] < 600
    resumed = sh("seqtool train sine.csv --resume -o m.pt -q", timeout=180)
    assert resumed.returncode == 0, resumed.stderr
    done = load_checkpoint(tmp_path / "m.pt")
    assert done["train"]["world_size"] == 1 and done["resume"]["step"] == 600
    steps = [row["step"] for row in done["history"]]
    assert (
        steps == list(range(25, 601, 25)) and done["history"][-1]["train_loss"] < done["history"][0]["train_loss"] / 10
    )


def test_an_interface_that_is_not_here_is_refused_in_one_line(sh, sine):
    result = sh(f"GLOO_SOCKET_IFNAME=nosuch0 seqtool train sine.csv {FLAGS} --steps 5 --nproc 2 -o m.pt")
    one_error_line(result, "GLOO_SOCKET_IFNAME=nosuch0: no such network interface here (")


def test_ranks_die_with_their_launcher_and_no_kill_leaves_anything_behind(sine, tmp_path, started):
    """SIGKILL of rank 0 ends the job, and the launcher removes the lock the rank held.
    SIGKILL of the launcher takes its ranks with it (not left training, reparented to
    PID 1); what they left (the lock, the launcher's folder in the temporary directory) is
    removed by the next run. A run leaves nothing in the temporary directory."""
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    env = {"TMPDIR": str(tmp)}
    args = f"{FLAGS} --batch 16 --steps 100000 --val 0 --nproc 2"

    def left() -> list[str]:
        files = [p.name for p in tmp_path.iterdir() if p.name.startswith(".")]
        return files + [p.name for p in tmp.iterdir() if not p.name.startswith("torchinductor_")]
        # (torch's compiler cache, made by one process alike, is torch's)

    run = started(tmp_path, f"{args} -o a.pt", env)
    assert run.stderr.readline().startswith("seqtool: step")  # rank 0 trains
    os.kill(_rank(run, 0), signal.SIGKILL)
    assert run.wait(timeout=60) == 1 and left() == []

    run = started(tmp_path, f"{args} -o b.pt", env)
    assert run.stderr.readline().startswith("seqtool: step")
    ranks = [_rank(run, 0), _rank(run, 1)]
    run.kill()
    run.wait(timeout=10)
    deadline = time.monotonic() + 10
    while any(os.path.exists(f"/proc/{pid}") for pid in ranks) and time.monotonic() < deadline:
        time.sleep(0.1)
    alive = []
    for pid in ranks:
        with contextlib.suppress(OSError), open(f"/proc/{pid}/stat") as f:
            alive += [pid] if f.read().split()[2] != "Z" else []  # a zombie has ended
    assert alive == [] and sorted(name.split(".")[1] for name in left()) == ["b", "seqtool-nproc"]

    done = subprocess.run(
        ["seqtool", "train", "sine.csv", *FLAGS.split(), "--steps", "20", "--nproc", "2", "-q", "-o", "b.pt"],
        cwd=tmp_path, env={**ENV, **env}, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert left() == []


@pytest.mark.parametrize("attempt", range(2))
def test_bad_input_under_nproc_is_said_once_with_exit_2(sh, tmp_path, attempt):
    (tmp_path / "bad.csv").write_text("x\n" + "1.0\n" * 50 + "oops\n" + "2.0\n" * 50)
    result = sh("seqtool train bad.csv --steps 5 --nproc 2 -o m.pt")
    one_error_line(result, "row 51, column 'x': 'oops' is not a number")


def test_nproc_under_a_launcher_of_another_size_is_refused(sh, sine):
    one_error_line(
        sh(f"WORLD_SIZE=1 seqtool train sine.csv {FLAGS} --steps 5 --nproc 2 -o m.pt"),
        "--nproc 2 under a launcher of WORLD_SIZE=1 processes: give one or the other",
    )
