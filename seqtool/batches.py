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

MIN_CHUNKS = 4  # the shortest stream `cut` makes, in windows


class Source(Protocol):
    """What the training loop asks of a batch source. A wrapper (a distributed shard, a
    test's fault) takes a source and keeps this interface."""

    count: int  # windows, or streams
    per_epoch: int  # steps in one pass over them
    chunks: int  # steps from one start (t0 == 0) to the next

    def batch(self, step: int) -> tuple:
        """(x, y, t0) of optimizer step `step`; a function of (seed, step) alone."""
        ...

    def start(self, step: int, carry, initial):
        """The state a batch with t0 == 0 starts from (None: the model's start), given the
        last step's state (`carry`) and the model's start for n rows (`initial(n)`)."""
        ...

    def own(self, state):
        """The rows of a batch's state that this process trains (a distributed shard's)."""
        ...

    def whole(self, state):
        """The batch's state from this process's rows of it (all ranks' rows, sharded)."""
        ...


class _Whole:
    """A source that is all its batches: each process trains every row."""

    def own(self, state):
        return state

    def whole(self, state):
        return state


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


class Windows(_Whole):
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
        self.chunks = 1
        self.order = _Shuffle(seed, self.count)

    def batch(self, step: int):
        import torch

        epoch, pos = divmod(step, self.per_epoch)
        picks = self.order(epoch)[pos * self.batch_size : (pos + 1) * self.batch_size]
        rows = (self.first[picks, None] + torch.arange(self.window)).to(self.rows.x.device)
        return self.rows.x[rows], self.rows.y[rows], 0

    def start(self, step: int, carry, initial):
        return None

    def learnable(self, burn_in: int) -> bool:
        """Whether some window has a target after its first `burn_in` steps."""
        scored, first = _scored(self.rows), self.first.numpy()
        return bool((scored[first + self.window] - scored[first + burn_in]).any())


class Streams(_Whole):
    """Each series a stream, read from its first step in consecutive chunks of `window`
    steps, `batch` streams side by side (the groups shuffled each epoch). Past the end of a
    stream: input 0, no target. Fewer series than `batch` (one long measured series) are cut
    into about `batch` contiguous streams (`cut`), so that every batch is full: in the first
    epoch each starts from a zero state with its own burn-in; after it, each continues from
    the state its predecessor ended with (`start`), so that a zero state only ever meets the
    start of a series, as in prediction."""

    def __init__(self, rows: Rows, window: int, batch: int, seed: int):
        import torch

        self.rows, self.window, self.batch_size = rows, window, batch
        starts, lengths, before = cut(rows.offsets.cpu().numpy(), rows.lengths.cpu().numpy(), batch, window)
        self.starts, self.lengths = (torch.from_numpy(a).to(rows.x.device) for a in (starts, lengths))
        self.before = torch.from_numpy(before) if (before >= 0).any() else None
        self.count = len(starts)
        self.chunks = math.ceil(int(lengths.max()) / window)
        self.per_epoch = math.ceil(self.count / batch) * self.chunks
        self.order = _Shuffle(seed, self.count)

    def batch(self, step: int):
        import torch

        epoch, pos = divmod(step, self.per_epoch)
        group, chunk = divmod(pos, self.chunks)
        members = self.order(epoch)[group * self.batch_size : (group + 1) * self.batch_size].to(self.rows.x.device)
        t0 = chunk * self.window
        pos = t0 + torch.arange(self.window, device=self.rows.x.device)
        lengths = self.lengths[members][:, None]
        inside = (pos < lengths)[..., None]
        rows = self.starts[members][:, None] + torch.minimum(pos, lengths - 1)
        x = torch.where(inside, self.rows.x[rows], 0.0)
        y = torch.where(inside, self.rows.y[rows], float("nan"))
        return x, y, t0

    def start(self, step: int, carry, initial):
        """The state the group of step `step` starts its first chunk from: a series' first
        stream from the model's start (`initial(n)`; None: every stream from it); a cut
        stream, in the first epoch, from zero (its level unknown), after it from the state
        its predecessor ended the last epoch with (in `carry`: all cut streams are one
        group, and each one that another continues ends with the group's last chunk)."""
        import torch

        from .models import map_state, parts

        if self.before is None:
            return None
        epoch = step // self.per_epoch
        before = self.before[self.order(epoch)]
        initial = initial(len(before))
        if epoch == 0 or carry is None:
            handed = map_state(torch.zeros_like, initial)
        else:
            last = self.order(epoch - 1)
            slot = torch.empty_like(last)
            slot[last] = torch.arange(len(last))
            handed = map_state(lambda s: s[:, slot[before.clamp(min=0)].to(s.device)], carry)
        first = (before < 0).to(parts(initial)[0].device)[None, :, None]
        joined = tuple(torch.where(first, i, h) for i, h in zip(parts(initial), parts(handed)))
        return joined if isinstance(initial, tuple) else joined[0]

    def learnable(self, burn_in: int) -> bool:
        """Whether some stream has a target after its first `burn_in` steps."""
        scored, starts, lengths = _scored(self.rows), self.starts.cpu().numpy(), self.lengths.cpu().numpy()
        return bool((scored[starts + lengths] - scored[starts + np.minimum(burn_in, lengths)]).any())


def cut(offsets: np.ndarray, lengths: np.ndarray, batch: int, window: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The streams of series stored end to end (first rows, lengths, and the stream each
    continues, -1 for none): the series themselves, or, with fewer series than `batch`,
    each series cut into contiguous pieces of one length, a whole number of windows (at
    least MIN_CHUNKS, so a stream is more than its burn-in), the last piece the rest; the
    shortest length for which all pieces fit one batch. Every piece that another
    continues thus ends at the end of the group's last chunk."""
    if len(lengths) >= batch:
        return offsets[:-1].copy(), lengths.copy(), np.full(len(lengths), -1)
    chunks = max(MIN_CHUNKS, math.ceil(lengths.sum() / (batch * window)))
    while np.ceil(lengths / (chunks * window)).sum() > batch:
        chunks += 1
    pieces = [np.arange(0, n, chunks * window) for n in lengths.tolist()]
    starts = np.concatenate([first + p for first, p in zip(offsets[:-1].tolist(), pieces)])
    sizes = np.concatenate([np.diff(p, append=n) for p, n in zip(pieces, lengths.tolist())])
    before = np.arange(len(starts)) - 1
    before[np.cumsum([0] + [len(p) for p in pieces[:-1]])] = -1
    return starts, sizes, before


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
