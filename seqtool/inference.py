"""`predict` (teacher-forced) and `rollout` (free-running) with a trained checkpoint.

Both write the input table plus `yhat` (or `yhat0`, `yhat1`, ...) on the original scale,
aligned with the truth it estimates: for a next-step model, `yhat` in row t is the
forecast of x[t] made from x[0..t-1], so row 0 has none. A step is scored when its row
index within its series is at least `warmup` and its truth is known.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import numpy as np

from .checkpoint import build_model, load_checkpoint
from .dataset import MAPPING, NEXT_STEP, Norm, padded
from .errors import SeqtoolError
from .tables import SeriesTable, as_table, read_series

BATCH = 256  # series per teacher-forced pass: bounds memory on large tables


class Model:
    """A checkpoint ready to run: network, standardisation, column names."""

    def __init__(self, path: str | Path):
        self.path = str(path)
        ckpt = load_checkpoint(path)
        self.net = build_model(ckpt, name=self.path)
        self.norm = Norm.from_dict(ckpt["norm"])
        self.x_names = list(ckpt["data"]["x_names"])
        self.y_names = list(ckpt["data"]["y_names"])
        self.task = ckpt["data"]["task"]
        outputs = self.x_names if self.task == NEXT_STEP else self.y_names
        self.yhat_names = ["yhat"] if len(outputs) == 1 else [f"yhat{i}" for i in range(len(outputs))]

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
        return read_series(table, self.x_names, self.y_names if has_truth else [])

    def run(self, x: np.ndarray, state=None):
        """Original-scale inputs [N, T, F] -> original-scale outputs [N, T, G] and the state."""
        import torch

        z = torch.from_numpy(((x - self.norm.x_mean) / self.norm.x_std).astype(np.float32))
        with torch.no_grad():
            out, state = self.net(z, state)
        return out.double().numpy() * self.norm.y_std + self.norm.y_mean, state


def predict(
    model: str | Path,
    data=None,
    *,
    warmup: int = 0,
    metrics: str | Path | None = None,
    quiet: bool = False,
) -> tuple[SeriesTable, dict]:
    """`seqtool predict`: teacher-forced outputs for every step, state carried through each series."""
    m = Model(model)
    table = m.read(data)
    _check_warmup(warmup)
    xs = table.split(table.x)
    outputs = []
    for start in range(0, len(xs), BATCH):
        group = xs[start : start + BATCH]
        out, _ = m.run(_padded(group))
        outputs += [out[i, : len(a)] for i, a in enumerate(group)]
    if m.task == NEXT_STEP:  # the output at step t forecasts x[t+1]: move it to row t+1
        yhat = [np.vstack([np.full((1, o.shape[1]), np.nan), o[:-1]]) for o in outputs]
        truth = xs
    else:
        yhat = outputs
        truth = table.split(table.y) if table.y is not None else None
    result = _with_columns(table, dict(zip(m.yhat_names, np.concatenate(yhat).T)))
    scores = _score(yhat, truth, [np.arange(len(a)) >= warmup for a in xs])
    scores.update(warmup=warmup, mode="teacher-forced")
    _report("predict", scores, metrics, quiet)
    return result, scores


def rollout(
    model: str | Path,
    data=None,
    *,
    warmup: int | None = None,
    steps: int | None = None,
    horizon: int = 0,
    metrics: str | Path | None = None,
    quiet: bool = False,
) -> tuple[SeriesTable, dict]:
    """`seqtool rollout`: warm up on the first `warmup` true steps of each series, then feed
    the model its own predictions: to the end of the series, for `steps` steps, or `horizon`
    steps past the end. All series run together as one batch."""
    m = Model(model)
    if m.task != NEXT_STEP:
        raise SeqtoolError(
            f"{m.path} maps inputs to targets ({', '.join(m.y_names)}), so its outputs cannot be "
            f"fed back as inputs; rollout needs a next-step model (trained without a target "
            f"column): use seqtool predict"
        )
    table = m.read(data)
    if steps is not None and horizon:
        raise SeqtoolError("give --steps or --horizon, not both")
    if horizon < 0 or (steps is not None and steps < 0):
        raise SeqtoolError("--steps and --horizon must be zero or positive")
    xs = table.split(table.x)
    lengths = np.array([len(a) for a in xs])
    if warmup is None:
        k = lengths if horizon else np.minimum(lengths, 10)
    else:
        _check_warmup(warmup)
        if warmup < 1:
            raise SeqtoolError("--warmup must be at least 1: the first forecast needs an observed step")
        short = np.flatnonzero(lengths < warmup)
        if len(short):
            raise SeqtoolError(
                f"series {table.ids[short[0]]!r} has {lengths[short[0]]} steps, fewer than "
                f"--warmup {warmup}"
            )
        k = np.full(len(xs), warmup)
    free = np.full(len(xs), steps) if steps is not None else lengths - k + horizon

    yhat = _roll(m, xs, k, free)  # all series in one batch: each step serves them all
    total = k + free
    result = _extend(table, total, dict(zip(m.yhat_names, np.concatenate(yhat).T)))
    step_in_series = np.arange(total.sum()) - np.repeat(np.cumsum(total) - total, total)
    result.columns["phase"] = np.where(step_in_series < np.repeat(k, total), "warmup", "free")
    truth = [np.vstack([a[:n], np.full((max(n - len(a), 0), a.shape[1]), np.nan)]) for a, n in zip(xs, total)]
    scores = _score(yhat, truth, [np.arange(n) >= w for n, w in zip(total, k)])
    scores.update(warmup=int(k.min()) if len(set(k.tolist())) == 1 else "varies", mode="free-running")
    _report("rollout", scores, metrics, quiet)
    return result, scores


def _roll(m: Model, xs: list[np.ndarray], k: np.ndarray, free: np.ndarray) -> list[np.ndarray]:
    """Teacher-forced through each series' first k steps, then free for `free` steps.

    Series with different warm-up lengths are warmed up on their common prefix together,
    then step by step; each series switches to its own predictions right after its k-th
    observed step, so the first free forecast is conditioned on the last observed value.
    The loop runs on standardised tensors (a next-step model's inputs and outputs share
    one scale) with torch's cells, one step per iteration for all series at once.
    """
    import torch

    from .models import Stepper

    n, features = len(xs), xs[0].shape[1]
    total = k + free
    steps = int(total.max())
    common = int(k.min())
    z = torch.from_numpy(((_padded(xs) - m.norm.x_mean) / m.norm.x_std).astype(np.float32))
    observed_until = torch.from_numpy(k)[:, None]
    forecast = torch.full((n, steps + 1, features), float("nan"))  # [:, r]: the forecast of row r
    step = Stepper(m.net)
    with torch.no_grad():
        first, state = m.net(z[:, :common])
        forecast[:, 1 : common + 1] = first  # the output at step t forecasts row t+1
        states, prev = step.split(state), first[:, -1]
        last_observed = int(k.max())
        for t in range(common, steps - 1):
            x_t = prev
            if t < last_observed:  # some series are still warming up
                x_t = torch.where(observed_until > t, z[:, t], prev)
            prev, states = step(x_t, states)
            forecast[:, t + 1] = prev
    out = forecast[:, :steps].double().numpy() * m.norm.y_std + m.norm.y_mean
    return [out[i, : total[i]] for i in range(n)]


def _padded(xs: list[np.ndarray]) -> np.ndarray:
    return padded(xs, 0.0, np.float64)


def _check_warmup(warmup: int) -> None:
    if warmup < 0:
        raise SeqtoolError(f"--warmup must be zero or positive, got {warmup}")


def _score(yhat: list[np.ndarray], truth: list[np.ndarray] | None, scored: list[np.ndarray]) -> dict:
    """MSE, RMSE and MAE on the original scale over the scored steps with a known truth."""
    if truth is None:
        return {"steps": 0, "mse": None, "rmse": None, "mae": None}
    errors = []
    for p, y, keep in zip(yhat, truth, scored):
        e = (p - y)[keep]
        errors.append(e[~np.isnan(e)])
    e = np.concatenate(errors) if errors else np.array([])
    if e.size == 0:
        return {"steps": 0, "mse": None, "rmse": None, "mae": None}
    mse = float(np.mean(e**2))
    return {"steps": int(e.size), "mse": mse, "rmse": math.sqrt(mse), "mae": float(np.mean(np.abs(e)))}


def _report(command: str, scores: dict, path: str | Path | None, quiet: bool) -> None:
    if path is not None:
        from .atomic import write_text

        write_text(path, json.dumps(scores, indent=2) + "\n")
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
