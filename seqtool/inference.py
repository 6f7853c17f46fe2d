"""`predict` (teacher-forced) and `rollout` (free-running) with a trained checkpoint.

Both write the input table plus `yhat` (or `yhat0`, `yhat1`, ...) on the original scale,
aligned with the truth it estimates: for a next-step model, `yhat` in row t is the
forecast of x[t] made from x[0..t-1], so row 0 has none. A step is scored when its row
index within its series is at least `warmup` and its truth is known.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np

from . import outputs
from .checkpoint import build_model, load_checkpoint
from .dataset import MAPPING, NEXT_STEP, predicted
from .errors import RunFailed, SeqtoolError
from .limits import check, check_all, fits_in_memory
from .scaling import Scaling, check_magnitude
from .tables import TABLE_FORMATS, SeriesTable, as_table, numbered, read_series, write_table


class Model:
    """A checkpoint ready to run: network, standardisation, column names."""

    def __init__(self, path: str | Path):
        self.path = str(path)
        ckpt = load_checkpoint(path)
        self.net = build_model(ckpt, name=self.path)
        self.scaling = Scaling.from_dict(ckpt["norm"])
        self.x_names = list(ckpt["data"]["x_names"])
        self.y_names = list(ckpt["data"]["y_names"])
        self.task = ckpt["data"]["task"]
        self.yhat_names = numbered("yhat", len(predicted(self.task, self.x_names, self.y_names)))

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
        has_truth = self.task == MAPPING and all(n in table.columns for n in self.y_names)
        series = read_series(table, self.x_names, self.y_names if has_truth else [])
        for name in series.x_names + series.y_names:  # the truth the metrics square
            check_magnitude(series.columns[name], name, series.source)
        return series

    def inputs(self, table: SeriesTable):
        """The table's inputs on the model's scale, [rows, F] float32."""
        import torch

        return torch.from_numpy(self.scaling.inputs(table.x, self.x_names, table.source))

    def teacher_forced(self, x, lengths: np.ndarray, final_state: bool = False):
        """Point forecasts [rows, n_out] over series stored end to end (`over_series`),
        on the model's scale, and with `final_state` the state after each series."""
        from .models import over_series

        out, state = over_series(self.net, x, lengths, final_state)
        return self.net.head.point(out), state

    def outputs(self, out, what: str, expected: np.ndarray | None = None) -> np.ndarray:
        """Outputs on the table's scale; outputs that are not finite numbers (in the rows
        `expected` to hold one: all by default) are a failed run."""
        values = self.scaling.outputs(out.double().numpy())
        bad = ~np.isfinite(values) if expected is None else ~np.isfinite(values) & expected[:, None]
        if bad.any():
            raise RunFailed(
                f"{self.path}: the model's {what} are not finite at {int(bad.any(axis=1).sum())} of "
                f"{len(values)} steps (inputs far outside what it was trained on?)"
            )
        return values


def predict(
    model: str | Path,
    data=None,
    *,
    warmup: int = 0,
    metrics: str | Path | None = None,
    output: str | Path | None = None,
    quiet: bool = False,
) -> tuple[SeriesTable, dict]:
    """`seqtool predict`: teacher-forced outputs for every step, state carried through each
    series; the table goes to `output` (a file, '-' for stdout, None: returned only)."""
    check("warmup", warmup)
    outputs.check([(output, TABLE_FORMATS, "table"), (metrics, None, "metrics")], inputs=[model, data])
    m = Model(model)
    table = m.read(data)
    out, _ = m.teacher_forced(m.inputs(table), table.lengths)
    values = m.outputs(out, "predictions")
    starts = table.offsets[:-1]
    if m.task == NEXT_STEP:  # the output at step t forecasts x[t+1]: move it to row t+1
        yhat = np.roll(values, 1, axis=0)
        yhat[starts] = np.nan
        truth = table.x
    else:
        yhat, truth = values, table.y
    result = _with_columns(table, dict(zip(m.yhat_names, yhat.T)))
    step_in_series = _ranges(np.zeros_like(table.lengths), table.lengths)
    scores = _score(yhat, truth, step_in_series >= warmup)
    scores.update(warmup=warmup, mode="teacher-forced")
    _report("predict", scores, metrics, quiet)
    _write(result, output)
    return result, scores


def rollout(
    model: str | Path,
    data=None,
    *,
    warmup: int | None = None,
    steps: int | None = None,
    horizon: int = 0,
    metrics: str | Path | None = None,
    output: str | Path | None = None,
    quiet: bool = False,
) -> tuple[SeriesTable, dict]:
    """`seqtool rollout`: warm up on the first `warmup` true steps of each series, then feed
    the model its own predictions: to the end of the series, for `steps` steps, or `horizon`
    steps past the end. All series run together as one batch."""
    check_all(rollout_warmup=warmup, free_steps=steps, horizon=horizon)
    if steps is not None and horizon:
        raise SeqtoolError("give --steps or --horizon, not both")
    outputs.check([(output, TABLE_FORMATS, "table"), (metrics, None, "metrics")], inputs=[model, data])
    m = Model(model)
    if m.task != NEXT_STEP:
        raise SeqtoolError(
            f"{m.path} maps inputs to targets ({', '.join(m.y_names)}), so its outputs cannot be "
            f"fed back as inputs; rollout needs a next-step model (trained without a target "
            f"column): use seqtool predict"
        )
    table = m.read(data)
    lengths = table.lengths
    if warmup is None:
        k = lengths if horizon else np.minimum(lengths, 10)
    else:
        short = np.flatnonzero(lengths < warmup)
        if len(short):
            raise SeqtoolError(
                f"series {table.ids[short[0]]!r} has {lengths[short[0]]} steps, fewer than "
                f"--warmup {warmup}"
            )
        k = np.full(len(lengths), warmup)
    free = np.full(len(lengths), steps) if steps is not None else lengths - k + horizon
    total = k + free
    width = len(table.columns) + len(m.yhat_names) + 2
    fits_in_memory(float(total.sum()) * width * 8 * 3, f"a rollout of {int(total.sum()):,} rows")

    yhat = _roll(m, table, k, free)
    result = _extend(table, total, dict(zip(m.yhat_names, yhat.T)))
    step_in_series = _ranges(np.zeros_like(total), total)
    result.columns["phase"] = np.where(step_in_series < np.repeat(k, total), "warmup", "free")
    scores = _score(yhat, result.x, step_in_series >= np.repeat(k, total))
    scores.update(warmup=int(k.min()) if len(set(k.tolist())) == 1 else "varies", mode="free-running")
    _report("rollout", scores, metrics, quiet)
    _write(result, output)
    return result, scores


