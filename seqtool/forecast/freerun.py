"""The free-running engine: a model fed its own forecasts, for rollout (`roll`: from the
end of each series' warm-up) and backtest (`from_origins`: from many origins at once),
point forecasts or sample paths alike. One loop feeds the network (`free_steps`), one
function undoes the series' transform of free forecasts (`integrated`)."""

from __future__ import annotations

import numpy as np
import torch

from seqtool.data.scaling import Differencing, times
from seqtool.data.tables import SeriesTable, positions, ranges
from seqtool.forecast.forecaster import Forecaster
from seqtool.forecast.windows import first_read, pieces, reads_windows, unread
from seqtool.model.network import Stepper, map_state, parts


def free_steps(step: Stepper, prev, states: list, more: np.ndarray, known=None, at=None, draw: bool = False) -> list:
    """Feed each row of the batch its own last forecast `prev`, more[i] further steps for
    row i (`more` non-increasing, so the batch shrinks to a prefix and the work follows the
    rows still running). `known` [rows, K]: inputs known in advance, its row at[i] + j fed
    beside row i's forecast at its j-th step. With `draw`, each step draws from the head's
    distribution (a sample path). The outputs of every step, [rows running, F] each."""
    running = np.searchsorted(-more, -np.arange(1, int(more.max(initial=0)) + 1), side="right")
    outs = []
    with torch.no_grad():
        for j, a in enumerate(running.tolist(), 1):
            if a < len(prev):
                states = [map_state(lambda s: s[:a], st) for st in states]  # noqa: B023 (called at once)
                prev = prev[:a]
            fed = prev if known is None else torch.cat([prev, known[at[:a] + j]], 1)
            prev, states = step(fed, states, draw=draw)
            outs.append(prev)
    return outs


def integrated(diff: Differencing, last: np.ndarray, d: np.ndarray) -> np.ndarray:
    """N runs' free forecasts [N, B, H, F] of the transformed series as forecasts of the
    series: each of the B integrated from its last true values `last` [B, order, F]."""
    n = len(d)
    flat = d.reshape(n * len(last), d.shape[2], -1)
    return diff.integrate(np.tile(last, (n, 1, 1)), flat).reshape(d.shape)


def roll(m: Forecaster, table: SeriesTable, k: np.ndarray, free: np.ndarray, paths: int = 0) -> np.ndarray:
    """Forecasts for the first k + free rows of each series, end to end ([rows, F] on the
    original scale; row r of a series holds the forecast of row r, the first 1 + order
    rows none): the network's (`_free_run`), with the differencing undone, from the true
    values during the warm-up and from its own forecasts after. With `paths` N: [N, rows, F],
    each path integrated from its own draws. With --scale series, each series' level comes
    from its warm-up; with --scale window, the network reads its warm-up's last window only."""
    if reads_windows(m):  # the warm-up's own forecasts are not what it was trained for: none
        every = np.arange(len(k))
        first = first_read(m, k)
        out = _roll(m, pieces(table, every, first, np.minimum(table.lengths, k)), k - first, free, paths)
        out[..., ranges(np.cumsum(k - first + free) - (k - first + free), k - first), :] = np.nan
        return unread(out, first, k - first + free)
    return _roll(m, table, k, free, paths)


def _roll(m: Forecaster, table: SeriesTable, k: np.ndarray, free: np.ndarray, paths: int = 0) -> np.ndarray:
    table, level = m.scaling.levelled(table, k)
    z, lengths = m.view(table)
    known = m.fed_known(torch.from_numpy(m.known(table, k + free).astype(np.float32))) if m.reads_known else None
    forecast, expected = _free_run(m, z, lengths, k - m.scaling.diff.order, free, known, paths)
    d = m.outputs(forecast, "forecasts", expected)
    out = _undone(m, table, k, free, d) if paths else _undone(m, table, k, free, d[None])[0]
    return times(out, level, k + free)


