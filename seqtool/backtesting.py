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

from . import outputs
from .dataset import positions, ranges
from .errors import SeqtoolError
from .inference import Model, check_sampling, from_paths, interval_columns, next_step_model
from .limits import check_all, fits_in_memory
from .metrics import interval_scores, line, naive_forecasts, report, scale, score
from .tables import TABLE_FORMATS, SeriesTable, Table, numbered, write_table


def backtest(
    model: str | Path,
    data=None,
    *,
    horizon: int,
    start: float = 0.8,
    stride: int = 1,
    samples: int = 0,
    level: float = 80.0,
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
    yhat and their quantiles at `level` as yhat_lo, yhat_hi, scored as rollout's."""
    import torch

    check_all(backtest_horizon=horizon, stride=stride, threads=threads, samples=samples, level=level, seed=seed)
    outputs.check([(output, TABLE_FORMATS, "table"), (metrics, None, "metrics")], inputs=[model, data])
    m = next_step_model(model)
    check_sampling(m, samples, None)
    table = m.read(data)
    season = m.season_of(season, table.lengths)
    series, origin = origins(table, start, stride, horizon, m.scaling.diff.order + 1)
    m.use_threads(threads, len(origin))
    width = len(table.columns) + 3 * len(m.x_names) + 3
    fits_in_memory(float(len(origin)) * horizon * width * 8 * 3, f"a backtest of {len(origin):,} origins x {horizon} steps")
    torch.manual_seed(seed)  # the draws of the paths
    drawn = forecasts(m, table, series, origin, horizon, samples)
    yhat, bounds = from_paths(m, drawn, level) if samples else (drawn, {})
    result, scores = _table_and_scores(m, table, series, origin, yhat, season, {**bounds, "level": level})
    report("backtest", scores, f"{len(origin)} origins x {horizon} steps", metrics, quiet)
    if not quiet and scores["by_h"]:
        ends = [s for s in (scores["by_h"][0], scores["by_h"][-1]) if s["mae"] is not None]
        print("seqtool: backtest by h: " + "; ".join(f"h={s['h']}: {line(s)}" for s in dict((s["h"], s) for s in ends).values()), file=sys.stderr)
    if output is not None:
        write_table(result, output)
    return result, scores


def origins(table: SeriesTable, start: float, stride: int, horizon: int, first: int) -> tuple[np.ndarray, np.ndarray]:
    """(series index, origin step) of every origin: from `start` (a fraction in (0, 1) of
    each series' length, rounded up; or a whole step index >= 1), every `stride` steps,
    while the horizon stays inside the series; never before step `first` (the model needs
    that much history)."""
    if isinstance(start, bool) or not isinstance(start, (int, float)) or not math.isfinite(start):
        raise SeqtoolError(f"--start must be a number, got {start!r}")
    if 0 < start < 1:
        begin = np.ceil(start * table.lengths).astype(np.int64)
    elif start >= 1 and float(start).is_integer() and start <= 1e15:
        begin = np.full(len(table.lengths), int(start), dtype=np.int64)
    else:
        raise SeqtoolError(f"--start must be a fraction of each series in (0, 1) or a step index (a whole number >= 1), got {start:g}")
    begin = np.maximum(begin, first)
    last = table.lengths - horizon
    counts = np.where(last >= begin, (last - begin) // stride + 1, 0)
    if counts.sum() == 0:
        longest = int(table.lengths.max())
        raise SeqtoolError(
            f"--start {start:g} with --horizon {horizon} leaves no origin in the data: an origin needs "
            f"at least {first} steps of history and {horizon} steps after it (the longest series has {longest})"
        )
    series = np.repeat(np.arange(len(counts)), counts)
    return series, begin[series] + stride * positions(counts)


def forecasts(m: Model, table: SeriesTable, series: np.ndarray, origin: np.ndarray, horizon: int, paths: int = 0) -> np.ndarray:
    """Free-running forecasts [origins, horizon, F] on the original scale, all origins in one
    batch; with `paths` N, N sample paths from each origin (`inference._free_run`'s
    ancestral sampling), [N, origins, horizon, F]."""
    import torch

    from .models import Stepper, map_state

    z, lengths = m.view(table)
    order, width, n = m.scaling.diff.order, len(m.x_names), max(paths, 1)
    rows = origin - 1 - order
    step = Stepper(m.net)
    raw, states = _states_at(m, step, z, lengths, series, rows)
    each = torch.arange(len(origin)).repeat_interleave(n)  # an origin's paths side by side
    states = [map_state(lambda s: s[each], st) for st in states]
    first = m.net.head.sample(raw[each]) if paths else m.net.head.point(raw)
    outs, prev = [first], first
    at = torch.from_numpy((np.cumsum(lengths) - lengths)[series] + rows)[each]  # each origin's row of z
    with torch.no_grad():
        for h in range(1, horizon):
            fed = prev if z.shape[1] == width else torch.cat([prev, z[at + h, width:]], 1)  # the time features
            prev, states = step(fed, states, draw=paths > 0)
            outs.append(prev)
    d = m.outputs(torch.stack(outs, 1).reshape(-1, first.shape[1]), "forecasts").reshape(len(origin), n, horizon, -1).swapaxes(0, 1)
    starts = table.offsets[series]
    last = table.x[ranges(starts + origin - order, np.full_like(origin, order))].reshape(len(origin), order, len(m.x_names))
    drawn = m.scaling.diff.integrate(np.tile(last, (n, 1, 1)), d.reshape(n * len(origin), horizon, -1)).reshape(d.shape)
    return drawn if paths else drawn[0]


def _states_at(m: Model, step, z, lengths: np.ndarray, series: np.ndarray, rows: np.ndarray):
    """The head's outputs and per-layer state after row rows[p] of series series[p]
    (its rows of `z`, end to end), for every p, teacher-forced: the module up to each
    series' first such row, then one cell step per row through the last."""
    import torch

    from .models import map_state, parts

    used = np.unique(series)
    first = np.full(len(lengths), np.iinfo(np.int64).max)
    last = np.full(len(lengths), -1)
    np.minimum.at(first, series, rows)
    np.maximum.at(last, series, rows)
    model_starts = np.cumsum(lengths) - lengths
    states = _warm_states(m, z, model_starts[used], first[used], step)
    span = last[used] - first[used] + 1
    where = np.searchsorted(used, series)  # each origin's place in the batch of used series
    at = rows - first[series]  # ... and the step of the pass after which its state is taken
    out = torch.empty(len(rows), m.net.head.out_features)
    taken = [map_state(lambda s: s.new_empty((len(rows),) + s.shape[1:]), st) for st in states]
    order = np.argsort(at, kind="stable")
    bounds = np.searchsorted(at[order], np.arange(int(span.max()) + 1))
    with torch.no_grad():
        for j in range(int(span.max())):
            read = torch.from_numpy(model_starts[used] + first[used] + np.minimum(j, span - 1))
            prev, states = step(z[read], states, raw=True)
            picked = order[bounds[j] : bounds[j + 1]]
            if len(picked):
                p, b = torch.from_numpy(picked), torch.from_numpy(where[picked])
                out[p] = prev[b]
                for whole, part in zip(taken, states):
                    for w, s in zip(parts(whole), parts(part)):
                        w[p] = s[b]
    return out, taken


def _warm_states(m: Model, z, starts: np.ndarray, count: np.ndarray, step) -> list:
    """Per-layer states [series, hidden] after the first count[i] rows of each series,
    teacher-forced by the module (the model's start for a series with none)."""
    import torch

    from .models import parts

    cfg = m.net.config
    state = tuple(s.detach().clone() for s in parts(m.net.initial(len(starts))))
    some = np.flatnonzero(count > 0)
    if len(some):
        _, warm = m.teacher_forced(z[torch.from_numpy(ranges(starts[some], count[some]))], count[some], final_state=True)
        for whole, part in zip(state, parts(warm)):
            whole[:, torch.from_numpy(some)] = part
    return step.split(state if cfg.cell == "lstm" else state[0])


def _table_and_scores(m: Model, table: SeriesTable, series, origin, yhat, season, bounds: dict) -> tuple[Table, dict]:
    """The backtest table (DESIGN.md section 2) and its metrics: overall and for each h; an
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
    columns.update(zip(numbered("naive", n), naive.T))
    if seasonal is not None:
        columns.update(zip(numbered("seasonal_naive", n), seasonal.T))
    first = np.full(len(table.lengths), np.iinfo(np.int64).max)
    np.minimum.at(first, series, origin)
    history = positions(table.lengths) < np.repeat(first, table.lengths)
    denominator = scale(table.x, table.offsets, history)
    truth = table.x[rows]
    scores = {**score(yhat, truth, np.ones(len(h), bool), naive, seasonal, denominator), "season": season}
    if flat and scores["steps"]:
        paths = bounds.get("paths")
        drawn = {} if paths is None else {"paths": paths.reshape(len(paths), count * horizon, -1)}
        scores.update(interval_scores(truth, {"point": yhat, **flat, **drawn}, bounds["level"], np.ones(len(h), bool)))
    by_h = [{"h": k, **score(yhat, truth, h == k, naive, seasonal, denominator)} for k in range(1, horizon + 1)]
    scores.update(mode="backtest", horizon=horizon, origins=count, by_h=by_h)
    return Table(columns, table.source), scores
