"""Where each optimizer step's batch comes from: windows, or carried-state streams.

Both read the training series stored end to end (`dataset.Rows`) and give, for step k,
inputs x [B, window, F], targets y [B, window, G] (NaN: no target) and t0, the step of
the stream the batch starts at (0: from a zero state). The batch of step k is a function
of (seed, k) alone, so a resumed run sees the batches an uninterrupted run would.
"""

from __future__ import annotations

import math
from typing import Protocol

import numpy as np

from .dataset import Rows
from .errors import SeqtoolError


class Source(Protocol):
    """What the training loop asks of a batch source. A wrapper (a distributed shard, a
    test's fault) takes a source and keeps this interface."""

    count: int  # windows, or streams
    per_epoch: int  # steps in one pass over them

    def batch(self, step: int) -> tuple:
        """(x, y, t0) of optimizer step `step`; a function of (seed, step) alone."""
        ...


class _Shuffle:
    """The shuffled order of n items in each epoch: a function of (seed, epoch) alone; the
    last epoch's order is kept (a step asks for it again and again)."""

    def __init__(self, seed: int, n: int):
        self.seed, self.n, self.cached = seed, n, (None, None)

    def __call__(self, epoch: int):
        import torch

        if self.cached[0] != epoch:
            g = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
            self.cached = (epoch, torch.randperm(self.n, generator=g))
        return self.cached[1]


class Windows:
    """Windows of `window` steps every `stride` steps from every series at least that
    long (and the window that ends each series), shuffled into batches of `batch`. Each
    window starts from a zero state."""

    def __init__(self, rows: Rows, window: int, stride: int, batch: int, seed: int):
        import torch

        series, starts = [], []
        for i, n in enumerate(rows.lengths.tolist()):
            if n >= window:
                s = list(range(0, n - window + 1, stride))
                s += [n - window] if s[-1] != n - window else []
                series += [i] * len(s)
                starts += s
        if not series:
            raise SeqtoolError(
                f"every training series is shorter than --window {window} "
                f"(longest: {int(rows.lengths.max())} steps); use a smaller --window"
            )
        self.rows, self.window, self.batch_size = rows, window, batch
        self.first = rows.offsets.cpu()[torch.tensor(series)] + torch.tensor(starts)  # row of each window's start
        self.count = len(series)
        self.per_epoch = math.ceil(self.count / batch)
        self.order = _Shuffle(seed, self.count)

    def batch(self, step: int):
        import torch

        epoch, pos = divmod(step, self.per_epoch)
        picks = self.order(epoch)[pos * self.batch_size : (pos + 1) * self.batch_size]
        rows = (self.first[picks, None] + torch.arange(self.window)).to(self.rows.x.device)
        return self.rows.x[rows], self.rows.y[rows], 0

    def learnable(self, burn_in: int) -> bool:
        """Whether some window has a target after its first `burn_in` steps."""
        scored, first = _scored(self.rows), self.first.numpy()
        return bool((scored[first + self.window] - scored[first + burn_in]).any())


class Streams:
    """Each series a stream, read from its first step in consecutive chunks of `window`
    steps, `batch` streams side by side (the groups shuffled each epoch). Past the end of a
    stream: input 0, no target."""

    def __init__(self, rows: Rows, window: int, batch: int, seed: int):
        self.rows, self.window, self.batch_size = rows, window, batch
        self.count = len(rows.lengths)
        self.chunks = math.ceil(int(rows.lengths.max()) / window)
        self.per_epoch = math.ceil(self.count / batch) * self.chunks
        self.order = _Shuffle(seed, self.count)

    def batch(self, step: int):
        import torch

        epoch, pos = divmod(step, self.per_epoch)
        group, chunk = divmod(pos, self.chunks)
        members = self.order(epoch)[group * self.batch_size : (group + 1) * self.batch_size].to(self.rows.x.device)
        t0 = chunk * self.window
        pos = t0 + torch.arange(self.window, device=self.rows.x.device)
        lengths = self.rows.lengths[members][:, None]
        inside = (pos < lengths)[..., None]
        rows = self.rows.offsets[members][:, None] + torch.minimum(pos, lengths - 1)
        x = torch.where(inside, self.rows.x[rows], 0.0)
        y = torch.where(inside, self.rows.y[rows], float("nan"))
        return x, y, t0

    def learnable(self, burn_in: int) -> bool:
        """Whether some stream has a target after its first `burn_in` steps."""
        scored, offsets = _scored(self.rows), self.rows.offsets.cpu().numpy()
        return bool((scored[offsets[1:]] - scored[np.minimum(offsets[:-1] + burn_in, offsets[1:])]).any())


def batches(rows: Rows, config) -> Source:
    """The batch source of a run; one in which no step has a target to learn is refused."""
    c = config
    source = Streams(rows, c.window, c.batch, c.seed) if c.stateful else Windows(rows, c.window, c.stride, c.batch, c.seed)
    if not source.learnable(c.burn_in):
        where = "stream" if c.stateful else f"window of {c.window} steps"
        raise SeqtoolError(
            f"no {where} has a target after its first {c.burn_in} steps (--burn-in), so nothing "
            f"can be learned; use a smaller --burn-in" + ("" if c.stateful else " or a longer --window")
        )
    return source


def _scored(rows: Rows) -> np.ndarray:
    """How many rows before each row have a target: [rows + 1], from 0."""
    import torch

    has = ~torch.isnan(rows.y.cpu()).all(dim=1)
    return np.concatenate([[0], np.cumsum(has.numpy())])