def _undone(m: Forecaster, table: SeriesTable, k: np.ndarray, free: np.ndarray, d: np.ndarray) -> np.ndarray:
    """N runs' forecasts [N, rows', F] of the transformed series as forecasts of the series
    [N, rows, F]: the warm-up's, teacher-forced and so the same in every run, undone once
    with the true past; the free steps of all runs integrated in one batch (`integrated`)."""
    diff, n, width = m.scaling.diff, len(d), d.shape[2]
    if not diff.active:
        return d
    order, total = diff.order, k + free
    out = np.full((n, int(total.sum()), width), np.nan)
    out_starts = np.cumsum(total) - total
    out[:, ranges(out_starts + order, total - order)] = d
    warm = ranges(out_starts, k)
    out[:, warm] = diff.undo(out[0, warm], table.x[ranges(table.offsets[:-1], k)])
    last = table.x[ranges(table.offsets[:-1] + k - order, np.full_like(k, order))].reshape(len(k), order, width)
    running = np.arange(int(free.max(initial=0)))[None, :] < free[:, None]
    steps = np.zeros((n,) + running.shape + (width,))
    steps[:, running] = out[:, ranges(out_starts + k, free)]
    out[:, ranges(out_starts + k, free)] = integrated(diff, last, steps)[:, running]
    return out


