"""How good a forecast is, and whether it beats the simple ones (docs/formats.md, Metrics JSON).

Every report sets the model beside the naive forecasts on exactly the same steps:

- naive: the last known value carried forward (Hyndman & Athanasopoulos, FPP3 5.2);
- seasonal naive, when a season m is known: the value one season before, from the last
  known season (for h steps ahead of origin o: the value at o + h - 1 - m * (floor((h - 1) / m) + 1));
- MASE (Hyndman & Koehler 2006): each step's absolute error over the mean absolute
  one-step change of the known history of its own series (the in-sample MAE of its
  one-step naive forecast), averaged over the steps; series without one left out.

A step is scored where its truth, the model's forecast and every naive forecast shown
are known, so that all figures of one report are over the same steps. numpy only.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np
import torch

from seqtool import outputs
from seqtool.model.network import t_cdf

ERROR_KEYS = ("mse", "rmse", "mae", "mase")


def naive_forecasts(
    values: np.ndarray, start: np.ndarray, pos: np.ndarray, origin: np.ndarray, season: int | None
) -> tuple[np.ndarray, np.ndarray | None]:
    """The naive and seasonal naive forecasts [K, F] of K steps: step k forecasts step
    `pos[k]` of the series whose first row in `values` [rows, F] is `start[k]`, knowing
    its steps before `origin[k]`. NaN where a forecast has no known value to repeat."""
    known = origin >= 1
    naive = np.where(known[:, None], values[start + np.maximum(origin - 1, 0)], np.nan)
    if not season:
        return naive, None
    back = pos - season * ((pos - origin) // season + 1)
    seasonal = np.where((back >= 0)[:, None], values[start + np.maximum(back, 0)], np.nan)
    return naive, seasonal


def series_scales(values: np.ndarray, offsets: np.ndarray, history: np.ndarray) -> np.ndarray:
    """Each series' mean absolute one-step change of `values` [rows, F] over its consecutive
    rows that are both in `history` and known [N, F] (NaN where it has none): MASE's scale."""
    total, count = _changes(values, offsets, history)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, total / count, np.nan)


