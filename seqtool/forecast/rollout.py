"""`seqtool rollout`: warm up on the true steps of each series, then feed the model its own
forecasts (`freerun.roll`): to the end of the series, for `--steps`, or `--horizon` steps
past the end; point forecasts or sample paths. The table is cut or lengthened to the rows
forecast, with a `phase` column (warmup, free)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from seqtool import outputs
from seqtool.data.covariates import reach
from seqtool.data.tables import TABLE_FORMATS, SeriesTable, extended, positions
from seqtool.errors import SeqtoolError
from seqtool.forecast.conformal import bounds as bounds_of
from seqtool.forecast.conformal import usable
from seqtool.forecast.forecaster import Forecaster, check_sampling, next_step_model
from seqtool.forecast.freerun import roll
from seqtool.forecast.intervals import from_paths, interval_columns, paths_table
from seqtool.forecast.metrics import interval_scores, known_rows, naive_forecasts, report, series_scales
from seqtool.forecast.predict import denominator_of, scores_of, write_if
from seqtool.forecast.windows import check_reach
from seqtool.limits import check_all, fits_in_memory

FEWER = "give --horizon {h} (past each series' end) or --steps {h}"  # a --scale window model's reach


def rollout(
    model: str | Path,
    data=None,
    *,
    warmup: int | None = None,
    steps: int | None = None,
    horizon: int = 0,
    samples: int = 0,
    level: float = 80.0,
    intervals: str | None = None,
    paths: str | Path | None = None,
    seed: int = 0,
    season: int | None = None,
    metrics: str | Path | None = None,
    output: str | Path | None = None,
    quiet: bool = False,
    threads: int | None = None,
) -> tuple[SeriesTable, dict]:
    """`seqtool rollout`: warm up on the first `warmup` true steps of each series, then feed
    the model its own predictions: to the end of the series, for `steps` steps, or `horizon`
    steps past the end, all series in one batch. With `samples` N (a distribution head), N
    paths per series fed their own draws (from `seed`): `yhat` is their mean, `yhat_lo`/
    `yhat_hi` their quantiles at `level`; `paths` writes them. A calibrated model's
    intervals are conformal by default: the radius at h times the warm-up's scale."""
    check_all(rollout_warmup=warmup, free_steps=steps, horizon=horizon, threads=threads, samples=samples,
              level=level, seed=seed)  # fmt: skip
    if steps is not None and horizon:
        raise SeqtoolError("give --steps or --horizon, not both")
    outputs.check(
        [(output, TABLE_FORMATS, "table"), (metrics, None, "metrics"), (paths, TABLE_FORMATS, "table")],
        inputs=[model, data],
    )
    m = next_step_model(model)
    kind = m.interval_kind(intervals)
    check_sampling(m, samples, paths, intervals)
    table = m.read(data)
    _check_phase(m, table)
    m.use_threads(threads, len(table.lengths) * max(samples, 1))
    season = m.season_of(season, table.lengths)
    k = _warmups(m, table, warmup, horizon)
    free = np.full(len(k), steps) if steps is not None else table.lengths - k + horizon
    check_reach(m, int(free.max(initial=0)), "this rollout", FEWER)
    total = k + free
    reach(m.covariates, table, total, "this rollout")
    width = len(table.columns) + (len(m.yhat_names) + 1) * (3 + max(samples, 1))
    fits_in_memory(float(total.sum()) * width * 8 * 3, f"a rollout of {int(total.sum()):,} rows")

    torch.manual_seed(seed)  # the draws of the paths
    radius = m.calibration.radius(level, int(free.max(initial=0)), m.path) if kind == "conformal" else None
    drawn = roll(m, table, k, free, samples)
    yhat, bounds = from_paths(m, drawn, level) if samples else (drawn, {})
    bounds = _conformal(m, table, k, total, yhat, radius) if kind == "conformal" else bounds if kind else {}
    new = {**dict(zip(m.yhat_names, yhat.T)), **interval_columns(m.yhat_names, bounds)}
    result = extended(table, total, new, m.statics.names if m.statics is not None else (), skip=("phase",))
    scores = _scores(table, result, yhat, bounds, k, level, season, kind)
    report("rollout", scores, f"free-running, warm-up {scores['warmup']}", metrics, quiet)
    write_if(result, output)
    if paths is not None:
        write_if(paths_table(result, drawn, m.yhat_names), paths)
    return result, scores