def _free_run(m: Forecaster, z, lengths: np.ndarray, k: np.ndarray, free: np.ndarray, known=None, paths: int = 0):
    """The network's forecasts for the first k + free of its rows `z` of each series (series
    i: lengths[i] rows end to end), on its scale, and which rows hold one (all but the first).
    `known`: the time features of those k + free rows of each series, end to end.

    Warm-up: each series' first k rows, teacher-forced, which also gives the state after
    its k-th observed step and its first free forecast. Free running (`free_steps`): all
    series in one batch, the series with the most free steps first. With `paths` N > 0 (a
    distribution head), N sample paths of each series run side by side in the batch, each
    from the series' warm state, fed its own draws (ancestral sampling): [N, rows, F].
    """
    total, n = k + free, max(paths, 1)
    starts = np.cumsum(total) - total  # of each series in the output
    model_starts = np.cumsum(lengths) - lengths
    raw, state = m.teacher_forced(z[torch.from_numpy(ranges(model_starts, k))], k, final_state=True, raw=True)
    warm = m.next_step(m.net.head.point(raw))
    forecast = torch.full((n, int(total.sum()), len(m.x_names)), float("nan"))
    keep = positions(k) < np.repeat(total - 1, k)  # the k-th output: only if a free row follows
    forecast[:, torch.from_numpy(ranges(starts + 1, k)[keep])] = warm[torch.from_numpy(keep)]

    order = np.argsort(-free, kind="stable")  # the batch is always a prefix of this order
    index = torch.from_numpy(np.repeat(order, n))  # a series' paths side by side
    last = raw[torch.from_numpy(np.cumsum(k) - 1)][index]
    step = Stepper(m.net)
    prev, step, states = _started(m, step, last, step.split(map_state(lambda s: s[:, index], state)), paths > 0)
    first = torch.from_numpy((starts + k)[order][free[order] > 0])
    forecast[:, first] = prev.view(-1, n, prev.shape[-1])[: len(first)].transpose(0, 1)
    at = torch.from_numpy(np.repeat((starts + k - 1)[order], n))  # each row's last warm row of `known`
    outs = free_steps(step, prev, states, np.repeat(free[order] - 1, n), known, at, draw=paths > 0)
    if outs:
        running = np.array([len(o) // n for o in outs])
        j = np.repeat(np.arange(1, len(running) + 1), running)
        rows = (starts + k)[order][positions(running)] + j
        forecast[:, torch.from_numpy(rows)] = torch.cat(outs).view(-1, n, forecast.shape[-1]).transpose(0, 1)
    expected = np.ones(forecast.shape[1], dtype=bool)
    expected[starts] = False
    return (forecast if paths else forecast[0]), expected


def from_origins(
    m: Forecaster, table: SeriesTable, series: np.ndarray, origin: np.ndarray, horizon: int, paths: int = 0
) -> np.ndarray:
    """Free-running forecasts [origins, horizon, F] on the original scale, all origins in one
    batch; with `paths` N, N sample paths from each origin (ancestral sampling, as `roll`),
    [N, origins, horizon, F]. With --scale series, each series' level comes from the steps
    before its first origin (none for a series without one); with --scale window, each
    origin's network reads the last window before it only."""
    if reads_windows(m):
        first = first_read(m, origin)
        own = pieces(table, series, first, origin + horizon)
        return _from_origins(m, own, np.arange(len(origin)), origin - first, horizon, paths)
    return _from_origins(m, table, series, origin, horizon, paths)


def _from_origins(
    m: Forecaster, table: SeriesTable, series: np.ndarray, origin: np.ndarray, horizon: int, paths: int = 0
) -> np.ndarray:
    first = np.full(len(table.lengths), np.iinfo(np.int64).max)
    np.minimum.at(first, series, origin)
    table, level = m.scaling.levelled(table, np.where(first <= table.lengths, first, 0))
    z, lengths = m.view(table)
    order, width, n = m.scaling.diff.order, len(m.x_names), max(paths, 1)
    rows = origin - 1 - order
    step = Stepper(m.net)
    raw, states = _states_at(m, step, z, lengths, series, rows)
    each = torch.arange(len(origin)).repeat_interleave(n)  # an origin's paths side by side
    first, step, states = _started(m, step, raw[each], [map_state(lambda s: s[each], st) for st in states], paths > 0)
    at = torch.from_numpy((np.cumsum(lengths) - lengths)[series] + rows)[each]  # each origin's row of z
    known = m.fed_known(z[:, width:]) if z.shape[1] > width else None  # time features, covariates, gaps
    outs = free_steps(step, first, states, np.full(len(first), horizon - 1), known, at, draw=paths > 0)
    d = (
        m.outputs(torch.stack([first, *outs], 1).reshape(-1, first.shape[1]), "forecasts")
        .reshape(len(origin), n, horizon, -1)
        .swapaxes(0, 1)
    )
    starts = table.offsets[series]
    last = table.x[ranges(starts + origin - order, np.full_like(origin, order))].reshape(len(origin), order, width)
    drawn = integrated(m.scaling.diff, last, d)
    if level is not None:
        drawn = drawn * level[series][:, None, :]
    return drawn if paths else drawn[0]


def _started(m: Forecaster, step: Stepper, raw, states: list, draw: bool):
    """The first free forecast of each row from the head's outputs `raw` after its last
    known step (a draw with `draw`), and the stepper and states to go on with: for a
    horizon model, its H-step forecast (`Blocks`)."""
    first = m.net.head.sample(raw) if draw else m.net.head.point(raw)
    if m.horizon == 1:
        return first, step, states
    return m.next_step(first), Blocks(step, len(m.x_names), m.horizon), [*states, first]


class Blocks:
    """A horizon model fed its own forecasts: the forecasts of steps j = 0..H-1 after an
    origin are its H-step forecast from there (the block, kept as the last of the states,
    so that it shrinks with the batch); the network reads each of them, and after H of
    them its output is the next block. Called as a `Stepper`."""

    def __init__(self, step: Stepper, width: int, horizon: int):
        self.step, self.width, self.horizon, self.fed = step, width, horizon, 0

    def __call__(self, x, states: list, draw: bool = False):
        *layers, block = states
        out, layers = self.step(x, layers, draw=draw)
        self.fed += 1
        j = self.fed % self.horizon
        if j == 0:
            block = out
        return block[:, j * self.width : (j + 1) * self.width], [*layers, block]


def _states_at(m: Forecaster, step, z, lengths: np.ndarray, series: np.ndarray, rows: np.ndarray):
    """The head's outputs and per-layer state after row rows[p] of series series[p]
    (its rows of `z`, end to end), for every p, teacher-forced: the module up to each
    series' first such row, then one cell step per row through the last."""
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


def _warm_states(m: Forecaster, z, starts: np.ndarray, count: np.ndarray, step) -> list:
    """Per-layer states [series, hidden] after the first count[i] rows of each series,
    teacher-forced by the module (the model's start for a series with none)."""
    cfg = m.net.config
    state = tuple(s.detach().clone() for s in parts(m.net.initial(len(starts))))
    some = np.flatnonzero(count > 0)
    if len(some):
        _, warm = m.teacher_forced(
            z[torch.from_numpy(ranges(starts[some], count[some]))], count[some], final_state=True
        )
        for whole, part in zip(state, parts(warm)):
            whole[:, torch.from_numpy(some)] = part
    return step.split(state if cfg.cell == "lstm" else state[0])
