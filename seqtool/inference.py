"""`predict` (teacher-forced) and `rollout` (free-running) with a trained checkpoint.

Both write the input table plus `yhat` (or `yhat0`, `yhat1`, ...) on the original scale,
aligned with the truth it estimates: for a next-step model, `yhat` in row t is the
forecast of x[t] made from x[0..t-1], so row 0 has none (nor the first `--diff` steps
that only feed the differencing). A step is scored when its row index within its series
is at least `warmup` and its truth is known; the naive forecasts are scored on the same
steps (see metrics.py).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from . import outputs
from .checkpoint import build_model, load_checkpoint
from .dataset import MAPPING, NEXT_STEP, positions, predicted, ranges
from .errors import RunFailed, SeqtoolError
from .limits import check_all, fits_in_memory
from .metrics import interval_scores, naive_forecasts, report, scale, score
from .scaling import Scaling, check_magnitude
from .tables import TABLE_FORMATS, SeriesTable, Table, as_table, dates_of, numbered, read_series, write_table
from .threads import use as use_threads
from .threads import work
from .timefeatures import TimeFeatures, extend


class Model:
    """A checkpoint ready to run: network, transform (differencing, standardisation),
    column names, season."""

    def __init__(self, path: str | Path):
        ckpt = load_checkpoint(path)
        self._setup(build_model(ckpt, name=str(path)), Scaling.from_dict(ckpt["norm"]), ckpt["data"], str(path))

    @classmethod
    def of(cls, net, scaling: Scaling, info: dict, name: str = "the model") -> Model:
        """A network in memory (training's own, at the end of a run) as a Model."""
        m = cls.__new__(cls)
        m._setup(net.eval(), scaling, info, name)
        return m

    def _setup(self, net, scaling: Scaling, info: dict, path: str) -> None:
        self.path, self.net, self.scaling = path, net, scaling
        self.x_names, self.y_names = list(info["x_names"]), list(info["y_names"])
        self.task, self.season = info["task"], info.get("season")
        self.time = TimeFeatures.from_dict(info.get("time"))
        self.yhat_names = numbered("yhat", len(predicted(self.task, self.x_names, self.y_names)))

    def use_threads(self, threads: int | None, batch: int) -> None:
        """torch's threads for running `batch` series side by side (threads.py)."""
        use_threads(threads, work(self.net.config, batch))

    def read(self, data) -> SeriesTable:
        """Read a table with this model's columns; a table without them is refused."""
        table = as_table(data)
        missing = [n for n in self.x_names if n not in table.columns]
        if missing:
            raise SeqtoolError(
                f"{table.source}: the model {self.path} needs input column(s) "
                f"{', '.join(self.x_names)}; missing {', '.join(missing)} "
                f"(columns: {', '.join(table.columns)})"
            )
        if self.time is not None and self.time.column not in table.columns:
            raise SeqtoolError(f"{table.source}: the model {self.path} reads time features from column {self.time.column!r}; the table has none")
        has_truth = self.task == MAPPING and all(n in table.columns for n in self.y_names)
        series = read_series(table, self.x_names, self.y_names if has_truth else [])
        for name in series.x_names + series.y_names:  # the truth the metrics square
            check_magnitude(series.columns[name], name, series.source)
        short = np.flatnonzero(series.lengths <= self.scaling.diff.order)
        if len(short):
            raise SeqtoolError(
                f"{series.source}: series {series.ids[short[0]]!r} has {series.lengths[short[0]]} steps; "
                f"the model differences at lags {self.scaling.diff} (--diff), "
                f"so a series needs more than {self.scaling.diff.order}"
            )
        return series

    def view(self, table: SeriesTable):
        """What the network reads: the inputs differenced and standardised, and the time
        features ([rows', n_in] float32, each series without its first `order` steps), and
        the series' lengths."""
        import torch

        x, order = table.x, self.scaling.diff.order
        if self.scaling.diff.active:
            step = positions(table.lengths)
            x = self.scaling.diff.difference(x, table.source)[step[order:] >= order]
        if self.time is not None:
            x = np.concatenate([x, self.known(table, table.lengths)], axis=1)
        z = self.scaling.inputs(x, self.x_names, table.source)
        return torch.from_numpy(z), table.lengths - order

    def known(self, table: SeriesTable, steps: np.ndarray) -> np.ndarray:
        """The time features the network reads at its first steps[i] - order rows of each
        series (past the end of the data where steps[i] is longer): of the step its output
        estimates."""
        order = self.scaling.diff.order
        return self.time.ahead(table, steps - order, order + 1 if self.task == NEXT_STEP else 0)

    def teacher_forced(self, x, lengths: np.ndarray, final_state: bool = False, raw: bool = False):
        """Point forecasts [rows, n_out] over series stored end to end (`over_series`),
        on the model's scale (with `raw`, the head's outputs), and with `final_state` the
        state after each series."""
        from .models import over_series

        out, state = over_series(self.net, x, lengths, final_state)
        return (out if raw else self.net.head.point(out)), state

    def outputs(self, out, what: str, expected: np.ndarray | None = None) -> np.ndarray:
        """Outputs on the table's scale (differenced, for a model with --diff); outputs that
        are not finite numbers (in the rows `expected` to hold one: all by default) are a
        failed run."""
        values = self.scaling.outputs(out.double().numpy())
        bad = ~np.isfinite(values) if expected is None else ~np.isfinite(values) & expected[:, None]
        if bad.any():
            raise RunFailed(
                f"{self.path}: the model's {what} are not finite at {int(bad.any(axis=1).sum())} of "
                f"{len(values)} steps (inputs far outside what it was trained on?)"
            )
        return values

    def one_step(self, table: SeriesTable) -> np.ndarray:
        """Teacher-forced forecasts [rows, G] on the original scale, in the rows of the truth
        they estimate (NaN where there is none: a next-step series' first 1 + order rows)."""
        return self.forecasts(table)["point"]

    def forecasts(self, table: SeriesTable, level: float | None = None) -> dict[str, np.ndarray]:
        """`one_step`'s forecasts ("point") and, with `level` (a model with intervals), the
        bounds at `level` percent ("lo", "hi"), the scale ("scale", or "log_scale" of the log
        with --log-values) and a Student-t's "df": [rows, G] each, in the rows they forecast;
        quantiles stay quantiles through the undoing (a shift by the true past, exp)."""
        from .models import over_series

        z, lengths = self.view(table)
        out, _ = over_series(self.net, z, lengths)
        head, got = self.net.head, {}
        got["point"] = self.outputs(head.point(out), "predictions")
        if level:
            tail = (1 - level / 100) / 2
            got["lo"], got["hi"] = (self.outputs(head.quantile(out, q), "intervals") for q in (tail, 1 - tail))
            _, scale, *df = (p.double().numpy() for p in head.parts(out))  # a Student-t's df too
            got["log_scale" if self.scaling.diff.log else "scale"] = scale * self.scaling.y_std
            got.update({"df": df[0]} if df else {})
        return {key: self._aligned(table, lengths, v, shift=key in ("point", "lo", "hi")) for key, v in got.items()}

    def _aligned(self, table: SeriesTable, lengths: np.ndarray, values: np.ndarray, shift: bool = True) -> np.ndarray:
        """Model outputs in the rows of the truth they estimate; with `shift`, differencing undone."""
        if self.task == MAPPING:
            return values
        order, starts = self.scaling.diff.order, table.offsets[:-1]
        d = np.full((len(table.x), values.shape[1]), np.nan)
        model_starts = np.cumsum(lengths) - lengths
        d[ranges(starts + order + 1, lengths - 1)] = values[ranges(model_starts, lengths - 1)]
        return self.scaling.diff.undo(d, table.x) if shift else d

    def baselines(self, table: SeriesTable, origin: np.ndarray, season: int | None):
        """The naive and seasonal naive forecasts of every row of `table`, knowing each
        series' steps before `origin` (per row); None for a mapping model (its targets are
        not a series it reads)."""
        if self.task == MAPPING:
            return None, None
        start = np.repeat(table.offsets[:-1], table.lengths)
        return naive_forecasts(table.x, start, positions(table.lengths), origin, season)

    def season_of(self, season: int | None, lengths: np.ndarray) -> int | None:
        """The season the naive forecasts use: the one asked for, else the model's (none for
        a table whose series are all too short for it)."""
        check_all(season=season)
        if season is None:
            return self.season if self.season is not None and self.season < int(lengths.max()) else None
        if season >= int(lengths.max()):
            raise SeqtoolError(
                f"season {season} is as long as the longest series ({int(lengths.max())} steps): "
                f"no seasonal naive forecast can be made; give a shorter --season"
            )
        return season


def predict(
    model: str | Path,
    data=None,
    *,
    warmup: int = 0,
    season: int | None = None,
    level: float = 80.0,
    metrics: str | Path | None = None,
    output: str | Path | None = None,
    quiet: bool = False,
    threads: int | None = None,
) -> tuple[SeriesTable, dict]:
    """`seqtool predict`: teacher-forced outputs for every step, state carried through each
    series; the table goes to `output` (a file, '-' for stdout, None: returned only). A
    model with intervals adds each output's interval at `level` percent (`yhat_lo`,
    `yhat_hi`) and its coverage, width and CRPS to the metrics."""
    check_all(warmup=warmup, threads=threads, level=level)
    outputs.check([(output, TABLE_FORMATS, "table"), (metrics, None, "metrics")], inputs=[model, data])
    m = Model(model)
    table = m.read(data)
    m.use_threads(threads, len(table.lengths))
    season = m.season_of(season, table.lengths)
    got = m.forecasts(table, level if hasattr(m.net.head, "quantile") else None)  # a distribution: intervals
    yhat, truth = got["point"], table.x if m.task == NEXT_STEP else table.y
    columns = {**dict(zip(m.yhat_names, yhat.T)), **interval_columns(m.yhat_names, got)}
    result = _with_columns(table, columns)
    step = positions(table.lengths)
    naive, seasonal = m.baselines(table, step, season)
    denominator = _denominator(table, truth, np.ones(len(step), dtype=bool))
    scores = _scores(yhat, truth, step >= warmup, naive, seasonal, denominator, season)
    if "lo" in got and truth is not None and scores["steps"]:
        scores.update(interval_scores(truth, got, level, step >= warmup))
    scores.update(warmup=warmup, mode="teacher-forced")
    report("predict", scores, f"teacher-forced, warm-up {warmup}", metrics, quiet)
    _write(result, output)
    return result, scores


def rollout(
    model: str | Path,
    data=None,
    *,
    warmup: int | None = None,
    steps: int | None = None,
    horizon: int = 0,
    samples: int = 0,
    level: float = 80.0,
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
    steps past the end. All series run together as one batch. With `samples` N (a model of
    a distribution), N paths per series, each fed its own draws (from `seed`), all in that
    batch: `yhat` is their mean (`from_paths`), `yhat_lo`/`yhat_hi` their quantiles at
    `level`; `paths` writes them."""
    import torch

    check_all(rollout_warmup=warmup, free_steps=steps, horizon=horizon, threads=threads, samples=samples, level=level, seed=seed)
    if steps is not None and horizon:
        raise SeqtoolError("give --steps or --horizon, not both")
    outputs.check([(output, TABLE_FORMATS, "table"), (metrics, None, "metrics"), (paths, TABLE_FORMATS, "table")], inputs=[model, data])
    m = next_step_model(model)
    check_sampling(m, samples, paths)
    table = m.read(data)
    m.use_threads(threads, len(table.lengths) * max(samples, 1))
    season = m.season_of(season, table.lengths)
    k = _warmups(m, table, warmup, horizon)
    free = np.full(len(k), steps) if steps is not None else table.lengths - k + horizon
    total = k + free
    width = len(table.columns) + (len(m.yhat_names) + 1) * (3 + max(samples, 1))
    fits_in_memory(float(total.sum()) * width * 8 * 3, f"a rollout of {int(total.sum()):,} rows")

    torch.manual_seed(seed)  # the draws of the paths
    drawn = _roll(m, table, k, free, samples)
    yhat, bounds = from_paths(m, drawn, level) if samples else (drawn, {})
    result = _extend(table, total, {**dict(zip(m.yhat_names, yhat.T)), **interval_columns(m.yhat_names, bounds)})
    step, first_free = positions(total), np.repeat(k, total)
    result.columns["phase"] = np.where(step < first_free, "warmup", "free")
    start = np.repeat(table.offsets[:-1], total)
    naive, seasonal = naive_forecasts(table.x, start, step, np.minimum(step, first_free), season)
    denominator = _denominator(table, table.x, positions(table.lengths) < np.repeat(k, table.lengths))
    scores = _scores(yhat, result.x, step >= first_free, naive, seasonal, denominator, season)
    if samples and scores["steps"]:
        scores.update(interval_scores(result.x, {"point": yhat, **bounds}, level, step >= first_free))
    scores.update(warmup=int(k.min()) if len(set(k.tolist())) == 1 else "varies", mode="free-running")
    report("rollout", scores, f"free-running, warm-up {scores['warmup']}", metrics, quiet)
    _write(result, output)
    if paths is not None:
        _write(_paths_table(result, drawn, m.yhat_names), paths)
    return result, scores


def from_paths(m: Model, drawn: np.ndarray, level: float) -> tuple[np.ndarray, dict]:
    """Sample paths [N, ...] as a forecast: their mean (their median for a model with
    --log-values, as its one-step yhat), their quantiles at `level` ("lo", "hi"), and the
    paths for the sample CRPS ("paths"; not of a logged Student-t: its CRPS is infinite)."""
    from .models import StudentTHead

    tail = (1 - level / 100) / 2
    point = np.median(drawn, axis=0) if m.scaling.diff.log else drawn.mean(axis=0)
    bounds = {"lo": np.quantile(drawn, tail, axis=0), "hi": np.quantile(drawn, 1 - tail, axis=0)}
    return point, bounds if m.scaling.diff.log and isinstance(m.net.head, StudentTHead) else {**bounds, "paths": drawn}


def check_sampling(m: Model, samples: int, paths) -> None:
    if paths is not None and not samples:
        raise SeqtoolError("--paths writes sample paths: give --samples N (N >= 1) too")
    if samples and not hasattr(m.net.head, "sample"):
        raise SeqtoolError(f"{m.path} forecasts points (trained with --loss mse): sample paths need a model of a distribution (train --loss gaussian or studentt)")


def interval_columns(names: list[str], bounds: dict) -> dict[str, np.ndarray]:
    """The columns of an interval's bounds ("lo", "hi" in `bounds`, [rows, G]): yhat_lo, ..."""
    columns = {}
    for key in ("lo", "hi"):
        if key in bounds:
            columns.update({f"{name}_{key}": bounds[key][:, j] for j, name in enumerate(names)})
    return columns


def _paths_table(result: SeriesTable, drawn: np.ndarray, names: list[str]) -> Table:
    """The sample paths in long form: `series` (where the table has one), `path`, `t`
    (where it has one), `phase` and the outputs, path after path."""
    n, rows = drawn.shape[:2]
    columns = {key: np.tile(result.columns[key], n) for key in ("series", "t") if key in result.columns}
    columns["path"] = np.repeat(np.arange(n), rows)
    columns["phase"] = np.tile(result.columns["phase"], n)
    columns.update({name: drawn[:, :, j].reshape(-1) for j, name in enumerate(names)})
    order = ["series", "path", "t", "phase", *names]
    return Table({key: columns[key] for key in order if key in columns}, result.source)


def next_step_model(path: str | Path) -> Model:
    """A model whose outputs can be fed back as its inputs; a mapping model is refused."""
    m = Model(path)
    if m.task != NEXT_STEP:
        raise SeqtoolError(
            f"{m.path} maps inputs to targets ({', '.join(m.y_names)}), so its outputs cannot be "
            f"fed back as inputs; free running needs a next-step model (trained without a target "
            f"column): use seqtool predict"
        )
    return m


def _warmups(m: Model, table: SeriesTable, warmup: int | None, horizon: int) -> np.ndarray:
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
        raise SeqtoolError(
            f"series {table.ids[short[0]]!r} has {lengths[short[0]]} steps, fewer than "
            f"--warmup {warmup}"
        )
    return np.full(len(lengths), warmup)


def _roll(m: Model, table: SeriesTable, k: np.ndarray, free: np.ndarray, paths: int = 0) -> np.ndarray:
    """Forecasts for the first k + free rows of each series, end to end ([rows, F] on the
    original scale; row r of a series holds the forecast of row r, the first 1 + order
    rows none): the network's (`_free_run`), with the differencing undone, from the true
    values during the warm-up and from its own forecasts after. With `paths` N: [N, rows, F],
    each path integrated from its own draws."""
    import torch

    z, lengths = m.view(table)
    known = None if m.time is None else torch.from_numpy(m.known(table, k + free).astype(np.float32))
    forecast, expected = _free_run(m, z, lengths, k - m.scaling.diff.order, free, known, paths)
    d = m.outputs(forecast, "forecasts", expected)
    return _undone(m, table, k, free, d) if paths else _undone(m, table, k, free, d[None])[0]


def _undone(m: Model, table: SeriesTable, k: np.ndarray, free: np.ndarray, d: np.ndarray) -> np.ndarray:
    """N runs' forecasts [N, rows', F] of the transformed series as forecasts of the series
    [N, rows, F]: the warm-up's, teacher-forced and so the same in every run, undone once
    with the true past; the free steps of all runs integrated in one batch."""
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
    whole = diff.integrate(np.tile(last, (n, 1, 1)), steps.reshape(n * len(k), -1, width)).reshape(steps.shape)
    out[:, ranges(out_starts + k, free)] = whole[:, running]
    return out


def _free_run(m: Model, z, lengths: np.ndarray, k: np.ndarray, free: np.ndarray, known=None, paths: int = 0):
    """The network's forecasts for the first k + free of its rows `z` of each series (series
    i: lengths[i] rows end to end), on its scale, and which rows hold one (all but the first).
    `known`: the time features of those k + free rows of each series, end to end, fed beside
    each free step's own forecast.

    Warm-up: each series' first k rows, teacher-forced, which also gives
    the state after its k-th observed step and its first free forecast. Free running: all
    series in one batch, one step per iteration, each fed its own last forecast; the series
    with the most free steps first, so the batch shrinks to the rows still running and the
    work follows the rows. The loop runs on the model's scale (a next-step model's inputs
    and outputs share one) with torch's cell functions. With `paths` N > 0 (a distribution
    head), N sample paths of each series run side by side in the batch, each from the
    series' warm state, fed its own draws (ancestral sampling): forecasts [N, rows, F].
    """
    import torch

    from .models import Stepper, map_state

    total, n = k + free, max(paths, 1)
    starts = np.cumsum(total) - total  # of each series in the output
    model_starts = np.cumsum(lengths) - lengths
    raw, state = m.teacher_forced(z[torch.from_numpy(ranges(model_starts, k))], k, final_state=True, raw=True)
    warm, head = m.net.head.point(raw), m.net.head
    forecast = torch.full((n, int(total.sum()), len(m.x_names)), float("nan"))
    keep = positions(k) < np.repeat(total - 1, k)  # the k-th output: only if a free row follows
    forecast[:, torch.from_numpy(ranges(starts + 1, k)[keep])] = warm[torch.from_numpy(keep)]

    order = np.argsort(-free, kind="stable")  # the batch is always a prefix of this order
    running = np.searchsorted(-free[order], -np.arange(int(free.max(initial=0))), side="left")[1:]
    index = torch.from_numpy(np.repeat(order, n))  # a series' paths side by side
    last = raw[torch.from_numpy(np.cumsum(k) - 1)][index]
    prev = head.sample(last) if paths else head.point(last)  # each series' (path's) first free forecast
    first = torch.from_numpy((starts + k)[order][free[order] > 0])
    forecast[:, first] = prev.view(-1, n, prev.shape[-1])[: len(first)].transpose(0, 1)
    step = Stepper(m.net)
    states = step.split(map_state(lambda s: s[:, index], state))
    outs = []
    with torch.no_grad():
        for j, a in enumerate(running.tolist(), 1):  # a: the series with more than j free steps
            if a * n < len(prev):
                states = [map_state(lambda s: s[: a * n], st) for st in states]
                prev = prev[: a * n]
            fed = prev if known is None else torch.cat([prev, known[torch.from_numpy(np.repeat((starts + k - 1 + j)[order[:a]], n))]], 1)
            prev, states = step(fed, states, draw=paths > 0)
            outs.append(prev)
    if outs:
        j = np.repeat(np.arange(1, len(running) + 1), running)
        rows = (starts + k)[order][positions(running)] + j
        forecast[:, torch.from_numpy(rows)] = torch.cat(outs).view(-1, n, forecast.shape[-1]).transpose(0, 1)
    expected = np.ones(forecast.shape[1], dtype=bool)
    expected[starts] = False
    return (forecast if paths else forecast[0]), expected


def _denominator(table: SeriesTable, truth: np.ndarray | None, history: np.ndarray) -> np.ndarray | None:
    """MASE's scale: the mean one-step change of the truth over each series' known history."""
    return None if truth is None else scale(truth, table.offsets, history)


def _scores(yhat, truth, scored, naive, seasonal, denominator, season) -> dict:
    scores = score(yhat, truth, scored, naive, seasonal, denominator)
    return {**scores, "season": season}


def _write(table: SeriesTable, output) -> None:
    if output is not None:
        write_table(table, output)


def _with_columns(table: SeriesTable, new: dict[str, np.ndarray]) -> SeriesTable:
    columns = {n: c for n, c in table.columns.items() if n not in new and n != "phase"}
    columns.update(new)
    return SeriesTable(columns, table.x_names, table.y_names, table.lengths, table.source)


def _extend(table: SeriesTable, total: np.ndarray, new: dict[str, np.ndarray]) -> SeriesTable:
    """The table cut or lengthened to `total` rows per series, plus the `new` columns.

    Past the end: the series id repeats, `t` (and a column of ISO dates) goes on with its
    last spacing, inputs are empty (no truth), other columns are empty.
    """
    columns = {}
    for name, col in table.columns.items():
        if name in new or name == "phase":
            continue
        parts = []
        for i, part in enumerate(table.split(col)):
            parts.append(_lengthen(part, int(total[i]), name))
        columns[name] = np.concatenate(parts)
    columns.update(new)
    return SeriesTable(columns, table.x_names, table.y_names, total.astype(np.int64), table.source)


def _lengthen(part: np.ndarray, n: int, name: str) -> np.ndarray:
    if n <= len(part):
        return part[:n]
    extra = n - len(part)
    if name == "series":
        return np.concatenate([part, np.repeat(part[:1], extra)])
    if part.dtype.kind == "f":
        return extend(part, n) if name == "t" and len(part) >= 2 else np.concatenate([part, np.full(extra, np.nan)])
    dates = dates_of(part)
    if dates is not None and len(dates) >= 2:
        return np.concatenate([part.astype(str), extend(dates, n)[len(part) :].astype(str)])
    return np.concatenate([part.astype(str), np.full(extra, "")])