def _conformal(m: Forecaster, table: SeriesTable, k: np.ndarray, total: np.ndarray, yhat, radius) -> dict:
    """Conformal bounds of the free rows (h = 1, 2, ... after each warm-up; none in it)."""
    h = positions(total) - np.repeat(k, total)
    scales = series_scales(table.truth, table.offsets, positions(table.lengths) < np.repeat(k, table.lengths))
    free = h >= 0
    r = np.full(yhat.shape, np.nan)
    r[free] = radius[h[free]]
    return bounds_of(yhat, r, np.repeat(usable(scales, table.ids), total, axis=0))


def _scores(
    table: SeriesTable, result: SeriesTable, yhat, bounds: dict, k: np.ndarray, level: float, season, kind=None
) -> dict:
    """The free steps' scores (the warm-up's are not scored), the naive forecasts' from the
    last warm-up step; the `phase` column of `result` marks which is which."""
    step, first_free = positions(result.lengths), np.repeat(k, result.lengths)
    result.columns["phase"] = np.where(step < first_free, "warmup", "free")
    start = np.repeat(table.offsets[:-1], result.lengths)
    naive, seasonal = naive_forecasts(table.x, start, step, np.minimum(step, first_free), season)
    warm = positions(table.lengths) < np.repeat(k, table.lengths)
    denominator = denominator_of(table, table.truth, warm, result.lengths)
    scores = scores_of(yhat, result.x, step >= first_free, naive, seasonal, denominator, season)
    if bounds and scores["steps"]:
        owner = np.repeat(np.arange(len(result.lengths)), result.lengths)
        scores.update(
            interval_scores(
                result.x, {"point": yhat, **bounds}, level, known_rows(step >= first_free, naive, seasonal), owner
            )
        )
    scores.update(warmup=int(k.min()) if len(set(k.tolist())) == 1 else "varies", mode="free-running")
    scores.update({"intervals": kind} if bounds else {})
    return scores


def _check_phase(m: Forecaster, table: SeriesTable) -> None:
    """A column the model reads may not be named `phase`: the rollout writes its own there."""
    read = [*table.x_names, *table.y_names, *(m.covariates.names if m.covariates is not None else ())]
    read += list(m.statics.names) if m.statics is not None else []
    if "phase" in read:
        raise SeqtoolError(
            f"{table.source}: the model reads a column named 'phase', where a rollout writes whether a row is "
            "warm-up or free: rename it (in the table and for train)"
        )


def _warmups(m: Forecaster, table: SeriesTable, warmup: int | None, horizon: int) -> np.ndarray:
    """Steps of warm-up per series: `warmup`, or by default 10 (all of it with a horizon);
    never fewer than the differencing needs (its order, plus one step the network reads)."""
    lengths, need = table.lengths, m.scaling.diff.order + 1
    if warmup is None:
        return lengths if horizon else np.minimum(lengths, max(10, need))
    if warmup < need:
        raise SeqtoolError(
            f"--warmup {warmup}: the model differences at lags {m.scaling.diff} "
            f"(--diff), so it needs at least {need} steps of warm-up"
        )
    short = np.flatnonzero(lengths < warmup)
    if len(short):
        raise SeqtoolError(f"{table.named(short[0])} has {lengths[short[0]]} steps, fewer than --warmup {warmup}")
    return np.full(len(lengths), warmup)
