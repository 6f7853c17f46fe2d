"""From a series table to what a model sees: targets, splits, standardisation, padded tensors.

Training and inference share this module, so a model always sees its data the same way.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .errors import SeqtoolError
from .tables import SeriesTable

NEXT_STEP, MAPPING = "next-step", "mapping"


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
    def fit(cls, xs: list[np.ndarray], ys: list[np.ndarray], task: str) -> Norm:
        x = np.concatenate(xs)
        x_mean, x_std = x.mean(0), _safe_std(x.std(0))
        if task == NEXT_STEP:  # outputs are fed back as inputs: one scale for both
            return cls(x_mean, x_std, x_mean.copy(), x_std.copy())
        y = np.concatenate(ys)
        return cls(x_mean, x_std, np.nanmean(y, 0), _safe_std(np.nanstd(y, 0)))

    def to_dict(self):
        import torch

        return {k: torch.as_tensor(v, dtype=torch.float64) for k, v in self.__dict__.items()}

    @classmethod
    def from_dict(cls, d) -> Norm:
        return cls(**{k: np.asarray(d[k], dtype=np.float64) for k in ("x_mean", "x_std", "y_mean", "y_std")})


def _safe_std(std: np.ndarray) -> np.ndarray:
    return np.where(std > 1e-12, std, 1.0)


def split(
    xs: list[np.ndarray], ys: list[np.ndarray], val: float, seed: int
) -> tuple[tuple[list, list], tuple[list, list]]:
    """Hold out a fraction `val` for validation: whole series when there are several,
    else the tail of the one series (its targets before the tail are left out of the
    validation loss, and the training part stops where the tail starts)."""
    if val <= 0:
        return (xs, ys), ([], [])
    if not 0 < val < 1:
        raise SeqtoolError(f"--val must be a fraction in [0, 1), got {val}")
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


def padded(arrays: list[np.ndarray], fill: float, dtype=np.float32) -> np.ndarray:
    """Per-series arrays [T_i, F] as one [N, max T, F] array, `fill` past each end."""
    steps = max(len(a) for a in arrays)
    out = np.full((len(arrays), steps, arrays[0].shape[1]), fill, dtype=dtype)
    for i, a in enumerate(arrays):
        out[i, : len(a)] = a
    return out


def standardised(xs: list[np.ndarray], ys: list[np.ndarray], norm: Norm):
    """Padded tensors: inputs [N, T, F] (0 past the end), targets [N, T, G] (NaN where none)."""
    import torch

    x = padded([(a - norm.x_mean) / norm.x_std for a in xs], 0.0)
    y = padded([(a - norm.y_mean) / norm.y_std for a in ys], np.nan)
    return torch.from_numpy(x), torch.from_numpy(y)
