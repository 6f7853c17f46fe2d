"""Where each optimizer step's batch comes from: windows, or carried-state streams.

Both read the training series stored end to end (`examples.Rows`) and give, for step k,
inputs x [B, window, F], targets y [B, window, G] (NaN: no target) and t0, the step of
the stream the batch starts at (0: from a zero state). The batch of step k is a function
of (seed, k) alone, so a resumed run sees the batches an uninterrupted run would.
"""

from __future__ import annotations

import math
from typing import Protocol

import numpy as np
import torch

from seqtool.data.examples import Rows
from seqtool.errors import SeqtoolError
from seqtool.model.network import map_state, parts

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
    """The shuffled order of n items in each epoch, a function of (seed, epoch) alone, at
    the positions asked: a keyed Feistel permutation of [0, 2^bits) (the least 2^bits >= n)
    walked back into [0, n) (cycle walking). Up to CACHED items an epoch's whole order is
    kept (a step then costs a slice); beyond, no array of n items is made, so 100M windows
    shuffle in the memory of 100."""

    ROUNDS = 4
    CACHED = 1 << 20
    MIX = tuple(np.uint64(m) for m in (0x9E3779B97F4A7C15, 0xBF58476D1CE4E5B9, 0x94D049BB133111EB, 31, 29))

    def __init__(self, seed: int, n: int):
        self.seed, self.n, self.keys, self.cached = seed, n, (None, None), (None, None)
        bits = max(2, math.ceil(math.log2(max(n, 2))))
        self.widths = (bits // 2, bits - bits // 2)  # of the halves: (left, right), swapped each round

    def __call__(self, epoch: int, positions: np.ndarray) -> np.ndarray:
        if self.n <= self.CACHED:
            if self.cached[0] != epoch:
                self.cached = (epoch, self._order(epoch, np.arange(self.n)))
            return self.cached[1][positions]
        return self._order(epoch, positions)

    def _order(self, epoch: int, positions: np.ndarray) -> np.ndarray:
        if self.keys[0] != epoch:
            self.keys = (
                epoch,
                np.random.default_rng([self.seed, epoch]).integers(0, 1 << 32, self.ROUNDS, dtype=np.uint64),
            )
        out = self._permute(np.asarray(positions, dtype=np.uint64))
        far = out >= self.n
        while far.any():  # each item's walk ends within [0, n): a bijection there
            out[far] = self._permute(out[far])
            far = out >= self.n
        return out.astype(np.int64)

    def _permute(self, v: np.ndarray) -> np.ndarray:
        a, b, c, s1, s2 = self.MIX
        left_bits, right_bits = self.widths
        left, right = v >> np.uint64(right_bits), v & np.uint64((1 << right_bits) - 1)
        for key in self.keys[1]:  # (L, R) -> (R, L ^ F(R)): the widths swap, each round a bijection
            f = (right ^ key) * a
            f = (f ^ (f >> s1)) * b
            f = (f ^ (f >> s2)) * c
            left, right = right, left ^ (f >> np.uint64(64 - left_bits))
            left_bits, right_bits = right_bits, left_bits
        return (left << np.uint64(right_bits)) | right


class Windows(_Whole):
    """Windows of `window` steps every `stride` steps from every series at least that
    long (and the window that ends each series), shuffled into batches of `batch`. Each
    window starts from a zero state. Window k is found by arithmetic (the windows before
    each series, `before`), so memory grows with the series, not the windows."""

    def __init__(self, rows: Rows, window: int, stride: int, batch: int, seed: int):
        lengths = rows.lengths.cpu().numpy()
        room = lengths - window
        each = np.where(room >= 0, room // stride + 1 + (room % stride != 0), 0)
        if not each.any():
            raise SeqtoolError(
                f"every training series is shorter than --window {window} "
                f"(longest: {int(lengths.max())} steps); use a smaller --window"
            )
        self.rows, self.window, self.stride, self.batch_size = rows, window, stride, batch
        self.starts, self.lengths = rows.starts, lengths
        self.before = np.concatenate([[0], np.cumsum(each)])
        self.count = int(self.before[-1])
        self.per_epoch = math.ceil(self.count / batch)
        self.chunks = 1
        self.order = _Shuffle(seed, self.count)

    def first(self, k: np.ndarray) -> np.ndarray:
        """The row each of windows k starts at."""
        i = np.searchsorted(self.before, k, side="right") - 1
        return self.starts[i] + np.minimum((k - self.before[i]) * self.stride, self.lengths[i] - self.window)

    def batch(self, step: int):
        epoch, pos = divmod(step, self.per_epoch)
        picks = self.order(epoch, np.arange(pos * self.batch_size, min((pos + 1) * self.batch_size, self.count)))
        rows = torch.from_numpy(self.first(picks)[:, None] + np.arange(self.window)).to(self.rows.device)
        return *self.rows.take(rows), 0

    def start(self, step: int, carry, initial):
        return None

    def learnable(self, burn_in: int) -> bool:
        """Whether some window has a target after its first `burn_in` steps (looked for a
        million windows at a time, so a table that has one says so at once)."""
        for k in range(0, self.count, 1 << 20):
            first = self.first(np.arange(k, min(k + (1 << 20), self.count)))
            if self.rows.targets_in(first + burn_in, first + self.window).any():
                return True
        return False


class Streams(_Whole):
    """Each series a stream, read from its first step in consecutive chunks of `window`
    steps, `batch` streams side by side (the groups shuffled each epoch). Past the end of a
    stream: input 0, no target. Fewer series than `batch` (one long measured series) are cut
    into about `batch` contiguous streams (`cut`), so that every batch is full: in the first
    epoch each starts from a zero state with its own burn-in; after it, each continues from
    the state its predecessor ended with (`start`), so that a zero state only ever meets the
    start of a series, as in prediction."""

    def __init__(self, rows: Rows, window: int, batch: int, seed: int):
        self.rows, self.window, self.batch_size = rows, window, batch
        lengths = rows.lengths.cpu().numpy()
        starts, lengths, before = cut(rows.starts, lengths, batch, window)
        self.starts, self.lengths = (torch.from_numpy(a).to(rows.device) for a in (starts, lengths))
        self.before = torch.from_numpy(before) if (before >= 0).any() else None
        self.count = len(starts)
        self.chunks = math.ceil(int(lengths.max()) / window)
        self.per_epoch = math.ceil(self.count / batch) * self.chunks
        self.order = _Shuffle(seed, self.count)

    def batch(self, step: int):
        epoch, pos = divmod(step, self.per_epoch)
        group, chunk = divmod(pos, self.chunks)
        picks = self.order(epoch, np.arange(group * self.batch_size, min((group + 1) * self.batch_size, self.count)))
        members = torch.from_numpy(picks).to(self.rows.device)
        t0 = chunk * self.window
        pos = t0 + torch.arange(self.window, device=self.rows.device)
        lengths = self.lengths[members][:, None]
        inside = (pos < lengths)[..., None]
        x, y = self.rows.take(self.starts[members][:, None] + torch.minimum(pos, lengths - 1))
        return torch.where(inside, x, 0.0), torch.where(inside, y, float("nan")), t0

    def start(self, step: int, carry, initial):
        """The state the group of step `step` starts its first chunk from: a series' first
        stream from the model's start (`initial(n)`; None: every stream from it); a cut
        stream, in the first epoch, from zero (its level unknown), after it from the state
        its predecessor ended the last epoch with (in `carry`: all cut streams are one
        group, and each one that another continues ends with the group's last chunk)."""

        if self.before is None:
            return None
        epoch = step // self.per_epoch
        before = self.before[self._epoch_order(epoch)]
        initial = initial(len(before))
        if epoch == 0 or carry is None:
            handed = map_state(torch.zeros_like, initial)
        else:
            last = self._epoch_order(epoch - 1)
            slot = torch.empty_like(last)
            slot[last] = torch.arange(len(last))
            handed = map_state(lambda s: s[:, slot[before.clamp(min=0)].to(s.device)], carry)
        first = (before < 0).to(parts(initial)[0].device)[None, :, None]
        joined = tuple(torch.where(first, i, h) for i, h in zip(parts(initial), parts(handed)))
        return joined if isinstance(initial, tuple) else joined[0]

    def _epoch_order(self, epoch: int):
        """The streams in epoch `epoch`'s order (a tensor; cut streams are few)."""
        return torch.from_numpy(self.order(epoch, np.arange(self.count)))

    def learnable(self, burn_in: int) -> bool:
        """Whether some stream has a target after its first `burn_in` steps."""
        starts, lengths = self.starts.cpu().numpy(), self.lengths.cpu().numpy()
        return bool(self.rows.targets_in(starts + np.minimum(burn_in, lengths), starts + lengths).any())


def cut(starts: np.ndarray, lengths: np.ndarray, batch: int, window: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The streams of series stored end to end (first rows, lengths, and the stream each
    continues, -1 for none): the series themselves, or, with fewer series than `batch`,
    each series cut into contiguous pieces of one length, a whole number of windows (at
    least MIN_CHUNKS, so a stream is more than its burn-in), the last piece the rest; the
    shortest length for which all pieces fit one batch. Every piece that another
    continues thus ends at the end of the group's last chunk."""
    if len(lengths) >= batch:
        return starts.copy(), lengths.copy(), np.full(len(lengths), -1)
    chunks = max(MIN_CHUNKS, math.ceil(lengths.sum() / (batch * window)))
    while np.ceil(lengths / (chunks * window)).sum() > batch:
        chunks += 1
    pieces = [np.arange(0, n, chunks * window) for n in lengths.tolist()]
    firsts = np.concatenate([first + p for first, p in zip(starts.tolist(), pieces)])
    sizes = np.concatenate([np.diff(p, append=n) for p, n in zip(pieces, lengths.tolist())])
    before = np.arange(len(firsts)) - 1
    before[np.cumsum([0] + [len(p) for p in pieces[:-1]])] = -1
    return firsts, sizes, before


def batches(rows: Rows, config) -> Source:
    """The batch source of a run; one in which no step has a target to learn is refused."""
    c = config
    source = (
        Streams(rows, c.window, c.batch, c.seed) if c.stateful else Windows(rows, c.window, c.stride, c.batch, c.seed)
    )
    if rows.levels is not None and not source.learnable(c.window - 1):  # --scale window: the last step's
        raise SeqtoolError(
            f"no window of {c.window} steps has a target after its last step (--scale window scores the "
            f"forecast from there), so a series needs more than {c.window} steps: use a shorter --window"
        )
    if rows.levels is None and not source.learnable(c.burn_in):
        where = "stream" if c.stateful else f"window of {c.window} steps"
        raise SeqtoolError(
            f"no {where} has a target after its first {c.burn_in} steps (--burn-in), so nothing "
            f"can be learned; use a smaller --burn-in" + ("" if c.stateful else " or a longer --window")
        )
    return source
