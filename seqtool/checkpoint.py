"""Checkpoints (DESIGN.md section 3): one file of plain types and tensors, written atomically,
loaded with `torch.load(weights_only=True)` so that a file can never run code.

Layout of the dict:

    format, version          "seqtool-checkpoint", 1
    model                    ModelConfig as a dict (cell, hidden, layers, dropout, n_in, n_out)
    data                     x_names, y_names, task ("next-step" or "mapping")
    norm                     x_mean, x_std, y_mean, y_std (float64 tensors, training split)
    weights                  the weights to use: best on validation, else the last
    train                    every training setting, so --resume continues with them
    resume                   weights, optimizer, scheduler, step, torch_rng, carry, ... (see training)
    history                  one dict per evaluation: the rows of `train --log`
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

from .atomic import atomic_path
from .errors import SeqtoolError

FORMAT = "seqtool-checkpoint"
VERSION = 1


def save_checkpoint(payload: dict, path: str | os.PathLike) -> None:
    """Write atomically: a crash mid-write leaves the previous checkpoint intact."""
    import torch

    with atomic_path(path) as tmp:
        torch.save({"format": FORMAT, "version": VERSION, **payload}, tmp)


def is_checkpoint(path: str | os.PathLike) -> bool:
    """Whether a file looks like a torch checkpoint (a zip with a data.pkl), without loading it."""
    import zipfile

    try:
        with zipfile.ZipFile(path) as z:
            return any(n.endswith("data.pkl") for n in z.namelist())
    except (OSError, zipfile.BadZipFile):
        return False


def load_checkpoint(path: str | os.PathLike) -> dict:
    """Load and check a seqtool checkpoint; anything else is refused with one clear line."""
    import torch

    name = str(path)
    if not Path(path).is_file():
        raise SeqtoolError(f"{name}: no such checkpoint file")
    try:
        with warnings.catch_warnings():  # torch warns about foreign pickles; we refuse them anyway
            warnings.simplefilter("ignore")
            ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # a pickle with code, a truncated file, random bytes, ...
        reason = str(e).strip().splitlines()[0][:120] if str(e).strip() else type(e).__name__
        raise SeqtoolError(f"{name}: not a seqtool checkpoint ({reason})") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise SeqtoolError(f"{name}: not a seqtool checkpoint (no '{FORMAT}' format mark)")
    version = ckpt.get("version")
    if not isinstance(version, int) or version > VERSION:
        raise SeqtoolError(
            f"{name}: checkpoint format version {version} is newer than this seqtool reads "
            f"({VERSION}); upgrade seqtool"
        )
    for key in ("model", "data", "norm", "weights"):
        if key not in ckpt:
            raise SeqtoolError(f"{name}: damaged seqtool checkpoint (no '{key}')")
    return ckpt


def build_model(ckpt: dict, weights: dict | None = None, name: str = "checkpoint"):
    """The network of a checkpoint, with its weights; tensors that disagree with the config are refused."""
    from .models import CELLS, ModelConfig, SeqModel

    try:
        config = ModelConfig(**ckpt["model"])
        if config.cell not in CELLS:
            raise ValueError(f"unknown cell {config.cell!r}")
        model = SeqModel(config)
        model.load_state_dict(ckpt["weights"] if weights is None else weights)
    except (TypeError, ValueError, RuntimeError, KeyError) as e:
        first = str(e).strip().splitlines()[0][:160]
        raise SeqtoolError(f"{name}: damaged seqtool checkpoint ({first})") from None
    return model.eval()