def _changes(values: np.ndarray, offsets: np.ndarray, history: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per series and column [N, F]: the sum and the count of the absolute one-step changes
    between known rows of the series that are both in `history`."""
    inside = history[1:] & history[:-1]
    inside[offsets[1:-1] - 1] = False  # no step across two series
    steps = np.abs(np.diff(values, axis=0))
    known = inside[:, None] & ~np.isnan(steps)
    owner = np.repeat(np.arange(len(offsets) - 1), np.diff(offsets))[:-1]
    total, count = np.zeros((2, len(offsets) - 1, values.shape[1]))
    np.add.at(total, owner, np.where(known, steps, 0.0))
    np.add.at(count, owner, known)
    return total, count


def score(
    yhat: np.ndarray, truth: np.ndarray | None, scored: np.ndarray, naive: np.ndarray | None = None,
    seasonal: np.ndarray | None = None, denominator: np.ndarray | None = None,
) -> dict:  # fmt: skip
    """The model's errors on the original scale over the `scored` rows where the truth, the
    forecast and each naive forecast given are known; the naive forecasts' on the same."""
    empty = {"steps": 0, **dict.fromkeys(ERROR_KEYS), "naive": None, "seasonal_naive": None}
    if truth is None:
        return empty
    mask = scored[:, None] & ~np.isnan(yhat) & ~np.isnan(truth)
    for other in (naive, seasonal):
        if other is not None:
            mask &= ~np.isnan(other)
    if not mask.any():
        return empty
    result = {"steps": int(mask.sum()), **_errors(yhat, truth, mask, denominator)}
    result["naive"] = _errors(naive, truth, mask, denominator) if naive is not None else None
    result["seasonal_naive"] = _errors(seasonal, truth, mask, denominator) if seasonal is not None else None
    return result


def _errors(forecast: np.ndarray, truth: np.ndarray, mask: np.ndarray, denominator: np.ndarray | None) -> dict:
    e = (forecast - truth)[mask]
    with np.errstate(over="ignore"):  # forecasts far off: an MSE of inf, reported as such
        mse = float(np.mean(e**2))
    mase = None
    if denominator is not None:  # each step over its own series' scale; series without one left out
        with np.errstate(invalid="ignore", divide="ignore"):
            scaled = (np.abs(forecast - truth) / np.where(denominator > 0, denominator, np.nan))[mask]
        if np.isfinite(scaled).any():
            mase = float(np.mean(scaled[np.isfinite(scaled)]))
    return {"mse": mse, "rmse": math.sqrt(mse), "mae": float(np.mean(np.abs(e))), "mase": mase}


def known_rows(scored: np.ndarray, *forecasts: np.ndarray | None) -> np.ndarray:
    """`scored` [rows] where every forecast given (the naive ones; None: none) is known: the
    steps of a report's point figures, for its interval figures too."""
    for f in forecasts:
        if f is not None:
            scored = scored & ~np.isnan(f).any(axis=1)
    return scored


def tail(level: float) -> float:
    """The probability below an interval at `level` percent (and above it): the interval is
    the quantiles tail and 1 - tail."""
    return (1 - level / 100) / 2


def interval_scores(
    truth: np.ndarray, got: dict, level: float, scored: np.ndarray, series: np.ndarray | None = None
) -> dict:
    """How good the intervals are on the scored rows with a known truth: `coverage`, the
    share of truths inside [lo, hi] (calibrated: level / 100); `width`, their mean width; `pinball`, the mean
    quantile loss at the two bounds; `winkler`, the mean interval score (the width, plus
    2 / (1 - level) times the distance of a truth outside; lower is better); with `series`
    (each row's series), `series_near_level`, the share of series whose own coverage is
    within 10 points of the level; and `crps` (lower is better): from
    sample paths ("paths" in `got`, [N, rows, G]), else in closed form: a Gaussian
    ("scale"), a Student-t ("scale", "df") or, with --log-values, a log-normal ("log_scale");
    none for a log-t, whose mean is infinite."""
    lo, hi, point = got["lo"], got["hi"], got["point"]
    mask = scored[:, None] & ~np.isnan(truth) & ~np.isnan(lo)
    if not mask.any():  # no interval with a truth (series without a scale): nothing to score
        return {"level": level, **dict.fromkeys(("coverage", "width", "pinball", "winkler", "crps"))}
    y, lo, hi, point = truth[mask], lo[mask], hi[mask], point[mask]
    q = tail(level)
    pinball = (np.maximum(q * (y - lo), (q - 1) * (y - lo)) + np.maximum((1 - q) * (y - hi), -q * (y - hi))) / 2
    inside = (lo <= y) & (y <= hi)
    outside = np.maximum(lo - y, 0) + np.maximum(y - hi, 0)
    result = {
        "level": level,
        "coverage": float(np.mean(inside)),
        "width": float(np.mean(hi - lo)),
        "pinball": float(np.mean(pinball)),
        "winkler": float(np.mean(hi - lo + 2 / (1 - level / 100) * outside)),
        "crps": None,
    }
    if series is not None:
        owner = np.broadcast_to(series[:, None], mask.shape)[mask]
        count = np.bincount(owner)
        share = np.bincount(owner, inside)[count > 0] / count[count > 0]
        result["series_near_level"] = float(np.mean(np.abs(share - level / 100) <= 0.1 + 1e-12))
    if "paths" in got:  # the sample estimate: E|X - y| - E|X - X'| / 2, from sorted draws
        x = np.sort(got["paths"][:, mask], axis=0)
        n = len(x)
        spread = (2 * np.arange(1, n + 1) - n - 1)[:, None] * x
        result["crps"] = float(np.mean(np.abs(x - y).mean(axis=0) - spread.sum(axis=0) / n**2))
    elif "scale" in got:
        sigma = got["scale"][mask]
        z = (y - point) / sigma
        result["crps"] = float(np.mean(sigma * (_t_crps(z, got["df"][mask]) if "df" in got else _normal_crps(z))))
    elif "log_scale" in got and "df" not in got:  # a log-normal (--log-values); of a log-t the mean is infinite
        result["crps"] = float(np.mean(_lognormal_crps(y, np.log(point), got["log_scale"][mask])))
    return result


def _normal_crps(z: np.ndarray) -> np.ndarray:
    """The CRPS of the standard normal at z (Gneiting and Raftery 2007)."""
    phi = np.exp(-z * z / 2) / math.sqrt(2 * math.pi)
    return z * (2 * _normal_cdf(z) - 1) + 2 * phi - 1 / math.sqrt(math.pi)


def _lognormal_crps(y: np.ndarray, mu: np.ndarray, sigma: np.ndarray) -> np.ndarray:
    """The CRPS of the log-normal of log-mean mu and log-scale sigma at y > 0 (Baran and
    Lerch 2015); its median exp(mu) is the point forecast."""
    z = (np.log(y) - mu) / sigma
    return y * (2 * _normal_cdf(z) - 1) - 2 * np.exp(mu + sigma**2 / 2) * (
        _normal_cdf(z - sigma) + _normal_cdf(sigma / math.sqrt(2)) - 1
    )


def _t_crps(z: np.ndarray, df: np.ndarray) -> np.ndarray:
    """The CRPS of the standard Student-t with df (> 1) degrees of freedom at z (Jordan,
    Krueger and Lerch 2019, scoringRules)."""

    z, v = (
        torch.from_numpy(z),
        torch.from_numpy(df).clamp(max=1e5),
    )  # beyond, the normal's (lgamma differences lose precision)
    log_beta = lambda a, b: torch.lgamma(a) + torch.lgamma(b) - torch.lgamma(a + b)  # noqa: E731
    half = torch.tensor(0.5, dtype=v.dtype)
    density = torch.distributions.StudentT(v).log_prob(z).exp()
    spread = 2 * torch.sqrt(v) * torch.exp(log_beta(half, v - 0.5) - 2 * log_beta(half, v / 2)) / (v - 1)
    cdf = torch.cat([t_cdf(a, b) for a, b in zip(z.split(1 << 16), v.split(1 << 16))])  # [rows, 64] at a time
    return (z * (2 * cdf - 1) + 2 * density * (v + z * z) / (v - 1) - spread).numpy()


def _normal_cdf(z: np.ndarray) -> np.ndarray:
    return 0.5 * (1 + np.vectorize(math.erf, otypes=[float])(z / math.sqrt(2)))


def losses(scores: dict) -> list[tuple[str, float]]:
    """The naive forecasts that beat the model (a lower MAE): (what, its MAE)."""
    lost = []
    for key, what in (
        ("naive", "the naive forecast (the last known value)"),
        ("seasonal_naive", f"the seasonal naive forecast (season {scores.get('season')})"),
    ):
        other = scores.get(key)
        if scores.get("mae") is not None and other is not None and other["mae"] < scores["mae"]:
            lost.append((what, other["mae"]))
    return lost


def line(scores: dict) -> str:
    """The errors of a report in one line: the model's, then each naive forecast's MAE."""
    text = f"MSE {scores['mse']:.3g}  RMSE {scores['rmse']:.3g}  MAE {scores['mae']:.3g}"
    if scores.get("mase") is not None:
        text += f"  MASE {scores['mase']:.3g}"
    for key, name in (("naive", "naive"), ("seasonal_naive", "seasonal naive")):
        if scores.get(key) is not None:
            text += f"; {name} MAE {scores[key]['mae']:.3g}"
    return text


def report(command: str, scores: dict, what: str, path: str | Path | None, quiet: bool) -> None:
    """The metrics JSON (`--metrics`), and on stderr the summary line (`what` was scored
    in brackets), and a plain line when a naive forecast beats the model."""
    if path is not None:
        outputs.write_json(path, scores)
    if quiet:
        return
    if scores["mse"] is None:
        print(f"seqtool: {command}: no known targets to score", file=sys.stderr)
        return
    print(
        f"seqtool: {command} ({what}): {line(scores)} over {scores['steps']} steps",
        file=sys.stderr,
    )
    for what, mae in losses(scores):
        print(
            f"seqtool: {command}: the model is worse than {what}: MAE {scores['mae']:.3g} against {mae:.3g}",
            file=sys.stderr,
        )


def remedy(scores: dict, lags: tuple[int, ...]) -> str | None:
    """Where a naive forecast beats the model: what it beats it with, and the likely cure."""
    lost = losses(scores)
    if not lost:
        return None
    what, mae = lost[0]
    season = scores.get("season")
    if "seasonal" not in what and not lags:
        cure = "a trend or a wandering level is the usual cause: try --diff 1"
    elif "seasonal" in what and season not in lags:
        cure = f"the season is the usual cause: try --diff {','.join(map(str, (*lags, season)))}"
    else:
        cure = "train longer (--steps), with a longer --window or a larger --hidden"
    return f"the model is worse than {what}: MAE {scores['mae']:.3g} against {mae:.3g}; {cure}"
