"""Checkpoints (docs/formats.md, Checkpoints): one file of plain types and tensors, written atomically,
loaded with `torch.load(weights_only=True)` so that a file can never run code, and checked
field by field so that a file edited by hand is refused with the field that is wrong.

Layout of the dict:

    format, version          "seqtool-checkpoint", 2 (below)
    model                    ModelConfig as a dict (cell, hidden, layers, dropout, n_in, n_out;
                             optional horizon: the steps its head forecasts, n_out values each;
                             optional members: an ensemble's networks, `hidden` units each)
    data                     x_names, y_names, task ("next-step" or "mapping"), source,
                             season (optional: the season length --season named),
                             time (optional: --time-features' column and cycles; the model's
                             inputs are then the x columns and a sine/cosine pair per cycle),
                             known (optional: --known's columns, mean and std),
                             static (optional: --static's columns, each a number's mean
                             and std or a category's categories and shares),
                             gaps (optional: true where it was trained on gaps; a mask
                             input for each x column, last)
    norm                     x_mean, x_std, y_mean, y_std (float64 tensors, training split),
                             lags (optional: the --diff lags, applied before standardising),
                             log (optional: true with --log-values, applied before the lags),
                             scale (optional: "series", "naive" or "window" with --scale,
                             applied first), window (with "window": the steps a level is
                             taken over), lag (with "naive": its naive forecast's lag)
    weights                  the weights to use: best on validation, else the last
    train                    every training setting, so --resume continues with them
    resume                   the run's state (`training.state.RunState`)
    history                  one dict per evaluation: the rows of `train --log`

Format versions; this seqtool reads both and writes 2:

    1   model.learned_start, model.loss and resume.acc.steps may be missing (read as false,
        "mse", and acc.n: the log row after resuming averages the gradient norm over the
        targets, as such a file's seqtool did); a stateful run of one long series may carry
        the state of streams cut otherwise than today (such a run is not resumed)
    2   those three fields always present
"""

from __future__ import annotations

import io
import os
import warnings
import zipfile
from pathlib import Path

import torch

from seqtool.config import CELLS, LOSSES, POINT_LOSSES, SCALES, ModelConfig
from seqtool.errors import SeqtoolError
from seqtool.limits import LIMITS
from seqtool.model.network import SeqModel
from seqtool.outputs import is_device, open_output, target

FORMAT = "seqtool-checkpoint"
VERSION = 2
TASKS = ("next-step", "mapping")


def check_checkpoint_path(path: str | os.PathLike) -> None:
    """A checkpoint is saved several times during a run and read back by --resume: it goes
    to a file, or to a device such as /dev/null (kept nowhere), never to a stream."""
    t = target(path)
    if t.in_place and not is_device(t):
        raise SeqtoolError(
            f"{path}: a checkpoint is saved several times during a run and read back by --resume; "
            f"give a file (or /dev/null to keep none), not standard output or a pipe"
        )


def save_checkpoint(payload: dict, path: str | os.PathLike) -> None:
    """Write atomically: a crash mid-write leaves the previous checkpoint intact. Serialised
    in memory first: torch's writer turns a failed write (a full disk) into a RuntimeError
    without its cause, where our own write fails with the OSError that says it."""
    buffer = io.BytesIO()
    torch.save({"format": FORMAT, "version": VERSION, **payload}, buffer)
    with open_output(path) as f:
        f.write(buffer.getbuffer())


def is_checkpoint(path: str | os.PathLike) -> bool:
    """Whether a file looks like a torch checkpoint (a zip with a data.pkl), without loading it."""
    try:
        with zipfile.ZipFile(path) as z:
            return any(n.endswith("data.pkl") for n in z.namelist())
    except (OSError, zipfile.BadZipFile):
        return False


