"""From a series table to what a model sees: targets, splits, standardisation, and series
stored end to end.

Training and inference share this module, so a model always sees its data the same way.
Series are kept end to end (`Rows`: [rows, features] plus offsets), never padded to the
longest one, so memory grows with the number of rows whatever the lengths; batches are
gathered from them, and a model runs over them in groups of similar length (`length_groups`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .errors import SeqtoolError
from .tables import SeriesTable

NEXT_STEP, MAPPING = "next-step", "mapping"
MAX_MAGNITUDE = 1e150  # squared errors of values up to this stay finite in float64
MIN_SPREAD = 1e-150  # ... and those of a spread down to this stay above zero
CONSTANT = 2.0**-46  # a spread within ~64 rounding steps of the values is no spread at all


def task_of(table: SeriesTable) -> str:
    """Next-step forecasting when the table has no target column, x -> y mapping otherwise."""
    return MAPPING if table.y_names else NEXT_STEP


def inputs_and_targets(table: SeriesTable, task: str) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Per series: inputs [T, F] and targets [T, G], NaN where a step has no target.

    For next-step forecasting the target at step t is the input at t+1 (none at the last step).
    """
    xs = table.split(table.x)
    if task == MAPPING:
        if table.y is None:
            return xs, [np.full((len(x), 0), np.nan) for x in xs]
        return xs, table.split(table.y)
    ys = []
    for x in xs:
        y = np.full_like(x, np.nan)
        y[:-1] = x[1:]
        ys.append(y)
    return xs, ys


@dataclass
class Norm:
    """Per-column mean and std of the training split; outputs are inverted with them."""

    x_mean: np.ndarray
    x_std: np.ndarray
    y_mean: np.ndarray
    y_std: np.ndarray

    @classmethod
    def fit(
        cls, xs: list[np.ndarray], ys: list[np.ndarray], task: str,
        x_names: list[str] | None = None, y_names: list[str] | None = None, source: str = "table",
    ) -> Norm:  # fmt: skip
        """Statistics of the training split. A column whose values or spread cannot be
        represented (see `_moments`) is refused, naming it."""
        x_mean, x_std = _moments(np.concatenate(xs), x_names, source)
        if task == NEXT_STEP:  # outputs are fed back as inputs: one scale for both
            return cls(x_mean, x_std, x_mean.copy(), x_std.copy())
        y_mean, y_std = _moments(np.concatenate(ys), y_names, source)
        return cls(x_mean, x_std, y_mean, y_std)

    def to_dict(self):
        import torch

        return {k: torch.as_tensor(v, dtype=torch.float64) for k, v in self.__dict__.items()}

    @classmethod
    def from_dict(cls, d) -> Norm:
        return cls(**{k: np.asarray(d[k], dtype=np.float64) for k in ("x_mean", "x_std", "y_mean", "y_std")})

    def inputs(self, x: np.ndarray, names: list[str] | None = None, source: str = "table", dtype=np.float32) -> np.ndarray:
        """Inputs [..., F] on the model's scale (float32 unless asked); a value too far from
        the training data to be represented is refused, naming its column."""
        return _standardise(x, self.x_mean, self.x_std, names, source, dtype)

    def targets(self, y: np.ndarray, dtype=np.float32) -> np.ndarray:
        """Targets [..., G] on the model's scale (NaN stays NaN: no target)."""
        return _standardise(y, self.y_mean, self.y_std, None, "targets", dtype)

    def outputs(self, out: np.ndarray) -> np.ndarray:
        """Model outputs [..., G] back on the table's scale, float64."""
        return np.asarray(out, dtype=np.float64) * self.y_std + self.y_mean


def _moments(values: np.ndarray, names: list[str] | None, source: str) -> tuple[np.ndarray, np.ndarray]:
    """Mean and std per column, ignoring NaN (no target).

    A column is constant when its spread is within rounding of its magnitude (relative,
    so 1e-300 * sin t and 1 + 1e-13 sin t are not constant); a constant column is scaled by
    its own magnitude. Values beyond 1e150, or a spread below 1e-150, are refused: their
    squared errors would overflow or vanish in float64.
    """
    means, stds = [], []
    for j in range(values.shape[1]):
        name = names[j] if names else f"column {j}"
        v = values[:, j]
        v = v[~np.isnan(v)]
        if v.size == 0:
            means.append(0.0)
            stds.append(1.0)
            continue
        big = check_magnitude(v, name, source)
        mean = float(np.mean(v))
        d = v - mean
        reach = float(np.max(np.abs(d)))
        std = reach * float(np.sqrt(np.mean((d / reach) ** 2))) if reach > 0 else 0.0
        if std <= CONSTANT * big:
            std = abs(mean) if mean != 0 else 1.0
        elif std < MIN_SPREAD:
            raise SeqtoolError(
                f"{source}: column {name!r} varies by only {std:.3g}; seqtool needs a spread of at "
                f"least {MIN_SPREAD:g} (squared errors must not vanish): rescale it"
            )
        means.append(mean)
        stds.append(std)
    return np.array(means), np.array(stds)


