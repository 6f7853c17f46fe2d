"""`seqtool predict`: teacher-forced forecasts of every step, the state carried through each
series, written as the input table plus `yhat` (or `yhat0`, `yhat1`, ...) on the original
scale, aligned with the truth it estimates: for a next-step model, `yhat` in row t is the
forecast of x[t] made from x[0..t-1], so row 0 has none (nor the first `--diff` steps
that only feed the differencing). A step is scored when its row index within its series
is at least `warmup` and its truth is known; the naive forecasts are scored on the same
steps (`metrics`)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from seqtool import outputs
from seqtool.data.examples import MAPPING, NEXT_STEP
from seqtool.data.scaling import LEVEL_STEPS, times
from seqtool.data.tables import TABLE_FORMATS, SeriesTable, positions, ranges, write_table
from seqtool.forecast.conformal import bounds, usable
from seqtool.forecast.forecaster import Forecaster
from seqtool.forecast.intervals import interval_columns
from seqtool.forecast.metrics import (
    interval_scores,
    known_rows,
    naive_forecasts,
    report,
    score,
    series_scales,
    tail,
)
from seqtool.forecast.windows import first_read, pieces, reads_windows
from seqtool.limits import check_all
from seqtool.model.network import over_series

SCALED = ("point", "lo", "hi", "scale")  # on the series' scale: multiplied back by its level


def predict(
    model: str | Path,
    data=None,
    *,
    warmup: int = 0,
    season: int | None = None,
    level: float = 80.0,
    intervals: str | None = None,
    metrics: str | Path | None = None,
    output: str | Path | None = None,
    quiet: bool = False,
    threads: int | None = None,
) -> tuple[SeriesTable, dict]:
    """`seqtool predict`: teacher-forced outputs for every step, state carried through each
    series; the table goes to `output` (a file, '-' for stdout, None: returned only). A
    model with intervals (a distribution head's, or a calibration's: `intervals`) adds each
    output's interval at `level` percent (`yhat_lo`, `yhat_hi`) and its scores to the
    metrics; a calibration's are one step ahead, scaled by each series' scale before
    `warmup` (over the whole series without one)."""
    check_all(warmup=warmup, threads=threads, level=level)
    outputs.check([(output, TABLE_FORMATS, "table"), (metrics, None, "metrics")], inputs=[model, data])
    m = Forecaster(model)
    kind = m.interval_kind(intervals)
    table = m.read(data)
    m.use_threads(threads, len(table.lengths))
    season = m.season_of(season, table.lengths)
    got = teacher_forced(m, table, level if kind == "model" else None)
    if kind == "conformal":  # the scale of the steps before the scored ones (of all, without a warm-up)
        step = positions(table.lengths)
        scales = series_scales(table.truth, table.offsets, step < warmup if warmup >= 2 else step >= 0)
        radius = m.calibration.radius(level, 1, m.path)
        got.update(bounds(got["point"], radius, np.repeat(usable(scales, table.ids), table.lengths, axis=0)))
    yhat, truth = got["point"], table.truth if m.task == NEXT_STEP else table.y
    columns = {**dict(zip(m.yhat_names, yhat.T)), **interval_columns(m.yhat_names, got)}
    result = _with_columns(table, columns)
    step = positions(table.lengths)
    naive, seasonal = baselines(m, table, step, season)
    denominator = denominator_of(table, truth, np.ones(len(step), dtype=bool))
    scores = scores_of(yhat, truth, step >= warmup, naive, seasonal, denominator, season)
    if "lo" in got and truth is not None and scores["steps"]:
        scores.update(interval_scores(truth, got, level, known_rows(step >= warmup, naive, seasonal)))
    scores.update(warmup=warmup, mode="teacher-forced")
    scores.update({"intervals": kind} if "lo" in got else {})
    report("predict", scores, f"teacher-forced, warm-up {warmup}", metrics, quiet)
    write_if(result, output)
    return result, scores


def denominator_of(
    table: SeriesTable, truth: np.ndarray | None, history: np.ndarray, lengths: np.ndarray | None = None
) -> np.ndarray | None:
    """MASE's scale of each row [rows, F]: the mean one-step change of the truth over its
    own series' known history, for `lengths` rows of each series (its rows by default)."""
    if truth is None:
        return None
    own = series_scales(truth, table.offsets, history)
    return np.repeat(own, table.lengths if lengths is None else lengths, axis=0)


def scores_of(yhat, truth, scored, naive, seasonal, denominator, season) -> dict:
    scores = score(yhat, truth, scored, naive, seasonal, denominator)
    return {**scores, "season": season}


