"""Data-parallel training on torch.distributed, launched by torchrun or `train --nproc`.

Every rank reads the same batch of each step (a function of seed and step) and trains on
its share of the rows (`Shard`); DistributedDataParallel averages the gradients, so
clipping sees the global norm. One all-reduce a step (`World.agree`) sums the batch's
loss and targets over the ranks, so the loss is the global batch's mean at any number of
processes, and tells every rank whether one of them was asked to stop, so all stop at the
same step. Rank 0 alone writes (checkpoint, log, progress, summary); the others are
silent. A collective that waits longer than TIMEOUT for a rank that died fails, so no
rank hangs; the job ends with one line that names the rank (`launcher.launch`).
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
from dataclasses import dataclass
from datetime import timedelta

from seqtool.errors import RunFailed, SeqtoolError
from seqtool.limits import cores
from seqtool.threads import choose

TIMEOUT = 60  # seconds a collective waits for the other ranks
LAUNCHED = "SEQTOOL_LAUNCHED"  # set by `launcher.launch` for its processes
LOST = 3  # the exit of a process under `launch` that lost another: `launch` names that one
SAID = (1, 2, 130)  # seqtool's own exits: the process said why (`errors.guarded`)


@dataclass(frozen=True)
class World:
    """This process's place in the job: rank `rank` of `size` (1: not distributed)."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0
    local_size: int = 1  # processes of the job on this machine

    @property
    def main(self) -> bool:
        return self.rank == 0

    def threads(self, macs: int) -> int | None:
        """A rank's default thread count: threads.choose's, within its share of the cores
        (None for one process: threads.use chooses)."""
        if self.size == 1:
            return None
        return max(1, min(choose(macs), cores() // self.local_size))

    def agree(self, loss_sum: float, count: int, signum: int) -> tuple[float, int, int]:
        """The batch's summed loss and targets over all ranks, and the signal that stops
        the job (0: none; SIGINT before SIGTERM, if ranks got different ones)."""
        if self.size == 1:
            return loss_sum, count, signum

        import torch  # lazily: `end` runs at every command's exit, most without torch
        import torch.distributed as dist

        stops = [float(signum == s) for s in (signal.SIGINT, signal.SIGTERM)]
        sums = torch.tensor([loss_sum, float(count), *stops], dtype=torch.float64)
        dist.all_reduce(sums)
        got = [int(s) for s, n in zip((signal.SIGINT, signal.SIGTERM), sums[2:]) if n > 0]
        return float(sums[0]), int(sums[1]), got[0] if got else 0

    def same(self, value: float) -> float:
        """Rank 0's value on every rank (a validation loss: schedules and early stopping
        must decide alike, and float sums may differ in the last bit between ranks)."""
        if self.size == 1:
            return value
        import torch  # lazily: `end` runs at every command's exit, most without torch
        import torch.distributed as dist

        box = torch.tensor([value], dtype=torch.float64)
        dist.broadcast(box, 0)
        return float(box[0])

    def gather(self, state, shares: list[int]):
        """A stateful batch's state from every rank's rows (rank r holds shares[r] of them),
        in batch order: one all_gather for all of the state's tensors."""
        import torch  # lazily: `end` runs at every command's exit, most without torch
        import torch.distributed as dist

        from seqtool.model.network import parts  # lazily: it loads torch

        mine = torch.stack(parts(state))  # [tensors, layers, rows, hidden]
        padded = mine.new_zeros(*mine.shape[:2], max(shares), *mine.shape[3:])
        padded[:, :, : mine.shape[2]] = mine
        pieces = [torch.empty_like(padded) for _ in shares]
        dist.all_gather(pieces, padded)
        whole = torch.cat([p[:, :, :n] for p, n in zip(pieces, shares)], dim=2).unbind(0)
        return whole if isinstance(state, tuple) else whole[0]


def world() -> World:
    """This process's place, from the environment torchrun sets (none: rank 0 of 1)."""
    size = int(os.environ.get("WORLD_SIZE", "1"))
    if size <= 1:
        return World()
    env = os.environ
    return World(int(env["RANK"]), size, int(env.get("LOCAL_RANK", "0")), int(env.get("LOCAL_WORLD_SIZE", "1")))


def silence(w: World) -> None:
    """Ranks other than 0 are silent: their standard output and error (torch's C++ logs
    too) go nowhere. An error still reaches the launcher, in its reply file (`errors`)."""
    if w.main:
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
        os.dup2(devnull, stream.fileno())


def silence_launched() -> None:
    """`silence` a process that `launch` started, before it parses anything: a stop or a
    usage error that reaches every rank at start-up is said once, by rank 0."""
    if os.environ.get(LAUNCHED) and os.environ.get("RANK", "0") != "0":
        silence(World(rank=1, size=2))


def join(w: World, device) -> None:
    """Join the job's process group: gloo for CPU tensors, and nccl for CUDA ones when the
    ranks train on GPUs (each on its own)."""
    if w.size == 1:
        return
    import torch  # lazily: `end` runs at every command's exit, most without torch
    import torch.distributed as dist

    if device.type == "cuda":
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        backend = "cpu:gloo,cuda:nccl" if device.type == "cuda" else "gloo"
        dist.init_process_group(backend, timeout=timedelta(seconds=TIMEOUT), rank=w.rank, world_size=w.size)


def check_input(processes: int, data, how: str) -> None:
    """Every process reads the table itself: a file, not standard input (`how`: what asked
    for the processes)."""
    if processes > 1 and data in (None, "-"):
        raise SeqtoolError(f"{how}: the processes cannot share standard input; give the table as a file")


def is_lost(w: World, error: RuntimeError) -> bool:
    """Whether an error is a collective that failed: another process of the job is gone."""
    import torch.distributed as dist

    return w.size > 1 and (
        isinstance(error, dist.DistError) or any(k in str(error) for k in ("gloo", "NCCL", "Connection"))
    )


def lost(error: RuntimeError, out) -> None:
    """A collective failed because another rank is gone: one line (none under `launch`,
    which names the rank that failed), exit 1."""
    if os.environ.get(LAUNCHED):
        raise SystemExit(LOST)
    first = str(error).splitlines()[0] if str(error) else type(error).__name__
    raise RunFailed(f"another process of the job is gone ({first[:160]}); {kept(out)}") from None


def kept(out) -> str:
    """Where the run stands: the checkpoint kept, or none saved yet."""
    return f"the last checkpoint stays in {out}" if os.path.exists(out) else f"no checkpoint was saved to {out} yet"


def end(code: int) -> None:
    """A process of a distributed job ends at once, its output flushed, without the exit
    of the interpreter: a thread torch.distributed leaves behind can abort it there with
    SIGABRT ("terminate called without an active exception") after its work is done."""
    if world().size > 1:
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(OSError, ValueError):
                stream.flush()
        os._exit(code)


def leave(w: World) -> None:
    if w.size > 1:
        import torch.distributed as dist

        if dist.is_initialized():
            dist.destroy_process_group()


def parallel(model, w: World, device):
    """The model as the training step calls it: wrapped in DistributedDataParallel when
    distributed (a learned start is used by a stream's first chunk only, hence unused
    parameters), else the module itself."""
    if w.size == 1:
        return model
    from torch.nn.parallel import DistributedDataParallel  # lazily: as torch above

    ids = [device.index] if device.type == "cuda" else None
    return DistributedDataParallel(model, device_ids=ids, find_unused_parameters=model.start is not None)


class Shard:
    """A batch source seen by one rank: its contiguous share of every batch's rows (the
    ranks' shares differ by at most one row). A rank whose share is empty gets the batch's
    first row without targets, so that it still takes part in the step. A stateful run's
    carried state is whole on every rank (`whole` gathers the rows of all after a step)."""

    def __init__(self, inner, w: World):
        self.inner, self.world, self.n, self.mine = inner, w, 0, slice(0, 0)
        self.count, self.per_epoch, self.chunks = inner.count, inner.per_epoch, inner.chunks

    def batch(self, step: int):
        x, y, t0 = self.inner.batch(step)
        self.n = len(x)
        self.mine = self._share(self.world.rank)
        if self.mine.start == self.mine.stop:
            return x[:1], y[:1].clone().fill_(float("nan")), t0
        return x[self.mine], y[self.mine], t0

    def _share(self, rank: int) -> slice:
        """Rank `rank`'s rows of the last batch."""
        n, size = self.n, self.world.size
        return slice(n * rank // size, n * (rank + 1) // size)

    def start(self, step: int, carry, initial):
        return self.inner.start(step, carry, initial)

    def own(self, state):
        """This rank's rows of a whole batch's state (the first row for an empty share)."""
        from seqtool.model.network import map_state  # lazily: it loads torch

        mine = self.mine if self.mine.start < self.mine.stop else slice(0, 1)
        return map_state(lambda s: s[:, mine].contiguous(), state)

    def whole(self, state):
        """The whole batch's state from this rank's rows of it and the others'."""
        from seqtool.model.network import map_state  # lazily: it loads torch

        shares = [len(range(self.n)[self._share(r)]) for r in range(self.world.size)]
        return self.world.gather(map_state(lambda s: s[:, : shares[self.world.rank]], state), shares)
