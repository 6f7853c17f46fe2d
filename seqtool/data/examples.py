"""From a series table to what a model sees: targets, splits, and series stored end to end
(on the model's scale, `scaling.Scaling`).

Training and inference share this module, so a model always sees its data the same way.
Series are kept end to end (`Rows`: [rows, features] plus offsets), never padded to the
longest one, so memory grows with the number of rows whatever the lengths; batches are
gathered from them, and a model runs over them in groups of similar length (`length_groups`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from seqtool.data.covariates import Covariates
from seqtool.data.gaps import mask
from seqtool.data.scaling import Differencing, Scaling, WindowLevels
from seqtool.data.statics import Statics
from seqtool.data.tables import SeriesTable
from seqtool.data.timefeatures import TimeFeatures
from seqtool.errors import SeqtoolError

NEXT_STEP, MAPPING = "next-step", "mapping"


def task_of(table: SeriesTable) -> str:
    """Next-step forecasting when the table has no target column, x -> y mapping otherwise."""
    return MAPPING if table.y_names else NEXT_STEP


def predicted(task: str, x_names: list[str], y_names: list[str]) -> list[str]:
    """The columns a model's outputs estimate: its inputs' next values, or the targets."""
    return list(x_names) if task == NEXT_STEP else list(y_names)


def inputs_and_targets(
    table: SeriesTable,
    task: str,
    diff: Differencing = Differencing(),  # noqa: B008 (a frozen dataclass: immutable)
    time: TimeFeatures | None = None,
    horizon: int = 1,
    covariates: Covariates | None = None,
    gaps: bool = False,
    statics: Statics | None = None,
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Per series: inputs [T, F (+ time features)] and targets [T, G], NaN where a step
    has no target.

    For next-step forecasting the target at step t is the input at t+1 (none at the last
    step), and with `horizon` H the inputs at t+1..t+H, [T, H * F] (step h's F values at
    columns h*F:(h+1)*F; NaN past the end); with differencing, of the differenced series
    (its first `order` steps dropped).
    A mapping table is not differenced (its targets are not the series it reads). Known
    inputs (`time`, `covariates`) are appended: those of the step the output estimates;
    then each series' attributes (`statics`); with `gaps`, then the gap mask of the step
    read (`gaps.mask`). A target made of a gap
    (`SeriesTable.missing`) is NaN: no loss scores it.
    """
    xs, ys = _series_and_targets(table, task, diff, horizon)
    steps = table.lengths - diff.order
    if table.missing is not None and task == NEXT_STEP:
        ys = _unscored(ys, np.split(mask(table, steps, diff.coefficients()), np.cumsum(steps)[:-1]), horizon)
    if table.missing is not None:  # nothing forecast from a step that read a value carried back
        for y, lead in zip(ys, table.lead - diff.order):
            y[: max(int(lead), 0)] = np.nan
    if covariates is not None and covariates.horizon > 1:  # a step whose known inputs run past the series
        for y, n in zip(ys, steps):
            y[max(int(n) - covariates.horizon, 0) :] = np.nan
    if time is None and covariates is None and statics is None and not gaps:
        return xs, ys
    known = known_inputs(table, steps, task, diff, time, covariates, gaps, statics)
    known = np.split(known, np.cumsum(steps)[:-1])
    return [np.concatenate([x, f], axis=1) for x, f in zip(xs, known)], ys


def _unscored(ys: list[np.ndarray], gaps: list[np.ndarray], horizon: int) -> list[np.ndarray]:
    """Targets [T, H * F] with NaN where the step they are of read a gap (`gaps` [T, F])."""
    for y, g in zip(ys, gaps):
        width = g.shape[1]
        for h in range(min(horizon, len(y) - 1)):
            y[: len(y) - 1 - h, h * width : (h + 1) * width][g[1 + h :] > 0] = np.nan
    return ys