def write_if(table: SeriesTable, output) -> None:
    if output is not None:
        write_table(table, output)


def _with_columns(table: SeriesTable, new: dict[str, np.ndarray]) -> SeriesTable:
    columns = {n: c for n, c in table.columns.items() if n not in new and n != "phase"}
    columns.update(new)
    return SeriesTable(columns, table.x_names, table.y_names, table.lengths, table.source)


def one_step(m: Forecaster, table: SeriesTable) -> np.ndarray:
    """Teacher-forced forecasts [rows, G] on the original scale, in the rows of the truth
    they estimate (NaN where there is none: a next-step series' first 1 + order rows)."""
    return teacher_forced(m, table)["point"]


def teacher_forced(m: Forecaster, table: SeriesTable, level: float | None = None) -> dict[str, np.ndarray]:
    """The teacher-forced forecasts ("point") and, with `level` (a model with intervals), the
    bounds at `level` percent ("lo", "hi"), the scale ("scale", or "log_scale" of the log
    with --log-values) and a Student-t's "df": [rows, G] each, in the rows they forecast;
    quantiles stay quantiles through the undoing (a shift by the true past, exp, a series'
    level: from all its steps, as in training; with --scale window, each step's forecast
    reads the window before it only, `_windowed`)."""
    if reads_windows(m) and m.task == NEXT_STEP:
        return _windowed(m, table, level)
    return _teacher_forced(m, table, level, np.where(table.lengths > 1, table.lengths, 0))  # 1 step: no forecast


def _teacher_forced(m: Forecaster, table: SeriesTable, level: float | None, known: np.ndarray) -> dict:
    table, levels = m.scaling.levelled(table, known)
    z, lengths = m.view(table)
    out, _ = over_series(m.net, z, lengths)
    head, got = m.net.head, {}
    got["point"] = m.outputs(m.next_step(head.point(out)), "predictions")
    if level:
        q = tail(level)
        got["lo"], got["hi"] = (m.outputs(m.next_step(head.quantile(out, p)), "intervals") for p in (q, 1 - q))
        _, sd, *df = (m.next_step(p).double().numpy() for p in head.parts(out))  # a Student-t's df too
        got["log_scale" if m.scaling.diff.log else "scale"] = sd * m.scaling.y_std
        got.update({"df": df[0]} if df else {})
    got = {key: _aligned(m, table, lengths, v, shift=key in ("point", "lo", "hi")) for key, v in got.items()}
    return {key: times(v, levels, table.lengths) if key in SCALED else v for key, v in got.items()}


def _windowed(m: Forecaster, table: SeriesTable, level: float | None) -> dict[str, np.ndarray]:
    """`teacher_forced` of a --scale window model: the forecast of each step from the
    window before it, scaled by that window's level (none for a series' first 1 + order
    steps, nor before LEVEL_STEPS to take a level from)."""
    step = positions(table.lengths)
    forecast = np.flatnonzero(step >= max(m.scaling.diff.order + 1, LEVEL_STEPS))
    series = np.repeat(np.arange(len(table.lengths)), table.lengths)[forecast]
    first = first_read(m, step[forecast])
    own = pieces(table, series, first, step[forecast] + 1)
    got = _teacher_forced(m, own, level, own.lengths - 1)
    last = own.offsets[1:] - 1
    out = {}
    for key, v in got.items():
        out[key] = np.full((len(table.x), v.shape[1]), np.nan)
        out[key][forecast] = v[last]
    return out


def _aligned(
    m: Forecaster, table: SeriesTable, lengths: np.ndarray, values: np.ndarray, shift: bool = True
) -> np.ndarray:
    """Model outputs in the rows of the truth they estimate; with `shift`, differencing undone."""
    if m.task == MAPPING:
        return values
    order, starts = m.scaling.diff.order, table.offsets[:-1]
    d = np.full((len(table.x), values.shape[1]), np.nan)
    model_starts = np.cumsum(lengths) - lengths
    d[ranges(starts + order + 1, lengths - 1)] = values[ranges(model_starts, lengths - 1)]
    return m.scaling.diff.undo(d, table.x) if shift else d


def baselines(m: Forecaster, table: SeriesTable, origin: np.ndarray, season: int | None):
    """The naive and seasonal naive forecasts of every row of `table`, knowing each
    series' steps before `origin` (per row); None for a mapping model (its targets are
    not a series it reads)."""
    if m.task == MAPPING:
        return None, None
    start = np.repeat(table.offsets[:-1], table.lengths)
    return naive_forecasts(table.x, start, positions(table.lengths), origin, season)
