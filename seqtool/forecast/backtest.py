"""`seqtool backtest`: rolling-origin evaluation, the way forecasters judge a model.

From every origin o at or after `start` (a fraction of each series, or a step index),
every `stride` steps, and with the whole horizon inside the series: warm up on steps
0..o-1 and forecast steps o..o+H-1 free-running. One row per (series, origin, h).

Fast by design: one teacher-forced pass over each series gives the state at every
origin (the module over the history before the first origin, then one cell step per row
through the origins), and then all origins of all series run free as one batch. The
forecast of h = 1 is the teacher-forced one (what `predict` gives at that row); each of
the H steps is the same computation as a `rollout` warmed up on the same history.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np
import torch

from seqtool import outputs
from seqtool.data.covariates import given_rows
from seqtool.data.tables import TABLE_FORMATS, SeriesTable, Table, numbered, positions, write_table
from seqtool.errors import SeqtoolError
from seqtool.forecast.conformal import adaptive_radius, origin_scales, scaled_errors
from seqtool.forecast.conformal import bounds as bounds_of
from seqtool.forecast.forecaster import Forecaster, check_sampling, next_step_model
from seqtool.forecast.freerun import from_origins
from seqtool.forecast.intervals import from_paths, interval_columns
from seqtool.forecast.metrics import interval_scores, known_rows, line, naive_forecasts, report, score, series_scales
from seqtool.forecast.windows import check_reach
from seqtool.limits import check_all, fits_in_memory


def backtest(
    model: str | Path,
    data=None,
    *,
    horizon: int,
    start: float = 0.8,
    stride: int = 1,
    samples: int = 0,
    level: float = 80.0,
    intervals: str | None = None,
    adaptive: bool = False,
    seed: int = 0,
    season: int | None = None,
    metrics: str | Path | None = None,
    output: str | Path | None = None,
    quiet: bool = False,
    threads: int | None = None,
) -> tuple[Table, dict]:
    """`seqtool backtest`: the table of forecasts from every origin, and the metrics
    (overall and for each h), the model's beside the naive forecasts' on the same steps.
    With `samples` N (a model of a distribution): N paths from each origin, their mean as
    yhat and their quantiles at `level` as yhat_lo, yhat_hi, scored as rollout's. A
    calibrated model's intervals are conformal by default (`intervals`): at h, the
    calibration's radius times the series' scale before its first origin; `adaptive`
    corrects each series' level by its own misses as origins pass (`adaptive_radius`)."""
    check_all(backtest_horizon=horizon, stride=stride, threads=threads, samples=samples, level=level, seed=seed)
    outputs.check([(output, TABLE_FORMATS, "table"), (metrics, None, "metrics")], inputs=[model, data])
    m = next_step_model(model)
    kind, radius = _intervals(m, intervals, adaptive, level, horizon)
    check_sampling(m, samples, None, intervals)
    check_reach(m, horizon, f"--horizon {horizon}", "give --horizon {h} or fewer")
    table = m.read(data)
    season = m.season_of(season, table.lengths)
    series, origin = origins(table, start, stride, horizon, m.scaling.diff.order + 1, known_reach(m, horizon))
    m.use_threads(threads, len(origin))
    width = len(table.columns) + 3 * len(m.x_names) + 3
    fits_in_memory(
        float(len(origin)) * horizon * width * 8 * 3, f"a backtest of {len(origin):,} origins x {horizon} steps"
    )
    torch.manual_seed(seed)  # the draws of the paths
    drawn = from_origins(m, table, series, origin, horizon, samples)
    yhat, bounds = from_paths(m, drawn, level) if samples else (drawn, {})
    if kind != "model":
        bounds = _conformal(m, table, series, origin, yhat, radius, level, adaptive) if kind == "conformal" else {}
    result, scores = _table_and_scores(m, table, series, origin, yhat, season, {**bounds, "level": level, "kind": kind})
    scores.update({"adaptive": bool(adaptive)} if kind == "conformal" else {})
    report("backtest", scores, f"{len(origin)} origins x {horizon} steps", metrics, quiet)
    ends = [s for s in (scores["by_h"][:1] + scores["by_h"][-1:]) if s["mae"] is not None]
    if not quiet and ends:  # none where no step was scored (the report above says so)
        print(
            "seqtool: backtest by h: "
            + "; ".join(f"h={s['h']}: {line(s)}" for s in dict((s["h"], s) for s in ends).values()),
            file=sys.stderr,
        )
    if output is not None:
        write_table(result, output)
    return result, scores


