"""From a table to what a run trains on (`Prepared`): targets, the split (`--val`), the
standardisation of the training part, the rows on the device, `--window`'s default; a
table folder of a next-step table is read in place (`inplace.FolderRows`)."""

from __future__ import annotations

import hashlib
import sys
from dataclasses import dataclass, replace

import numpy as np

from seqtool.config import WINDOW, TrainConfig
from seqtool.data import folders
from seqtool.data.covariates import Covariates
from seqtool.data.examples import (
    MAPPING,
    NEXT_STEP,
    Rows,
    held_out,
    held_out_rows,
    inputs_and_targets,
    split,
    tail_start,
    task_of,
)
from seqtool.data.reading import read_history
from seqtool.data.scaling import (
    Differencing,
    Scaling,
    WindowLevels,
    check_magnitude,
    divided,
    levels,
    magnitudes,
)
from seqtool.data.statics import Statics
from seqtool.data.tables import SeriesTable
from seqtool.data.timefeatures import TimeFeatures
from seqtool.errors import SeqtoolError
from seqtool.limits import check_season
from seqtool.training.inplace import FolderRows

WHOLE_SERIES = 10_000  # the longest window that --window's default makes of a whole series
SCALE_SPAN = 10  # series whose magnitudes differ more than this need a scale each


def table_for(data, config: TrainConfig):
    """The table to train on: a table folder that training reads in place (`folders`), or
    a table read into memory."""
    if folders.is_folder(data):
        folder = folders.Folder(data)
        folder.check_columns(config.x, config.y)
        if folder.in_place(config):
            return folder
    table = read_history(data, config.x, config.y, config.known_columns(), config.gaps)
    return replace(table, ahead=None)  # the rows after the values are a forecast's, not training's


def _covariates(table: SeriesTable, task: str, config: TrainConfig) -> Covariates | None:
    """--known's columns, standardised over the table (a next-step model's only, for now)."""
    if not config.known_columns():
        return None
    if task != NEXT_STEP:
        raise SeqtoolError(f"{table.source}: --known is for next-step forecasting; this table has targets")
    return Covariates.fit(table, config.known_columns(), config.horizon)


def _statics(table: SeriesTable, config: TrainConfig) -> Statics | None:
    """--static's columns, their statistics and categories from the training series (not
    those held out for validation: a category only they have reads the unseen entry)."""
    if not config.static_columns():
        return None
    n = len(table.lengths)
    training = np.setdiff1d(np.arange(n), held_out(n, config.val, config.seed)) if n >= 2 and config.val > 0 else None
    return Statics.fit(table, config.static_columns(), training)


def _fingerprint(xs: list[np.ndarray], ys: list[np.ndarray]) -> str:
    digest = hashlib.sha256()
    for a in xs + ys:
        digest.update(np.ascontiguousarray(a, dtype=np.float64).tobytes())
    return digest.hexdigest()[:16]


@dataclass
class Prepared:
    """What a run trains on: the split, standardised, stored end to end."""

    fingerprint: str
    scaling: Scaling
    rows: Rows
    val: Rows | None
    info: dict  # the checkpoint's "data": column names, task, source
    held_out: tuple[SeriesTable, list] | None = None  # next step: the validation series as read, their scored steps
    advice: str | None = None  # an option the table seems to need