def known_inputs(
    table: SeriesTable, steps: np.ndarray, task: str, diff: Differencing, time: TimeFeatures | None,
    covariates: Covariates | None, gaps: bool = False, statics: Statics | None = None,
) -> np.ndarray:  # fmt: skip
    """The inputs known in advance [sum(steps), K] that the network reads at the first
    steps[i] of its rows of each series (after the differencing's first `order`): time
    features, then covariates, of the step each output estimates; each series'
    attributes (`statics`); with `gaps`, the gap mask of the step it reads (`gaps.mask`).
    A covariate not given there (past the rows after a series' end) reads 0, its mean:
    only an output nobody uses reads one (a forecast beyond them is refused first,
    `covariates.reach`)."""
    shift = diff.order + 1 if task == NEXT_STEP else 0
    parts = [f.ahead(table, steps, shift) for f in (time, covariates, statics) if f is not None]
    if gaps:
        parts.append(mask(table, steps, diff.coefficients()))
    return np.nan_to_num(np.concatenate(parts, axis=1), nan=0.0) if parts else np.zeros((int(np.sum(steps)), 0))


def _series_and_targets(
    table: SeriesTable, task: str, diff: Differencing, horizon: int = 1
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Inputs and targets of each series, logged and differenced where asked."""
    xs = table.split(table.x)
    if task == MAPPING:
        if diff.active:
            option = "--diff" if diff.lags else "--log-values"
            raise SeqtoolError(
                f"{table.source}: {option} is for next-step forecasting; this table has targets "
                f"({', '.join(table.y_names)}), so its model maps inputs to targets: drop {option}"
            )
        if table.y is None:
            return xs, [np.full((len(x), 0), np.nan) for x in xs]
        return xs, table.split(table.y)
    if diff.lags:
        short = np.flatnonzero(table.lengths < diff.order + 2)
        if len(short):
            raise SeqtoolError(
                f"{table.source}: {table.named(short[0])} has {table.lengths[short[0]]} steps; "
                f"--diff {diff} needs at least {diff.order + 2} (the first {diff.order} only feed the differencing)"
            )
    if diff.active:
        xs = [diff.difference(x, table.source) for x in xs]
    ys = []
    for x in xs:
        y = np.full((len(x), horizon * x.shape[1]), np.nan)
        for h in range(min(horizon, len(x) - 1)):
            y[: len(x) - 1 - h, h * x.shape[1] : (h + 1) * x.shape[1]] = x[1 + h :]
        ys.append(y)
    return xs, ys


def split(
    xs: list[np.ndarray], ys: list[np.ndarray], val: float, seed: int, horizon: int = 1, source: str = "the table"
) -> tuple[tuple[list, list], tuple[list, list]]:
    """Hold out a fraction `val` for validation: whole series when there are several
    (`held_out`), else the tail of the one series (`tail_start`; its targets before the
    tail are left out of the validation loss, and the training part stops where it starts:
    no training target, of any of the `horizon` steps, lies in the tail)."""
    if val <= 0:
        return (xs, ys), ([], [])
    n = len(xs)
    if n >= 2:
        held = set(held_out(n, val, seed).tolist())
        train = [i for i in range(n) if i not in held]
        val_ids = sorted(held)
        return ([xs[i] for i in train], [ys[i] for i in train]), (
            [xs[i] for i in val_ids],
            [ys[i] for i in val_ids],
        )
    x, y = xs[0], ys[0]
    cut = tail_start(len(x), val, source)
    y_train = y[:cut].copy()
    width = y.shape[1] // horizon
    for h in range(horizon):
        y_train[cut - 1 - h :, h * width : (h + 1) * width] = np.nan  # in the held-out tail
    y_val = y.copy()
    y_val[:cut] = np.nan
    return ([x[:cut]], [y_train]), ([x], [y_val])


def held_out_rows(lengths: np.ndarray, val: float, seed: int) -> list[np.ndarray]:
    """The rows (of the table as read) of each validation series that `split` makes of
    series of these lengths: the held-out series, or the one series whole."""
    if val <= 0:
        return []
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    ids = held_out(len(lengths), val, seed) if len(lengths) >= 2 else [0]
    return [np.arange(offsets[i], offsets[i + 1]) for i in ids]


def held_out(n: int, val: float, seed: int) -> np.ndarray:
    """The series (of n >= 2) held out for validation, sorted: a fraction `val`, at least one
    and never all, chosen by `seed`."""
    n_val = min(n - 1, max(1, round(val * n)))
    return np.sort(np.random.default_rng(seed).permutation(n)[:n_val])


def tail_start(length: int, val: float, source: str) -> int:
    """Where one series' validation tail (a fraction `val` of it) starts; `source` names its table."""
    cut = length - max(1, round(val * length))
    if cut < 2:
        raise SeqtoolError(
            f"{source}: the series has {length} steps: too short to hold out --val {val} (--val 0 holds none out)"
        )
    return cut


@dataclass
class Rows:
    """Series end to end: inputs x [rows, F] and targets y [rows, G] (torch tensors on the
    model's scale, NaN where a step has no target), series i in rows offsets[i]:offsets[i+1].

    What a batch source asks of training rows (`batches`): `starts`, `lengths`, `take` and
    `targets_in`; `training.inplace.FolderRows` answers the same from a table read in place."""

    x: object
    y: object
    offsets: object  # int64 tensor [N + 1]
    lengths: object  # int64 tensor [N]
    levels: WindowLevels | None = None  # --scale window: each window taken moved to its own level

    @classmethod
    def of(cls, xs: list[np.ndarray], ys: list[np.ndarray], scaling: Scaling, names=None, source="table") -> Rows:
        import torch  # lazily: data/ loads without torch (gen, info, plot)

        lengths = np.array([len(a) for a in xs], dtype=np.int64)
        x = scaling.inputs(np.concatenate(xs), names, source)
        y = scaling.targets(np.concatenate(ys))
        offsets = torch.from_numpy(np.concatenate([[0], np.cumsum(lengths)]))
        return cls(torch.from_numpy(x), torch.from_numpy(y), offsets, torch.from_numpy(lengths))

    def to(self, device) -> Rows:
        levels = None if self.levels is None else self.levels.to(device)
        return Rows(*(t.to(device) for t in (self.x, self.y, self.offsets, self.lengths)), levels)

    @property
    def device(self):
        return self.x.device

    @property
    def width(self) -> int:
        """Inputs per step (F, time features included)."""
        return self.x.shape[1]

    @property
    def starts(self) -> np.ndarray:
        """The row each series starts at."""
        return self.offsets[:-1].cpu().numpy()

    def take(self, index):
        """Inputs and targets of the rows `index` (a tensor on the device), [..., F] and [..., G];
        with `levels`, windows [B, W] of rows, each on its own level."""
        if self.levels is None:
            return self.x[index], self.y[index]
        return self.levels.moved(self.x[index], self.y[index], index)

    def targets_in(self, first: np.ndarray, stop: np.ndarray) -> np.ndarray:
        """How many rows in [first, stop) have a target, for each pair."""
        import torch  # lazily: data/ loads without torch (gen, info, plot)

        if getattr(self, "_scored", None) is None:
            has = ~torch.isnan(self.y.cpu()).all(dim=1)
            self._scored = np.concatenate([[0], np.cumsum(has.numpy())])
        return self._scored[stop] - self._scored[first]

    def target_count(self) -> int:
        """Rows that have a target."""
        import torch  # lazily: data/ loads without torch (gen, info, plot)

        return int((~torch.isnan(self.y)).any(dim=1).sum())


def length_groups(lengths: np.ndarray, cells: int) -> list[np.ndarray]:
    """Series indices in groups to run together: longest first, each group's lengths
    within a factor 2 of its longest (padding at most doubles the work), and at most
    `cells` series-steps a group unless a single series is longer."""
    order = np.argsort(-lengths, kind="stable")
    groups, i = [], 0
    while i < len(order):
        longest = int(lengths[order[i]])
        size = max(1, cells // max(longest, 1))
        j = i + 1
        while j < len(order) and j - i < size and 2 * int(lengths[order[j]]) >= longest:
            j += 1
        groups.append(order[i:j])
        i = j
    return groups