def _roll(m: Model, table: SeriesTable, k: np.ndarray, free: np.ndarray) -> np.ndarray:
    """Forecasts for the first k + free rows of each series, end to end ([rows, F]; row r
    of a series holds the forecast of row r, row 0 none).

    Warm-up: each series' first k rows, teacher-forced, which also gives
    the state after its k-th observed step and its first free forecast. Free running: all
    series in one batch, one step per iteration, each fed its own last forecast; the series
    with the most free steps first, so the batch shrinks to the rows still running and the
    work follows the rows. The loop runs on the model's scale (a next-step model's inputs
    and outputs share one) with torch's cell functions.
    """
    import torch

    from .models import Stepper, map_state

    total = k + free
    starts = np.cumsum(total) - total  # of each series in the output
    z = m.inputs(table)[torch.from_numpy(_ranges(table.offsets[:-1], k))]
    warm, state = m.teacher_forced(z, k, final_state=True)
    forecast = torch.full((int(total.sum()), len(m.x_names)), float("nan"))
    keep = _ranges(np.zeros_like(k), k) < np.repeat(total - 1, k)  # the k-th output: only if a free row follows
    forecast[torch.from_numpy(_ranges(starts + 1, k)[keep])] = warm[torch.from_numpy(keep)]

    order = np.argsort(-free, kind="stable")  # the batch is always a prefix of this order
    running = np.searchsorted(-free[order], -np.arange(int(free.max(initial=0))), side="left")[1:]
    index = torch.from_numpy(order)
    prev = warm[torch.from_numpy(np.cumsum(k) - 1)][index]  # each series' first free forecast
    step = Stepper(m.net)
    states = step.split(map_state(lambda s: s[:, index], state))
    outs = []
    with torch.no_grad():
        for a in running.tolist():  # a: the series with more than j free steps, j = 1, 2, ...
            if a < len(prev):
                states = [map_state(lambda s: s[:a], st) for st in states]
                prev = prev[:a]
            prev, states = step(prev, states)
            outs.append(prev)
    if outs:
        j = np.repeat(np.arange(1, len(running) + 1), running)
        rows = (starts + k)[order][_ranges(np.zeros_like(running), running)] + j
        forecast[torch.from_numpy(rows)] = torch.cat(outs)
    expected = np.ones(len(forecast), dtype=bool)
    expected[starts] = False
    return m.outputs(forecast, "forecasts", expected)


def _ranges(starts: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """starts[i], starts[i] + 1, ..., starts[i] + counts[i] - 1 for every i, end to end."""
    return np.repeat(starts - (np.cumsum(counts) - counts), counts) + np.arange(int(np.sum(counts)))


def _write(table: SeriesTable, output) -> None:
    if output is not None:
        write_table(table, output)


def _score(yhat: np.ndarray, truth: np.ndarray | None, scored: np.ndarray) -> dict:
    """MSE, RMSE and MAE on the original scale over the scored rows with a known truth."""
    if truth is None:
        return {"steps": 0, "mse": None, "rmse": None, "mae": None}
    e = (yhat - truth)[scored]
    e = e[~np.isnan(e)]
    if e.size == 0:
        return {"steps": 0, "mse": None, "rmse": None, "mae": None}
    with np.errstate(over="ignore"):  # forecasts far off: an MSE of inf, reported as such
        mse = float(np.mean(e**2))
    return {"steps": int(e.size), "mse": mse, "rmse": math.sqrt(mse), "mae": float(np.mean(np.abs(e)))}


def _report(command: str, scores: dict, path: str | Path | None, quiet: bool) -> None:
    if path is not None:
        outputs.write_json(path, scores)
    if quiet:
        return
    if scores["mse"] is None:
        print(f"seqtool: {command}: no known targets to score", file=sys.stderr)
        return
    print(
        f"seqtool: {command} ({scores['mode']}, warm-up {scores['warmup']}): "
        f"MSE {scores['mse']:.3g}  RMSE {scores['rmse']:.3g}  MAE {scores['mae']:.3g} "
        f"over {scores['steps']} steps",
        file=sys.stderr,
    )


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
        if name == "t" and len(part) >= 2:
            step = part[-1] - part[-2]
            return np.concatenate([part, part[-1] + step * np.arange(1, extra + 1)])
        return np.concatenate([part, np.full(extra, np.nan)])
    dates = _as_dates(part)
    if dates is not None and len(dates) >= 2:
        step = dates[-1] - dates[-2]
        more = (dates[-1] + step * np.arange(1, extra + 1)).astype(str)
        return np.concatenate([part.astype(str), more])
    return np.concatenate([part.astype(str), np.full(extra, "")])


def _as_dates(part: np.ndarray) -> np.ndarray | None:
    try:
        dates = part.astype("datetime64")
    except (ValueError, TypeError):
        return None
    return None if np.isnat(dates).any() else dates
