"""`seqtool ensemble`: checkpoints of one model joined into one ensemble (`model.members`),
their weights side by side, forecasting their median as `train --ensemble` does. The
members must read and scale the data alike: the same columns, transforms and
standardisation (trained on the same table with `--val 0`, say, and different seeds)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from seqtool import outputs
from seqtool.config import POINT_LOSSES, ModelConfig
from seqtool.data.scaling import STATS, Scaling
from seqtool.errors import SeqtoolError
from seqtool.limits import LIMITS
from seqtool.model.checkpoint import check_checkpoint_path, load_checkpoint, save_checkpoint
from seqtool.model.network import joined_weights, member_weights

ARCHITECTURE = ("cell", "hidden", "layers", "n_in", "n_out", "horizon", "learned_start", "loss")  # members share these
DATA_FIELDS = ("x_names", "y_names", "task", "time", "known", "static", "gaps")  # what members must agree on


def ensemble(models: list[str | Path], out: str | Path) -> ModelConfig:
    """Join the checkpoints `models` (ensembles among them give each of their members) into
    one written to `out`; its model's config. Checkpoints that differ in columns,
    transforms, standardisation or architecture are refused, naming the first difference."""
    if len(models) < 2:
        raise SeqtoolError(f"seqtool ensemble joins two or more checkpoints; got {len(models)}")
    check_checkpoint_path(out)
    outputs.check([(out, None, "checkpoint")], inputs=list(models))
    loaded = [load_checkpoint(path) for path in models]
    for path, ckpt in zip(models[1:], loaded[1:]):
        _check_alike(str(models[0]), loaded[0], str(path), ckpt)
    _check_parts(models, loaded)
    members = [w for ckpt in loaded for w in _members(ckpt)]
    if not LIMITS["ensemble"].holds(len(members)):
        raise SeqtoolError(f"an ensemble holds at most {LIMITS['ensemble'].hi} networks; these hold {len(members)}")
    config = ModelConfig(**{**loaded[0]["model"], "members": len(members)})
    first = loaded[0]
    save_checkpoint(
        {
            "model": config.to_dict(),
            "data": first["data"],
            "norm": first["norm"],
            "weights": joined_weights(members, config),
        },
        out,
    )
    return config


def _members(ckpt: dict) -> list[dict]:
    """The weights of each network a checkpoint holds."""
    config = ModelConfig(**ckpt["model"])
    if config.members == 1:
        return [ckpt["weights"]]
    return [member_weights(ckpt["weights"], config, k) for k in range(config.members)]


def _check_parts(models: list[str | Path], loaded: list[dict]) -> None:
    """Refuse one part of an --ensemble (`train --part`) given twice: its members would
    count twice in the median. (Copies of a model are allowed: K copies forecast as one.)"""
    seen: dict[tuple, str] = {}
    for path, ckpt in zip(models, loaded):
        t = ckpt.get("train") or {}
        if t.get("part") is None:
            continue
        key = (t.get("part"), t.get("ensemble"), t.get("seed"))
        if key in seen:
            raise SeqtoolError(
                f"{path} is part {key[0]} of --ensemble {key[1]} --seed {key[2]}, as {seen[key]} is: joined twice, "
                "its members would count twice in the median"
            )
        seen[key] = str(path)


def _check_alike(name_a: str, a: dict, name_b: str, b: dict) -> None:
    """Refuse two checkpoints that cannot be members of one ensemble, in one line naming the
    first field that differs (as the checkpoint loader reads them: absent fields as defaults)."""
    model_a, model_b = ModelConfig(**a["model"]), ModelConfig(**b["model"])
    for name, model in ((name_a, model_a), (name_b, model_b)):
        if model.loss not in POINT_LOSSES:
            raise SeqtoolError(
                f"{name} models a distribution: an ensemble forecasts the median of its members' points "
                "(train them with --loss mse or mae)"
            )
    norm_a, norm_b = Scaling.from_dict(a["norm"]), Scaling.from_dict(b["norm"])
    for what, key, pairs in (
        ("columns", "data", [(f, a["data"].get(f), b["data"].get(f)) for f in DATA_FIELDS]),
        ("transforms", "norm", [("lags", norm_a.diff.lags, norm_b.diff.lags), ("log", norm_a.diff.log, norm_b.diff.log),
                                ("scale", norm_a.scale, norm_b.scale), ("window", norm_a.window, norm_b.window),
                                ("lag", norm_a.lag, norm_b.lag)]),
        ("architecture and loss", "model", [(f, getattr(model_a, f), getattr(model_b, f)) for f in ARCHITECTURE]),
    ):  # fmt: skip
        for field, va, vb in pairs:
            if va != vb:
                short = max(len(repr(va)), len(repr(vb))) <= 60  # else named, not shown cut mid-word
                said = f"is {vb!r}, {name_a}'s {va!r}" if short else f"differs from {name_a}'s"
                raise SeqtoolError(f"{name_b}: {key}.{field} {said}: members of an ensemble share their {what}")
    for stat in STATS:
        if not np.array_equal(getattr(norm_a, stat), getattr(norm_b, stat)):
            raise SeqtoolError(
                f"{name_b} standardises its data otherwise than {name_a} (norm.{stat}): members of an ensemble are "
                "trained on the same training split (the same table, with --val 0 or the same --seed)"
            )
