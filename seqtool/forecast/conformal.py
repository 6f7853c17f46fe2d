"""Conformal intervals: a model's own out-of-sample errors, per step ahead, as intervals.

`seqtool calibrate` backtests a model from origins it was not trained on and keeps, for
each h = 1..H, every origin's absolute error |y - yhat| divided by its series' scale (the
mean absolute one-step change of the series before its first origin, MASE's denominator),
so that one calibration serves series of any scale. A forecast h steps ahead then gets
the interval yhat +- r_h * scale, where r_h is the ceil((n + 1) level)-th smallest of the
n scores at h (split conformal: if the errors to come are exchangeable with the stored
ones, the interval covers with probability at least the level; Vovk et al. 2005).

`adaptive_radius` (backtest --adaptive) corrects each series' level as its own misses
become known (adaptive conformal inference, Gibbs and Candes 2021), with the series' own
past scores beside the stored ones, so that coverage recovers after a break.
"""

from __future__ import annotations

import bisect
import math
import warnings
from dataclasses import dataclass

import numpy as np

from seqtool.data.tables import positions
from seqtool.errors import SeqtoolError
from seqtool.forecast.metrics import series_scales

GAMMA = 0.05  # adaptive inference's step: the level moves by GAMMA * (miss - (1 - level)) per known outcome


def needed(level: float) -> int:
    """The fewest scores whose finite-sample quantile exists at `level` percent: the
    smallest n with ceil((n + 1) level) <= n."""
    p = level / 100
    n = max(1, math.floor(p / (1 - p)))
    while _rank(n, p) > n:
        n += 1
    return n


def _rank(n: int, p: float) -> int:
    """The rank of split conformal's quantile among n scores: ceil((n + 1) p), computed so
    that a product that is a whole number in exact arithmetic stays one."""
    return max(1, math.ceil(round((n + 1) * p, 9)))


def quantile(scores: np.ndarray, level: float) -> float:
    """Split conformal's quantile of `scores` (NaN: none) at `level` percent: the
    ceil((n + 1) level)-th smallest; NaN where there are too few scores for it."""
    known = np.sort(scores[~np.isnan(scores)])
    k = _rank(len(known), level / 100)
    return float(known[k - 1]) if 1 <= k <= len(known) else math.nan


@dataclass
class Calibration:
    """The scores of a calibration: [H, N, G] (step ahead, origin, output), NaN where an
    origin's truth at h is unknown; stored in the checkpoint as `calibration`."""

    scores: np.ndarray
    source: str = "table"

    @property
    def horizon(self) -> int:
        return self.scores.shape[0]

    def counts(self) -> np.ndarray:
        """The scores known at each h, the fewest over the outputs [H]."""
        return (~np.isnan(self.scores)).sum(axis=1).min(axis=1)

    def radius(self, level: float, steps: int, name: str = "the model") -> np.ndarray:
        """The radius [steps, G] of the interval at `level` for h = 1..steps, in units of a
        series' scale; refused in one line where the calibration does not reach that far or
        has too few scores at some h for the level."""
        if steps > self.horizon:
            raise SeqtoolError(
                f"{name} is calibrated for h = 1..{self.horizon}; this forecast reaches h = {steps}: "
                f"calibrate with --horizon {steps} or more (or give --intervals none)"
            )
        counts, need = self.counts()[:steps], needed(level)
        short = np.flatnonzero(counts < need)
        if len(short):
            h = int(short[0]) + 1
            raise SeqtoolError(
                f"--level {level:g} needs at least {need} calibration errors at each h; {name} has "
                f"{int(counts[short[0]])} at h = {h}: calibrate on more origins (an earlier --start, a smaller "
                "--stride, more series) or give a lower --level"
            )
        return np.array([[quantile(self.scores[h, :, j], level) for j in range(self.scores.shape[2])]
                         for h in range(steps)])  # fmt: skip

    def to_dict(self) -> dict:
        import torch

        return {"scores": torch.from_numpy(np.ascontiguousarray(self.scores, dtype=np.float64)), "source": self.source}

    @classmethod
    def from_dict(cls, d: dict | None) -> Calibration | None:
        return None if d is None else cls(d["scores"].double().numpy(), d["source"])


def bounds(yhat: np.ndarray, radius: np.ndarray, scale: np.ndarray) -> dict[str, np.ndarray]:
    """The interval yhat +- radius * scale, rows by rows ([rows, G] each)."""
    half = radius * scale
    return {"lo": yhat - half, "hi": yhat + half}