def prepare(table: SeriesTable, config: TrainConfig, device, resuming: bool = False) -> Prepared:
    """Targets, the split (`--val`), the standardisation of the training part. A split in
    which no step has a target is refused; validation is scored like training (no loss
    during the burn-in). With --scale series, each series is divided by its level first;
    with --diff, the series are differenced (next step only). `resuming`: a table folder's
    fingerprint is recomputed, not taken from its meta.json."""
    check_season(config.season, int(np.diff(table.offsets).max()), table.source)
    if isinstance(table, folders.Folder):
        return _prepare_in_place(table, config, device, resuming)
    task = task_of(table)
    diff = Differencing(config.lags(), config.log_values)
    time = TimeFeatures.choose(table, config.periods()) if config.time_features else None
    covariates = _covariates(table, task, config)
    _check_horizon(table, task, diff, config.horizon)
    levelled = _levelled(table, task, config)
    gaps = table.missing is not None
    statics = _statics(table, config)
    xs, ys = inputs_and_targets(levelled, task, diff, time, config.horizon, covariates, gaps, statics)
    fingerprint, width = _fingerprint(xs, ys), xs[0].shape[1]
    if config.scale == "window":  # each row's |x| on its series' level, split with the rows
        xs = [np.concatenate([x, np.abs(s[diff.order :])], axis=1) for x, s in zip(xs, levelled.split(levelled.x))]
    (train_x, train_y), (val_x, val_y) = split(xs, ys, config.val, config.seed, config.horizon, table.source)
    relative, val_relative = [x[:, width:] for x in train_x], [x[:, width:] for x in val_x]
    train_x, val_x = [x[:, :width] for x in train_x], [x[:, :width] for x in val_x]
    _has_targets(train_y, table, "training")
    series = [x[:, : len(table.x_names)] for x in train_x]  # not the time features: they are not scaled
    scaling = Scaling.fit(
        series, train_y, task == NEXT_STEP, table.x_names, table.y_names, table.source, diff, config.scale
    )
    scaling.lag = _naive_lag(config)
    val = held_out = None
    if val_x:
        val, scored = _validation(val_x, val_y, table, scaling, config, device, config.burn_in, diff.order)
        if task == NEXT_STEP:  # as read: the naive forecasts repeat the values, not their differences
            kept = held_out_rows(table.lengths, config.val, config.seed)
            held_out = (table.taken(np.concatenate(kept), [len(r) for r in kept]), scored)
    info = _info(table, task, config)
    if time is not None:
        info["time"] = time.to_dict()
    if covariates is not None:
        info["known"] = covariates.to_dict()
    if statics is not None:
        info["static"] = statics.to_dict()
    if gaps:
        info["gaps"] = True
    rows = Rows.of(train_x, train_y, scaling, table.x_names, table.source)
    if config.scale == "window":
        rows.levels = WindowLevels.of(np.concatenate(relative), scaling)
        if val is not None:
            val.levels = WindowLevels.of(np.concatenate(val_relative), scaling).to(device)
    return Prepared(fingerprint, scaling, rows.to(device), val, info, held_out, _scale_advice(table, task, config))


def with_window(data: Prepared, window: int) -> None:
    """--scale window, once --window is known: the steps a forecast's level is taken over;
    some validation series must be longer, to be scored as a forecast is."""
    data.scaling.window = window
    if data.val is not None and not (data.val.lengths.cpu().numpy() > window).any():
        raise SeqtoolError(
            f"--scale window: no validation series is longer than --window {window} (a forecast from a "
            "window needs a step after it), so none can be scored; use a shorter --window"
        )


def _levelled(table: SeriesTable, task: str, config: TrainConfig) -> SeriesTable:
    """With --scale series (or window), each series divided by its level over its training
    steps (the one series' before its validation tail); windows move to their own later
    (`WindowLevels`)."""
    if config.scale == "global":
        return table
    if task != NEXT_STEP:
        raise SeqtoolError(
            f"{table.source}: --scale {config.scale} is for next-step forecasting; this table has targets "
            f"({', '.join(table.y_names)}): drop --scale {config.scale}"
        )
    for name in table.x_names:  # dividing first would hide them from the standardisation's check
        check_magnitude(table.columns[name], name, table.source)
    known = table.lengths.copy()
    if len(known) == 1 and config.val > 0:
        known[0] = tail_start(int(known[0]), config.val, table.source)
    known[known < 2] = 0  # a series of one step has no target: nothing to scale
    return divided(table, levels(table, known, option=f"--scale {config.scale}", lag=_naive_lag(config)))


def _naive_lag(config: TrainConfig) -> int:
    """The lag of --scale naive's naive forecast: --season, else 1; 0 for other scales."""
    return (config.season or 1) if config.scale == "naive" else 0


def _check_horizon(table: SeriesTable, task: str, diff: Differencing, horizon: int) -> None:
    """--horizon H: next-step tables only, and some series long enough for a whole target
    (H steps after a step the network reads)."""
    if horizon == 1:
        return
    if task != NEXT_STEP:
        raise SeqtoolError(f"{table.source}: --horizon is for next-step forecasting; this table has targets")
    longest = int(table.lengths.max()) - diff.order
    if longest <= horizon:
        after = f" after the differencing's first {diff.order}" if diff.order else ""
        raise SeqtoolError(
            f"{table.source}: --horizon {horizon}: the longest series has {longest} steps{after}, and a "
            f"forecast of {horizon} steps needs {horizon + 1} (one to read): use a shorter --horizon"
        )


def _scale_advice(table: SeriesTable, task: str, config: TrainConfig) -> str | None:
    """Where one scale serves series whose magnitudes differ more than SCALE_SPAN times:
    the option that gives each its own."""
    if task != NEXT_STEP or config.scale != "global" or config.log_values or len(table.lengths) < 2:
        return None
    size = magnitudes(table, table.lengths).max(axis=1)
    size = size[size > 0]
    if len(size) < 2 or size.max() <= SCALE_SPAN * size.min():
        return None
    return (
        f"the series differ in scale {size.max() / size.min():,.0f}x (mean absolute values {size.min():.3g} to "
        f"{size.max():.3g}): --scale series gives each series its own (or --log-values, for positive series)"
    )


