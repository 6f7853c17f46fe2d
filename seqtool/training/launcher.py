"""`train --nproc N`: the job's N processes forked from this one before it loads torch
(torch starts threads that a fork leaves behind, locks held), so the launcher costs no
start-up of its own: torchrun's imports torch, then each of its ranks again. Each rank
gets the environment torchrun gives its processes (RANK, WORLD_SIZE, MASTER_ADDR, ...;
`distributed.world` reads it) and dies with the launcher (PR_SET_PDEATHSIG). Rank 0
speaks for the job; a rank that fails ends it, said in one line that names the rank;
SIGINT and SIGTERM reach every rank, which stop together at one step (rank 0 saves).
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import signal
import socket
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from seqtool.errors import RunFailed, SeqtoolError, on_signals
from seqtool.outputs import scratch_folder, tidy
from seqtool.training.distributed import LAUNCHED, LOST, SAID, TIMEOUT, kept

GRACE = 10.0  # seconds the other ranks have to end on their own once one has failed


@dataclass
class Ended:
    """How a rank ended: its exit code (minus the signal that killed it) and its last word."""

    rank: int
    code: int
    message: str = ""
    at: float = 0.0

    def blame(self) -> int:
        """How likely this rank caused the job's end (lowest first): killed (not by the
        launcher's SIGTERM or SIGINT) or crashed; then one that said why, rank 0 first;
        then one the launcher stopped; last one that only lost another."""
        if self.code == LOST:
            return 4
        if self.code in (-signal.SIGTERM, -signal.SIGINT):
            return 3
        if self.code in SAID:
            return 1 if self.rank == 0 else 2
        return 0


def launch(nproc: int, argv: list[str], out: str, command: Callable[[list[str]], object]) -> None:
    """`seqtool ARGV` in `nproc` processes forked from this one, each running `command(argv)`
    (the command line's): what `torchrun --standalone --nproc-per-node N -m seqtool ARGV`
    does, without an interpreter of its own to start."""
    if "torch" in sys.modules:
        raise RuntimeError("--nproc forks its ranks before torch is loaded")
    env = _environment(nproc)
    with scratch_folder(Path(tempfile.gettempdir()) / "seqtool-nproc") as replies:
        sys.stdout.flush()
        sys.stderr.flush()
        launcher = os.getpid()
        pids = {}
        for rank in range(nproc):
            own = {**env, "RANK": str(rank), "LOCAL_RANK": str(rank)}
            own["TORCHELASTIC_ERROR_FILE"] = str(replies / f"{rank}.json")
            pid = os.fork()
            if pid == 0:
                _rank(own, lambda: command(argv), launcher)
            pids[pid] = rank
        ended, signalled = _wait(pids, replies)
    tidy(out)  # a rank that was killed left its lock (and perhaps a temporary file)
    if signalled:  # passed on to every rank: rank 0 saved and said so
        raise SystemExit(130)
    _verdict(ended, out)


def _environment(nproc: int) -> dict[str, str]:
    """The variables torchrun sets for a job on this machine, over the loopback (the host's
    name may not resolve); a GLOO_SOCKET_IFNAME that names no interface is refused."""
    interfaces = [name for _, name in socket.if_nameindex()]
    given = os.environ.get("GLOO_SOCKET_IFNAME", "")
    if given and not set(given.split(",")) <= set(interfaces):
        raise SeqtoolError(f"GLOO_SOCKET_IFNAME={given}: no such network interface here ({', '.join(interfaces)})")
    loopback = next((name for name in interfaces if name.startswith("lo")), None)
    with socket.socket() as s:  # a free port for rank 0's store
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {
        LAUNCHED: "1", "WORLD_SIZE": str(nproc), "LOCAL_WORLD_SIZE": str(nproc), "GROUP_RANK": "0",
        "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port),
    }  # fmt: skip
    if loopback and not given:
        env["GLOO_SOCKET_IFNAME"] = loopback
    return env


def _rank(env: dict[str, str], run: Callable[[], object], launcher: int) -> None:
    """In a forked rank: die with the launcher, take the job's environment, run the
    command; never return into the launcher's code."""
    code = 1
    try:
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
        if os.getppid() != launcher:  # it died before prctl took hold
            os._exit(1)
        os.environ.update(env)
        with contextlib.suppress(OSError, AttributeError):  # `ps` shows the rank
            ctypes.CDLL(None).prctl(15, f"seqtool rank {env['RANK']}".encode()[:15])  # PR_SET_NAME
        run()  # the command ends the process itself (`distributed.end`)
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else 1
    except BaseException:
        code = 1
    finally:
        os._exit(code)


def _wait(pids: dict[int, int], replies: Path) -> tuple[list[Ended], bool]:
    """Every rank's end. A signal to the launcher is passed on to every rank still running;
    once a rank fails (or rank 0 ends: it saved the job's work), the others have GRACE
    seconds to end on their own (they may meet the same bad input), then get SIGTERM, and
    TIMEOUT seconds later SIGKILL."""
    running, ended, signalled = dict(pids), [], []

    def forward(signum: int) -> None:
        signalled.append(signum)
        _send(running, signum)

    stages = [(GRACE, signal.SIGTERM), (TIMEOUT, signal.SIGKILL)]
    failed_at = None
    with on_signals(forward):
        while running:
            pid, status = os.waitpid(-1, os.WNOHANG)
            if pid == 0:
                if failed_at is not None and stages and time.monotonic() - failed_at > stages[0][0]:
                    _send(running, stages.pop(0)[1])
                    failed_at = time.monotonic()
                time.sleep(0.02)
                continue
            rank = running.pop(pid, None)
            if rank is None:
                continue
            code = os.waitstatus_to_exitcode(status)
            ended.append(Ended(rank, code, _reply(replies / f"{rank}.json"), time.monotonic()))
            if (code != 0 or rank == 0) and failed_at is None and not signalled:  # rank 0 done: the job is
                failed_at = time.monotonic()
    return ended, bool(signalled)


def _send(running: dict[int, int], signum: int) -> None:
    for pid in running:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signum)


def _reply(path: Path) -> str:
    """A rank's last word, from the reply file `errors` writes under a launcher."""
    try:
        return str(json.loads(path.read_text())["message"])
    except (OSError, ValueError, KeyError, TypeError):
        return ""


def _verdict(ended: list[Ended], out: str) -> None:
    """The job's end from its ranks': nothing for a success; rank 0's own exit where it said
    why; else one line naming the rank most likely to have ended the job."""
    failures = [e for e in ended if e.code != 0]
    if not failures or any(e.rank == 0 and e.code == 0 for e in ended):  # rank 0 finished the job
        return
    first = min(failures, key=lambda e: (e.blame(), e.at, e.rank))
    if first.code in SAID and first.rank == 0:  # rank 0 said it on stderr
        raise SystemExit(first.code)
    if first.code in SAID and first.message.startswith("seqtool: "):
        raise RunFailed(f"rank {first.rank}: {first.message.split(': ', 2)[-1]}")
    how = f"was killed by {signal.Signals(-first.code).name}" if first.code < 0 else f"exited with {first.code}"
    raise RunFailed(f"rank {first.rank} {how}, which ended the job; {kept(out)}")
