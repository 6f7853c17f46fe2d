"""What `--resume` continues from: the checkpoint's `resume` section (docs/formats.md,
Checkpoints), declared once. A field of `RunState` is saved, loaded and checked with the
others: a field of a plain kind (int, float, str, dict) is checked by its kind; one that
needs more names its check in the field's metadata."""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields
from typing import Any

import torch

from seqtool.config import ModelConfig, TrainConfig, members
from seqtool.errors import SeqtoolError
from seqtool.model.checkpoint import Damaged, check_weights, first_line
from seqtool.model.network import SeqModel

LOG_COLUMNS = ("epoch", "step", "train_loss", "val_loss", "lr", "grad_norm", "clipped", "seconds")
# sums since the last evaluation: squared errors and targets, gradient norms over the steps
# that had targets, clipped steps
EMPTY_ACC = {"loss": 0.0, "n": 0, "grad": 0.0, "steps": 0, "clipped": 0}
_KINDS = {"int": int, "float": float, "str": str, "dict": dict}


def _threads(state: dict, ckpt: dict, damaged: Damaged) -> None:
    if not 1 <= state["threads"] <= 1024:
        damaged(f"resume.threads is {state['threads']}, expected a whole number in [1, 1024]")


def _acc(state: dict, ckpt: dict, damaged: Damaged) -> None:
    """The sums: format 1 may lack `steps`."""
    sums = state["acc"]
    for key in ("loss", "n", "grad", "clipped", *(("steps",) if ckpt["version"] >= 2 or "steps" in sums else ())):
        if not isinstance(sums.get(key), (int, float)) or not 0 <= sums[key] < math.inf:
            damaged(f"resume.acc.{key} is {sums.get(key)!r:.60}, expected a non-negative number")
    if set(sums) - set(EMPTY_ACC):
        damaged(f"resume.acc has unknown fields {sorted(set(sums) - set(EMPTY_ACC))}")


def _weights(key: str, optional: bool = False):
    def check(state: dict, ckpt: dict, damaged: Damaged) -> None:
        if not (optional and state.get(key) is None):
            check_weights(state.get(key), SeqModel(ModelConfig(**ckpt["model"])), damaged, f"resume.{key}")

    return check


def _carry(state: dict, ckpt: dict, damaged: Damaged) -> None:
    """None, or finite [layers, streams, hidden] tensors (a pair for an LSTM)."""
    carry, model = state.get("carry"), ckpt["model"]
    if carry is None:
        return
    parts = carry if isinstance(carry, tuple) else (carry,)
    layers, hidden = model["layers"], model["hidden"]
    for part in parts:
        if (not isinstance(part, torch.Tensor) or part.dim() != 3 or part.shape[0] != layers
                or part.shape[2] != hidden or not torch.isfinite(part).all()):  # fmt: skip
            damaged(f"resume.carry should be finite [layers {layers}, streams, hidden {hidden}] tensors")
    if len(parts) != (2 if model["cell"] == "lstm" else 1):
        damaged(f"resume.carry should be {'a pair of tensors' if model['cell'] == 'lstm' else 'one tensor'}")


def _checked(check) -> Any:
    """A field that must be present (it may be None) and passes `check`."""
    return field(default=None, metadata={"check": check, "present": True})


@dataclass
class RunState:
    """A run's state after an optimizer step: the weights, the optimizer and schedule, the
    step and time, the carried state, the best weights so far, the sums since the last
    log row, and what makes a resume exact (RNG, threads, the data's fingerprint)."""

    step: int = 0
    seconds: float = 0.0
    best_step: int = 0
    bad_evals: int = 0
    history_len: int = 0
    threads: int = field(default=1, metadata={"check": _threads})
    best_val: float = math.inf
    fingerprint: str = ""
    acc: dict = field(default_factory=lambda: dict(EMPTY_ACC), metadata={"check": _acc})
    optimizer: dict = field(default_factory=dict)
    scheduler: dict = field(default_factory=dict)
    weights: Any = _checked(_weights("weights"))
    best_weights: Any = _checked(_weights("best_weights", optional=True))
    carry: Any = _checked(_carry)
    torch_rng: Any = field(default=None, metadata={"present": True})  # checked by loading it
    done: bool = False

    def to_dict(self) -> dict:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def from_dict(cls, state: dict) -> RunState:
        """A checked `resume` section (`check`) as a state; format 1's sums lack `steps`."""
        state = {**state, "acc": {**EMPTY_ACC, "steps": state["acc"]["n"], **state["acc"]}}
        return cls(**{f.name: state[f.name] for f in fields(cls) if f.name in state})

    @classmethod
    def check(cls, state, ckpt: dict, damaged: Damaged) -> None:
        """Each field of its kind, then each field's presence and own check, in the order
        declared; only `done` may be missing (read as false)."""
        if not isinstance(state, dict):
            damaged("resume is not a dict")
        for f in fields(cls):
            kind = _KINDS.get(f.type if isinstance(f.type, str) else f.type.__name__)
            value = state.get(f.name)
            if kind is None:
                continue
            ok = isinstance(value, kind) and not isinstance(value, bool)
            if not ok or (kind in (int, float) and not value >= 0) or (kind is int and value > 10**15):
                sign = "non-negative " if kind in (int, float) else ""
                damaged(f"resume.{f.name} is {value!r:.60}, expected a {sign}{kind.__name__}")
        for f in fields(cls):
            if f.metadata.get("present") and f.name not in state:
                damaged(f"resume.{f.name} is missing")
            if "check" in f.metadata:
                f.metadata["check"](state, ckpt, damaged)


@dataclass
class Best:
    """The best validation loss so far, the step and weights it came with, and the
    evaluations since without a better one (early stopping counts them)."""

    val: float = math.inf
    step: int = 0
    weights: dict | None = None
    bad: int = 0

    def update(self, val: float, step: int, model) -> None:
        if val < self.val:
            self.val, self.step, self.bad, self.weights = (
                val,
                step,
                0,
                {k: v.detach().clone() for k, v in model.state_dict().items()},
            )
        else:
            self.bad += 1


def check_resume(ckpt: dict, name: str) -> None:
    """What --resume uses besides the model, field by field: the settings, the training
    state and the history. The optimizer, scheduler and RNG states are checked where they
    are loaded (`resume.restore`)."""
    damaged = Damaged(name)
    if "resume" not in ckpt or "train" not in ckpt:
        raise SeqtoolError(f"{name}: this checkpoint holds no training state to resume")
    settings, state, history = ckpt["train"], ckpt["resume"], ckpt.get("history")
    if not isinstance(settings, dict):
        damaged("train is not a dict of settings")
    try:
        config = TrainConfig(**settings)
        config.check()
    except TypeError as e:
        damaged(f"train ({first_line(e)})")
    except SeqtoolError as e:
        damaged(f"train: {e}")
    networks, held = len(members(config)), ckpt["model"].get("members", 1)
    if networks != held:
        damaged(f"train.ensemble and train.part make {networks} networks, model.members {held}")
    RunState.check(state, ckpt, damaged)
    if not isinstance(history, list) or len(history) < state["history_len"]:
        damaged("history is not the list of log rows the training state refers to")
    for row in history:
        if not isinstance(row, dict) or any(not isinstance(row.get(k), (int, float)) for k in LOG_COLUMNS):
            damaged(f"history row {row!r:.80} lacks one of {', '.join(LOG_COLUMNS)}")