def adaptive_radius(
    calibration: Calibration, level: float, series: np.ndarray, origin: np.ndarray, scores: np.ndarray
) -> np.ndarray:
    """Per origin and h, the radius [origins, H, G] of adaptive conformal inference (Gibbs
    and Candes 2021): each series and h starts at `level`; once the truth of one of its
    forecasts is known (an origin o's at h is known from origin o + h on), the level rises
    by GAMMA level after a miss and falls by GAMMA (1 - level) after a cover, and that score
    joins the series' own. The radius is the quantile at the current level of the stored
    scores and the series' own known ones (the largest of them where the level reaches
    100%). `scores` [origins, H, G]: this backtest's, |y - yhat| / scale (NaN: unknown)."""
    count, horizon, width = scores.shape
    radius = np.full(scores.shape, np.nan)
    target = 1 - level / 100
    order = np.lexsort((origin, series))
    runs = np.split(order, np.flatnonzero(np.diff(series[order])) + 1)
    for h in range(horizon):
        for j in range(width):
            stored = np.sort(calibration.scores[h, :, j][~np.isnan(calibration.scores[h, :, j])])
            for rows in runs:
                alpha, own, waiting = target, [], []  # waiting: (the origin from which the truth is known, its row)
                for r in rows:
                    while waiting and waiting[0][0] <= origin[r]:
                        _, done = waiting.pop(0)
                        s = scores[done, h, j]
                        if not np.isnan(s):
                            alpha += GAMMA * (target - float(s > radius[done, h, j]))
                            bisect.insort(own, float(s))
                    radius[r, h, j] = _at(stored, own, 1 - alpha)
                    waiting.append((origin[r] + h + 1, r))
    return radius


def _at(stored: np.ndarray, own: list[float], p: float) -> float:
    """The finite-sample quantile at probability p (held in [0, 1]) of the sorted `stored`
    and `own` together: their k-th smallest, found without merging them (`own` is short)."""
    n, m = len(stored), len(own)
    if n + m == 0:
        return math.nan
    k = min(_rank(n + m, min(max(p, 0.0), 1.0)), n + m)
    for t in range(max(0, k - n), min(k, m) + 1):  # t of the k smallest are the series' own
        left = max(stored[k - t - 1] if k - t >= 1 else -math.inf, own[t - 1] if t >= 1 else -math.inf)
        if left <= (stored[k - t] if k - t < n else math.inf) and left <= (own[t] if t < m else math.inf):
            return float(left)
    return math.nan


def scaled_errors(table, series: np.ndarray, origin: np.ndarray, yhat: np.ndarray, scales=None) -> np.ndarray:
    """|y - yhat| / scale [origins, H, G] of forecasts from each origin: scale, the mean
    absolute one-step change of the series before its first origin (as a backtest's MASE;
    `origin_scales`, unless given); NaN where the truth is unknown or there is no scale."""
    scales = origin_scales(table, series, origin, warn=False) if scales is None else scales
    return np.abs(yhat - truths(table, series, origin, yhat.shape[1])) / scales[:, None]


def truths(table, series: np.ndarray, origin: np.ndarray, horizon: int) -> np.ndarray:
    """The true values [origins, H, G] of the steps forecast from each origin."""
    rows = table.offsets[series][:, None] + origin[:, None] + np.arange(horizon)
    return table.truth[rows]


def origin_scales(table, series: np.ndarray, origin: np.ndarray, warn: bool = True) -> np.ndarray:
    """Each origin's series scale [origins, G]: of the steps before the series' first origin
    (`usable`: 0 and unknown scales as NaN)."""
    first = np.full(len(table.lengths), np.iinfo(np.int64).max)
    np.minimum.at(first, series, origin)
    history = positions(table.lengths) < np.repeat(first, table.lengths)
    return usable(series_scales(table.truth, table.offsets, history), table.ids, np.unique(series), warn)[series]


def usable(scales: np.ndarray, ids: list[str], used: np.ndarray | None = None, warn: bool = True) -> np.ndarray:
    """Series scales [N, G] with 0 and unknown ones as NaN: a series without one (constant
    before its forecast, or with fewer than 2 known steps there) gets no interval, and a
    warning says which (among the series `used`)."""
    bad = ~(scales > 0)
    among = np.arange(len(scales)) if used is None else used
    missing = among[bad[among].any(axis=1)]
    if warn and len(missing):
        warnings.warn(
            f"no interval for {len(missing)} series whose scale is 0 or unknown (constant, or fewer than 2 "
            f"known steps before the forecast), e.g. series {ids[missing[0]]!r}",
            stacklevel=2,
        )
    return np.where(bad, np.nan, scales)