def _validation(
    xs, ys, table, scaling: Scaling, config: TrainConfig, device, skip: int, order: int = 0
) -> tuple[Rows, list]:
    """The validation rows, the first `skip` steps of each series left out of the loss (the
    burn-in, a lead-in); and for each series the rows a next-step forecast is scored on as
    read (none in the first 1 + `order` rows). A part without targets is refused."""
    ys = [y.copy() for y in ys]
    for y in ys:
        y[:skip] = np.nan
    _has_targets(ys, table, "validation", config.burn_in)
    scored = [np.concatenate([np.zeros(order + 1, bool), ~np.isnan(y[:-1]).any(axis=1)]) for y in ys]
    return Rows.of(xs, ys, scaling, table.x_names, table.source).to(device), scored


def _info(table, task: str, config: TrainConfig) -> dict:
    """The checkpoint's "data": column names, task, source, and the season asked for."""
    info = {"x_names": table.x_names, "y_names": table.y_names or [], "task": task, "source": table.source}
    return {**info, "season": config.season} if config.season is not None else info


def _prepare_in_place(folder: folders.Folder, config: TrainConfig, device, resuming: bool) -> Prepared:
    """`prepare` of a next-step table folder read in place: the training rows stay in the
    maps (`inplace.FolderRows`), standardised by the blocks' moments; the validation part,
    bounded (`Folder.split`), is read into memory and scored as any other."""
    folders.check_inputs(folder, digest=resuming)
    starts, lengths, val_table, lead = folder.split(config)
    if not (lengths >= 2).any():
        raise SeqtoolError(f"{folder.source}: no training series has two steps, so no step has a target to learn")
    scaling = folder.scaling(starts, lengths)
    val = held_out = None
    if val_table is not None:
        val, scored = _validation(
            *inputs_and_targets(val_table, NEXT_STEP), val_table, scaling, config, device, max(config.burn_in, lead)
        )
        held_out = (val_table, scored)
    rows = FolderRows(folder, starts, lengths, scaling, device)
    return Prepared(folder.meta["sha256"], scaling, rows, val, _info(folder, NEXT_STEP, config), held_out)


def window_for(rows: Rows, config: TrainConfig, task: str, quiet: bool) -> int:
    """--window's default for this table: WINDOW steps; where targets are sparse (fewer than
    one a window, on average), windows that cover whole series, since a target whose inputs
    lie outside every window cannot be learned. What it chose, or where it cannot choose
    the option that may be needed, is said in one line on stderr."""
    lengths = rows.lengths.cpu().numpy()
    longest, steps = int(lengths.max()), int(lengths.sum())
    targets = rows.target_count()
    say = (lambda line: None) if quiet else (lambda line: print(f"seqtool: {line}", file=sys.stderr))
    if config.stateful or longest == WINDOW:
        return WINDOW
    if longest < WINDOW:
        shorter = int((lengths < longest).sum())
        left = f"; series shorter than that are left out ({shorter})" if shorter else ""
        say(
            f"every series is shorter than {WINDOW} steps: each window covers a whole series (--window {longest}){left}"
        )
        return longest
    if targets * WINDOW < steps:
        sparse = f"targets are sparse (one step in {steps / max(targets, 1):.0f} has one)"
        if longest <= WHOLE_SERIES:
            say(f"{sparse}: each window covers a whole series (--window {longest}); give --window to choose")
            return longest
        say(
            f"{sparse} and series of {longest:,} steps are too long for one window: "
            "train with --stateful (carried state)"
        )
    elif task == MAPPING:
        say(
            f"each window of {WINDOW} steps starts from a zero state, so a target can depend on the last {WINDOW} "
            "inputs only; if it depends on more (an integrator), train with --stateful"
        )
    return WINDOW


def _has_targets(ys: list[np.ndarray], table, part: str, burn_in: int = 0) -> None:
    """Refuse a split in which no step has a target: nothing to learn, or to validate on."""
    if any((~np.isnan(y)).any() for y in ys):
        return
    if part == "training":
        names = ", ".join(table.y_names) if table.y_names else "the inputs (next step)"
        raise SeqtoolError(f"{table.source}: no step of the training split has a target ({names} empty)")
    raise SeqtoolError(
        f"{table.source}: no step of the validation split has a target (its cells are empty, or within its "
        f"first {burn_in} steps: --burn-in); use --val 0, or a larger --val"
    )