def origins(
    table: SeriesTable, start: float, stride: int, horizon: int, first: int, reads: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """(series index, origin step) of every origin: from `start` (a fraction in (0, 1) of
    each series' length, rounded up; a whole step index >= 1; or -K, K steps before each
    series' end), every `stride` steps, while the horizon stays inside the series and the
    `reads` steps after it whose known values the model reads are given; never
    before step `first` (the model needs that much history), nor before a series' `lead`
    (steps before it read a value carried back from a later one)."""
    if isinstance(start, bool) or not isinstance(start, (int, float)) or not math.isfinite(start):
        raise SeqtoolError(f"--start must be a number, got {start!r}")
    if 0 < start < 1:
        begin = np.ceil(start * table.lengths).astype(np.int64)
    elif abs(start) >= 1 and float(start).is_integer() and abs(start) <= 1e15:
        begin = np.full(len(table.lengths), int(start), dtype=np.int64) + (table.lengths if start < 0 else 0)
    else:
        raise SeqtoolError(
            "--start must be a fraction of each series in (0, 1), a step index (a whole number >= 1) or -K "
            f"(K steps before each series' end), got {start:g}"
        )
    begin = np.maximum(begin, np.maximum(first, table.lead + 1))
    last = np.minimum(table.lengths - horizon, given_rows(table) - reads)
    counts = np.where(last >= begin, (last - begin) // stride + 1, 0)
    if counts.sum() == 0:
        longest = int(table.lengths.max())
        raise SeqtoolError(
            f"--start {start:g} with --horizon {horizon} leaves no origin in the data: an origin needs "
            f"at least {first} step{'s' if first > 1 else ''} of history and {horizon} "
            f"step{'s' if horizon > 1 else ''} after it (the longest series has {longest})"
        )
    series = np.repeat(np.arange(len(counts)), counts)
    return series, begin[series] + stride * positions(counts)


def known_reach(m: Forecaster, horizon: int) -> int:
    """The steps after an origin whose known values a forecast of `horizon` steps reads: a
    horizon-H model's blocks read H at a time (0 for a model without known columns)."""
    return 0 if m.covariates is None else int(m.covariates.reads(horizon))


def _intervals(m: Forecaster, intervals: str | None, adaptive: bool, level: float, horizon: int):
    """Where the intervals come from, and a calibration's radius [H, G] at `level`."""
    kind = m.interval_kind(intervals)
    if adaptive and kind != "conformal":
        raise SeqtoolError(
            f"--adaptive corrects conformal intervals: drop --intervals {intervals}"
            if m.calibration is not None
            else f"--adaptive corrects conformal intervals: calibrate {m.path} first "
            f"(seqtool calibrate {m.path} DATA --horizon {horizon} -o CALIBRATED.pt)"
        )
    return kind, m.calibration.radius(level, horizon, m.path) if kind == "conformal" else None


def _conformal(m: Forecaster, table, series, origin, yhat, radius, level: float, adaptive: bool) -> dict:
    """Conformal bounds [origins, H, G] from the calibration's radius (or, `adaptive`, each
    series' own, `adaptive_radius`) times each series' scale before its first origin."""
    scales = origin_scales(table, series, origin)
    if adaptive:
        errors = scaled_errors(table, series, origin, yhat, scales)
        radius = adaptive_radius(m.calibration, level, series, origin, errors)
    return bounds_of(yhat, np.broadcast_to(radius, yhat.shape), scales[:, None, :])


def _table_and_scores(
    m: Forecaster, table: SeriesTable, series, origin, yhat, season, bounds: dict
) -> tuple[Table, dict]:
    """The backtest table (docs/formats.md, Tables) and its metrics: overall and for each h; an
    interval's columns and scores where `bounds` holds one (lo, hi, level; paths for the
    CRPS)."""
    count, horizon = len(origin), yhat.shape[1]
    h = np.tile(np.arange(1, horizon + 1), count)
    at = np.repeat(origin, horizon) + h - 1  # the step each row forecasts
    start = np.repeat(table.offsets[series], horizon)
    rows = start + at
    naive, seasonal = naive_forecasts(table.x, start, at, np.repeat(origin, horizon), season)
    yhat = yhat.reshape(count * horizon, -1)
    columns: dict[str, np.ndarray] = {}
    if "series" in table.columns:
        columns["series"] = table.columns["series"][rows]
    columns.update(origin=np.repeat(origin, horizon), h=h, t=table.columns["t"][rows] if "t" in table.columns else at)
    columns.update({n: c[rows] for n, c in table.columns.items() if n not in ("series", "t")})
    n = len(m.x_names)
    columns.update(zip(m.yhat_names, yhat.T))
    flat = {k: bounds[k].reshape(count * horizon, -1) for k in ("lo", "hi") if k in bounds}
    columns.update(interval_columns(m.yhat_names, flat))
    columns.update({"interval_level": np.full(count * horizon, bounds["level"])} if flat else {})
    columns.update(zip(numbered("naive", n), naive.T))
    if seasonal is not None:
        columns.update(zip(numbered("seasonal_naive", n), seasonal.T))
    first = np.full(len(table.lengths), np.iinfo(np.int64).max)
    np.minimum.at(first, series, origin)
    history = positions(table.lengths) < np.repeat(first, table.lengths)
    denominator = series_scales(table.truth, table.offsets, history)[np.repeat(series, horizon)]  # each row's own
    truth = table.truth[rows]
    scores = {**score(yhat, truth, np.ones(len(h), bool), naive, seasonal, denominator), "season": season}
    by_h = [{"h": k, **score(yhat, truth, h == k, naive, seasonal, denominator)} for k in range(1, horizon + 1)]
    if flat and scores["steps"]:
        paths = bounds.get("paths")
        drawn = {} if paths is None else {"paths": paths.reshape(len(paths), count * horizon, -1)}
        got, level = {"point": yhat, **flat, **drawn}, bounds["level"]
        scores.update(
            interval_scores(
                truth, got, level, known_rows(np.ones(len(h), bool), naive, seasonal), np.repeat(series, horizon)
            )
        )
        for k, row in enumerate(by_h, start=1):
            if row["steps"]:
                row.update(interval_scores(truth, got, level, known_rows(h == k, naive, seasonal)))
        scores["by_origin"] = _by_origin(np.repeat(origin, horizon), truth, flat)
    scores.update({"intervals": bounds["kind"]} if flat else {})
    scores.update(mode="backtest", horizon=horizon, origins=count, by_h=by_h)
    return Table(columns, table.source), scores


ROLLING = 20  # origins in by_origin's rolling coverage


def _by_origin(at: np.ndarray, truth: np.ndarray, flat: dict) -> list[dict]:
    """For each origin step in time order: the coverage of the forecasts made there (every
    series, h and output with a known truth), and over it and the ROLLING - 1 origins before."""
    known = ~np.isnan(truth) & ~np.isnan(flat["lo"])
    inside = (flat["lo"] <= truth) & (truth <= flat["hi"]) & known
    steps, where = np.unique(at, return_inverse=True)
    hits = np.bincount(where, inside.sum(axis=1), minlength=len(steps))
    counts = np.bincount(where, known.sum(axis=1), minlength=len(steps))
    roll_hits = np.convolve(hits, np.ones(ROLLING))[: len(steps)]
    roll_counts = np.convolve(counts, np.ones(ROLLING))[: len(steps)]
    return [
        {"origin": int(o), "coverage": float(a / b) if b else None, "rolling": float(c / d) if d else None}
        for o, a, b, c, d in zip(steps, hits, counts, roll_hits, roll_counts)
    ]
