"""`seqtool calibrate`: a copy of a checkpoint that carries its model's own backtest errors,
per step ahead and scaled per series (`conformal.Calibration`), so that predict, rollout
and backtest give it conformal intervals."""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

import numpy as np

from seqtool import outputs
from seqtool.config import ModelConfig
from seqtool.errors import SeqtoolError
from seqtool.forecast.backtest import known_reach, origins
from seqtool.forecast.conformal import Calibration, needed, scaled_errors
from seqtool.forecast.forecaster import next_step_model
from seqtool.forecast.freerun import from_origins
from seqtool.forecast.windows import check_reach
from seqtool.limits import check_all, fits_in_memory
from seqtool.model.checkpoint import check_checkpoint_path, load_checkpoint, save_checkpoint


def calibrate(
    model: str | Path,
    data=None,
    *,
    horizon: int,
    start: float = 0.8,
    stride: int = 1,
    level: float = 95.0,
    output: str | Path,
    quiet: bool = False,
    threads: int | None = None,
) -> Calibration:
    """`seqtool calibrate`: backtest `model` on `data` from every origin at or after `start`,
    every `stride` steps (as `seqtool backtest`), and write the checkpoint with the scores
    |y - yhat| / scale of every origin and h = 1..`horizon` to `output`. Refused where some
    h has fewer scores than `level` needs. Origins must lie where the model was not trained
    (a later part of each series, or series it did not see) for the intervals to hold."""
    check_all(backtest_horizon=horizon, stride=stride, threads=threads, level=level)
    check_checkpoint_path(output)
    outputs.check([(output, None, "checkpoint")], inputs=[model, data])
    ckpt = load_checkpoint(model)
    m = next_step_model(model, ckpt, advice="seqtool calibrate backtests one")
    check_reach(m, horizon, f"--horizon {horizon}", "give --horizon {h} or fewer")
    table = m.read(data)
    series, origin = origins(table, start, stride, horizon, m.scaling.diff.order + 1, known_reach(m, horizon))
    m.use_threads(threads, len(origin))
    size = float(len(origin)) * horizon * len(m.yhat_names) * 8 * 4
    fits_in_memory(size, f"a calibration of {len(origin):,} origins x {horizon} steps")
    yhat = from_origins(m, table, series, origin, horizon)
    scores = scaled_errors(table, series, origin, yhat)
    calibration = Calibration(np.moveaxis(scores, 1, 0), table.source)
    counts, need = calibration.counts(), needed(level)
    if counts.min() < need:
        h = int(np.argmin(counts)) + 1
        raise SeqtoolError(
            f"{table.source}: {int(counts.min())} origin(s) with a known truth and a series scale at h = {h} (a "
            f"scale needs 2 steps before the first origin that are not all equal); --level {level:g} needs at "
            f"least {need}: an earlier --start, a smaller --stride, or more series"
        )
    _write(ckpt, calibration, output)
    if not quiet:
        print(
            f"seqtool: calibrate: {len(origin)} origins x {horizon} steps of {table.source}; "
            f"{int(counts.min())} to {int(counts.max())} scores per h"
            + (
                f" ({len(origin) - int(counts.max())} origins without a truth or a series scale)"
                * bool(counts.max() < len(origin))
            ),
            file=sys.stderr,
        )
    return calibration


def _write(ckpt: dict, calibration: Calibration, output) -> None:
    """The model's network and transform with `calibration`, no training state (it is not
    resumed); a warning where the calibration's table is the one the model was trained on."""
    if str(ckpt["data"].get("source")) == calibration.source and calibration.source not in ("<stdin>", "table"):
        warnings.warn(
            f"{calibration.source} is the table the model was trained on: its errors there are in-sample, so the "
            "intervals come out too narrow; calibrate on data it did not see (later steps, other series)",
            stacklevel=3,
        )
    kept = {"model": ModelConfig(**ckpt["model"]).to_dict(), "data": ckpt["data"], "norm": ckpt["norm"]}
    save_checkpoint({**kept, "weights": ckpt["weights"], "calibration": calibration.to_dict()}, output)