def check_magnitude(values: np.ndarray, name: str, source: str) -> float:
    """The largest magnitude in `values` (NaN ignored); beyond 1e150 refused, naming the column."""
    big = float(np.max(np.abs(values[~np.isnan(values)]), initial=0.0))
    if big > MAX_MAGNITUDE:
        raise SeqtoolError(
            f"{source}: column {name!r} holds {big:.3g}; seqtool models values up to "
            f"{MAX_MAGNITUDE:g} in magnitude (their squared errors must be finite): rescale it"
        )
    return big


def _standardise(v: np.ndarray, mean: np.ndarray, std: np.ndarray, names, source: str, dtype) -> np.ndarray:
    with np.errstate(over="ignore", invalid="ignore"):
        z = ((v - mean) / std).astype(dtype)
    bad = np.isinf(z) | (np.isnan(z) & ~np.isnan(v))
    if bad.any():
        row, col = (int(i[0]) for i in np.nonzero(bad.reshape(-1, bad.shape[-1])))
        value = v.reshape(-1, v.shape[-1])[row, col]
        name = names[col] if names else f"column {col}"
        raise SeqtoolError(
            f"{source}: column {name!r}: {value:.3g} is {abs(value - mean[col]) / std[col]:.3g} "
            f"standard deviations from the training data; the model cannot represent it"
        )
    return z


def split(
    xs: list[np.ndarray], ys: list[np.ndarray], val: float, seed: int
) -> tuple[tuple[list, list], tuple[list, list]]:
    """Hold out a fraction `val` for validation: whole series when there are several,
    else the tail of the one series (its targets before the tail are left out of the
    validation loss, and the training part stops where the tail starts)."""
    if val <= 0:
        return (xs, ys), ([], [])
    n = len(xs)
    if n >= 2:
        n_val = min(n - 1, max(1, round(val * n)))
        order = np.random.default_rng(seed).permutation(n)
        held = set(order[:n_val].tolist())
        train = [i for i in range(n) if i not in held]
        val_ids = sorted(held)
        return ([xs[i] for i in train], [ys[i] for i in train]), (
            [xs[i] for i in val_ids],
            [ys[i] for i in val_ids],
        )
    x, y = xs[0], ys[0]
    cut = len(x) - max(1, round(val * len(x)))
    if cut < 2:
        raise SeqtoolError(f"the series has {len(x)} steps: too short to hold out --val {val}")
    y_train = y[:cut].copy()
    y_train[-1] = np.nan  # its target lies in the held-out tail
    y_val = y.copy()
    y_val[:cut] = np.nan
    return ([x[:cut]], [y_train]), ([x], [y_val])


@dataclass
class Rows:
    """Series end to end: inputs x [rows, F] and targets y [rows, G] (torch tensors on the
    model's scale, NaN where a step has no target), series i in rows offsets[i]:offsets[i+1]."""

    x: object
    y: object
    offsets: object  # int64 tensor [N + 1]
    lengths: object  # int64 tensor [N]

    @classmethod
    def of(cls, xs: list[np.ndarray], ys: list[np.ndarray], norm: Norm, names=None, source="table") -> Rows:
        import torch

        lengths = np.array([len(a) for a in xs], dtype=np.int64)
        x = norm.inputs(np.concatenate(xs), names, source)
        y = norm.targets(np.concatenate(ys))
        offsets = torch.from_numpy(np.concatenate([[0], np.cumsum(lengths)]))
        return cls(torch.from_numpy(x), torch.from_numpy(y), offsets, torch.from_numpy(lengths))

    def to(self, device) -> Rows:
        return Rows(*(t.to(device) for t in (self.x, self.y, self.offsets, self.lengths)))


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
