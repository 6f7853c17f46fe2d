"""`seqtool ensemble`: checkpoints of one model joined into one ensemble (`model.members`),
their weights side by side, forecasting their median as `train --ensemble` does. The
members must read and scale the data alike: the same columns, transforms and
standardisation (trained on the same table with `--val 0`, say, and different seeds)."""

from __future__ import annotations

from pathlib import Path

import torch

from seqtool import outputs
from seqtool.config import ModelConfig
from seqtool.errors import SeqtoolError
from seqtool.limits import LIMITS
from seqtool.model.checkpoint import check_checkpoint_path, load_checkpoint, save_checkpoint
from seqtool.model.network import joined_weights, member_weights


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


def _check_alike(name_a: str, a: dict, name_b: str, b: dict) -> None:
    """Refuse two checkpoints that cannot be members of one ensemble, in one line."""
    if a["model"].get("loss", "mse") != "mse" or b["model"].get("loss", "mse") != "mse":
        raise SeqtoolError(
            f"{name_a if a['model'].get('loss', 'mse') != 'mse' else name_b} models a distribution: an ensemble "
            "forecasts the median of its members' points (train them with --loss mse)"
        )
    for what, key, fields in (
        ("columns", "data", ("x_names", "y_names", "task", "time")),
        ("transforms", "norm", ("lags", "log", "scale")),
        ("architecture", "model", ("cell", "hidden", "layers", "n_in", "n_out", "horizon", "learned_start")),
    ):
        for field in fields:
            va, vb = a[key].get(field), b[key].get(field)
            if va != vb and not (field in ("horizon",) and {va, vb} <= {None, 1}):
                raise SeqtoolError(
                    f"{name_b}: {key}.{field} is {vb!r}, {name_a}'s {va!r}: members of an ensemble share their {what}"
                )
    for stat in ("x_mean", "x_std", "y_mean", "y_std"):
        if not torch.equal(torch.as_tensor(a["norm"][stat]), torch.as_tensor(b["norm"][stat])):
            raise SeqtoolError(
                f"{name_b} standardises its data otherwise than {name_a} (norm.{stat}): members of an ensemble are "
                "trained on the same training split (the same table, with --val 0 or the same --seed)"
            )