def load_checkpoint(path: str | os.PathLike) -> dict:
    """Load and check a seqtool checkpoint; anything else is refused with one clear line."""
    name = str(path)
    if not Path(path).is_file():
        raise SeqtoolError(f"{name}: no such checkpoint file")
    try:
        with warnings.catch_warnings():  # torch warns about foreign pickles; we refuse them anyway
            warnings.simplefilter("ignore")
            ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # a pickle with code, a truncated file, random bytes, ...
        raise SeqtoolError(f"{name}: not a seqtool checkpoint ({_why_not(path, e)})") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise SeqtoolError(f"{name}: not a seqtool checkpoint (no '{FORMAT}' format mark)")
    version = ckpt.get("version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise SeqtoolError(f"{name}: not a seqtool checkpoint (format version {version!r:.20})")
    if version > VERSION:
        raise SeqtoolError(
            f"{name}: checkpoint format version {version!r:.20} is newer than this seqtool reads "
            f"({VERSION}); upgrade seqtool"
        )
    _check_model(ckpt, Damaged(name))
    return ckpt


def _why_not(path, error: Exception) -> str:
    """Why torch could not load a file, in a few words."""
    if not is_checkpoint(path):
        return "not the zip archive torch.save writes"
    text = " ".join(str(error).split())
    if "Weights only load failed" in text:
        return "it holds Python objects, not only plain data and tensors; seqtool never unpickles them"
    return text.split(". ")[0][:120] or type(error).__name__


def build_model(ckpt: dict, weights: dict | None = None, name: str = "checkpoint"):
    """The network of a checkpoint, with its weights; tensors that disagree with the config are refused."""
    damaged = Damaged(name)
    try:
        model = SeqModel(ModelConfig(**ckpt["model"]))
    except (TypeError, ValueError, KeyError) as e:
        damaged(f"model ({first_line(e)})")
    weights = ckpt["weights"] if weights is None else weights
    check_weights(weights, model, damaged, "weights")
    model.load_state_dict(weights)
    if hasattr(model.head, "lags"):  # an ensemble's median: of its members' paths (`MembersHead.point`)
        model.head.lags = tuple(ckpt["norm"].get("lags", ()))  # checked: whole numbers >= 1
    return model.eval()


class Damaged:
    """Raises "NAME: damaged seqtool checkpoint: WHAT"."""

    def __init__(self, name: str):
        self.name = name

    def __call__(self, what: str):
        raise SeqtoolError(f"{self.name}: damaged seqtool checkpoint: {what}")


OPTIONAL = {"horizon", "members"}  # model fields a file may lack (1 each)


def _check_model(ckpt: dict, damaged: Damaged) -> None:
    """What predict, rollout and gradnorm use: model, data, norm, weights, each field checked."""
    for key in ("model", "data", "norm", "weights"):
        if not isinstance(ckpt.get(key), dict):
            damaged(f"no '{key}'")
    model, data, norm = ckpt["model"], ckpt["data"], ckpt["norm"]
    fields, later = {"n_in", "n_out", "cell", "hidden", "layers", "dropout"}, {"learned_start", "loss"}
    if not (fields | (later if ckpt["version"] >= 2 else set())) <= set(model) <= fields | later | OPTIONAL:
        damaged(
            f"model has fields {sorted(model)}, expected {sorted(fields | later)} and optionally {sorted(OPTIONAL)}"
        )
    if not (_count(model.get("members", 1)) and LIMITS["ensemble"].holds(model.get("members", 1))):
        damaged(f"model.members is {model['members']!r:.60}, expected a whole number in [1, 64]")
    if model.get("members", 1) > 1 and model.get("loss", "mse") not in POINT_LOSSES:
        damaged("model.members is more than 1 for a model of a distribution")
    if not (_count(model.get("horizon", 1)) and LIMITS["train_horizon"].holds(model.get("horizon", 1))):
        damaged(f"model.horizon is {model['horizon']!r:.60}, expected a whole number of steps in [1, 10000]")
    if model.get("horizon", 1) > 1 and data.get("task") != "next-step":
        damaged("model.horizon is more than 1 for a model that is not next-step")
    if not isinstance(model.get("learned_start", False), bool):
        damaged(f"model.learned_start is {model['learned_start']!r:.60}, expected true or false")
    if model.get("loss", "mse") not in LOSSES:
        damaged(f"model.loss is {model['loss']!r:.60}, not one of {', '.join(LOSSES)}")
    if model["cell"] not in CELLS:
        damaged(f"model.cell is {model['cell']!r}, not one of {', '.join(CELLS)}")
    for key in ("hidden", "layers", "dropout"):
        if not LIMITS[key].holds(model[key]):
            damaged(f"model.{key} is {model[key]!r}, outside {LIMITS[key].interval()}")
    for key in ("n_in", "n_out"):
        if not _count(model[key]):
            damaged(f"model.{key} is {model[key]!r}, not a positive whole number")
    x_names, y_names, task = data.get("x_names"), data.get("y_names"), data.get("task")
    if task not in TASKS:
        damaged(f"data.task is {task!r}, not one of {', '.join(TASKS)}")
    _check_inputs(data, model, damaged)
    outputs = len(x_names) if task == "next-step" else len(y_names) if _names(y_names) else None
    if not _names(y_names) or (task == "next-step" and y_names) or outputs != model["n_out"]:
        damaged(f"data.y_names {y_names!r} do not fit a {task} model of {model['n_out']} outputs")
    for key, size in (
        ("x_mean", len(x_names)),
        ("x_std", len(x_names)),
        ("y_mean", model["n_out"]),
        ("y_std", model["n_out"]),
    ):
        _check_vector(norm.get(key), size, f"norm.{key}", damaged, positive=key.endswith("std"))
    lags = norm.get("lags", [])
    if not isinstance(lags, list) or not all(_count(lag) for lag in lags) or (lags and task != "next-step"):
        damaged(f"norm.lags is {lags!r:.60}; expected differencing lags (whole numbers >= 1) of a next-step model")
    if not isinstance(norm.get("log", False), bool) or (norm.get("log") and task != "next-step"):
        damaged(f"norm.log is {norm.get('log')!r:.60}; expected true or false (true only for a next-step model)")
    _check_scale(norm, task, damaged)
    _check_calibration(ckpt.get("calibration"), task, model["n_out"], damaged)
    season = LIMITS["season"]
    if "season" in data and not (_count(data["season"]) and season.holds(data["season"])):
        damaged(f"data.season is {data['season']!r:.60}, expected a whole number of steps in {season.interval()}")


def _check_inputs(data: dict, model: dict, damaged: Damaged) -> None:
    """data.x_names and what the network reads beside them: time features, known columns,
    attributes, gap masks; model.n_in inputs in all."""
    x_names, task, n_in = data.get("x_names"), data.get("task"), model["n_in"]
    known = _check_time(data.get("time"), damaged) + _check_known(data.get("known"), task, damaged, model)
    known += _check_static(data.get("static"), damaged)
    if data.get("gaps", True) is not True:  # absent, or true
        damaged(f"data.gaps is {data['gaps']!r:.60}, expected true (or no such field)")
    masks = 1 + bool(data.get("gaps"))  # with gaps, a mask input beside each input
    if not _names(x_names) or masks * len(x_names) + known != n_in:
        damaged(
            f"data.x_names are {x_names!r:.80}; model.n_in {n_in} is {known} inputs beside the series"
            f"{' and a gap mask for each of them' if masks > 1 else ''}, and one for each x name"
        )


def _check_scale(norm: dict, task: str, damaged: Damaged) -> None:
    """norm.scale; norm.window with --scale window only, norm.lag with --scale naive only."""
    scale = norm.get("scale", "global")
    if scale not in SCALES or (scale != "global" and task != "next-step"):
        damaged(f"norm.scale is {scale!r:.60}; expected one of {', '.join(SCALES)} (global unless next-step)")
    window, hi = norm.get("window"), int(LIMITS["window"].hi)
    if scale == "window" and window is None:
        damaged("norm.window is missing; a --scale window model stores the steps its level is taken over")
    if scale != "window" and window is not None:
        damaged(f"norm.window is set but norm.scale is {scale!r:.60}: a window belongs to --scale window only")
    if window is not None and not (_count(window) and 2 <= window <= hi):
        damaged(f"norm.window is {window!r:.60}; expected a whole number of steps in [2, {hi}]")
    lag = norm.get("lag")
    if (scale == "naive") != (lag is not None):
        said = "is missing" if lag is None else "is set"
        damaged(f"norm.lag {said}; a --scale naive model, and it only, stores its lag")
    if lag is not None and not (_count(lag) and 1 <= lag <= hi):
        damaged(f"norm.lag is {lag!r:.60}; expected a whole number of steps in [1, {hi}]")


def _check_calibration(calibration, task: str, n_out: int, damaged: Damaged) -> None:
    """The optional calibration (`seqtool calibrate`): scores [H, N, n_out] of float64, each
    NaN or a number in [0, 1e150], and its source's name; of a next-step model only."""
    if calibration is None:
        return
    if not isinstance(calibration, dict) or set(calibration) != {"scores", "source"}:
        damaged(f"calibration is {calibration!r:.60}; expected scores and source")
    scores = calibration["scores"]
    if not isinstance(calibration["source"], str):
        damaged(f"calibration.source is {calibration['source']!r:.60}; expected the table's name")
    if not isinstance(scores, torch.Tensor) or scores.layout != torch.strided or scores.dtype != torch.float64:
        damaged(f"calibration.scores is {type(scores).__name__} {getattr(scores, 'dtype', '')}; expected float64")
    if task != "next-step" or scores.dim() != 3 or scores.shape[2] != n_out or min(scores.shape) < 1:
        shape = tuple(scores.shape)
        damaged(f"calibration.scores is {shape}; expected [steps ahead, origins, {n_out}] of a next-step model")
    known = scores[~torch.isnan(scores)]
    if not ((known >= 0) & (known <= 1e150)).all():
        damaged("calibration.scores holds values that are not NaN or numbers in [0, 1e150]")


def _check_time(time, damaged: Damaged) -> int:
    """The time features (data.time: a column and its cycles), if any; their input width."""
    if time is None:
        return 0
    cycles = time.get("cycles") if isinstance(time, dict) else None
    ok = isinstance(cycles, list) and 0 < len(cycles) <= 32 and isinstance(time.get("column"), str)
    ok = ok and all(
        isinstance(c, list)
        and len(c) == 2
        and c[0] in ("t", "days", "months")
        and isinstance(c[1], float)
        and 0 < c[1] < 1e9
        for c in cycles
    )
    if not ok or len({c[0] == "t" for c in cycles}) > 1:
        damaged(f"data.time is {time!r:.80}; expected a column and its cycles ([unit, period], ...)")
    return 2 * len(cycles)


def _check_known(known, task: str, damaged: Damaged, model: dict) -> int:
    """The covariates known in advance (data.known: columns, mean, std; with a horizon
    model, its horizon: the steps ahead read), if any; their width."""
    if known is None:
        return 0
    names = known.get("columns") if isinstance(known, dict) else None
    horizon = model.get("horizon", 1)
    ok = _names(names) and 0 < len(names) <= 1000 and task == "next-step" and known.get("horizon", 1) == horizon
    ok = ok and set(known) <= {"columns", "mean", "std", "horizon"}
    for key in ("mean", "std"):
        values = known.get(key) if ok else None
        ok = ok and isinstance(values, list) and len(values) == len(names)
        low = 1e-150 if key == "std" else -1e150
        ok = ok and all(isinstance(v, float) and low <= v <= 1e150 for v in values)
    if not ok:
        damaged(
            f"data.known is {known!r:.80}; expected the columns, their mean and std, and the model's horizon "
            "(a next-step model)"
        )
    return len(names) * horizon


def _check_static(static, damaged: Damaged) -> int:
    """The per-series attributes (data.static: a number's column, mean, std, or a
    category's column, categories, shares), if any; their width."""
    if static is None:
        return 0
    ok = isinstance(static, list) and 0 < len(static) <= 1000 and all(isinstance(c, dict) for c in static)
    width = 0
    for c in static if ok else []:
        if set(c) == {"column", "mean", "std"}:
            ok = ok and all(isinstance(c[k], float) and -1e150 <= c[k] <= 1e150 for k in ("mean", "std"))
            ok, width = ok and c["std"] >= 1e-150, width + 1
        elif set(c) == {"column", "categories", "shares"}:
            cats, shares = c["categories"], c["shares"]
            ok = ok and _names(cats) and 0 < len(cats) <= 1000 and isinstance(shares, list) and len(shares) == len(cats)
            ok = ok and all(isinstance(v, float) and 0 <= v <= 1 for v in shares)
            width += len(cats) if ok else 0
        else:
            ok = False
        ok = ok and isinstance(c.get("column"), str)
    if not ok:
        damaged(f"data.static is {static!r:.80}; expected per column its mean and std, or its categories and shares")
    return width


def check_weights(weights, model, damaged: Damaged, what: str) -> None:
    """Every tensor of the network, of its shape, finite; an ensemble's members apart."""
    if not isinstance(weights, dict):
        damaged(f"{what} is not a dict of tensors")
    expected = model.state_dict()
    if set(weights) != set(expected):
        missing, extra = sorted(set(expected) - set(weights)), sorted(set(weights) - set(expected))
        damaged(f"{what} do not fit the model (missing {missing or 'none'}, unexpected {extra or 'none'})")
    for key, tensor in weights.items():
        if not isinstance(tensor, torch.Tensor) or tensor.shape != expected[key].shape:
            shape = tuple(tensor.shape) if isinstance(tensor, torch.Tensor) else type(tensor).__name__
            damaged(f"{what}.{key} is {shape}, expected {tuple(expected[key].shape)}")
        if not tensor.is_floating_point() or not torch.isfinite(tensor).all():
            damaged(f"{what}.{key} holds values that are not finite numbers")
        apart = model.apart(key)
        if apart is not None and bool((tensor[apart == 0] != 0).any()):
            damaged(f"{what}.{key} joins an ensemble's members: its weights between them must be 0")


def _check_vector(value, size: int, what: str, damaged: Damaged, positive: bool) -> None:
    if not isinstance(value, torch.Tensor) or tuple(value.shape) != (size,) or not value.is_floating_point():
        damaged(f"{what} should be {size} numbers, got {value!r:.80}")
    if not torch.isfinite(value).all() or (positive and not (value > 0).all()):
        damaged(f"{what} holds {value.tolist()}, not finite{' and positive' if positive else ''}")


def _count(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= 1_000_000


def _names(value) -> bool:
    return isinstance(value, list) and all(isinstance(n, str) and n for n in value) and len(set(value)) == len(value)


def first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0][:160] if text else type(e).__name__
