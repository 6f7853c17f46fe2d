"""The run's checkpoint: its state taken (`snapshot`), saved (`save`, rank 0 alone) and
restored (`restore`) by --resume, so that a run stopped and resumed ends with the weights
of one that ran through."""

from __future__ import annotations

import contextlib
import copy
import warnings
from dataclasses import asdict, replace
from typing import TYPE_CHECKING

import torch

from seqtool.model.checkpoint import Damaged, save_checkpoint
from seqtool.model.network import map_state, parts
from seqtool.training.state import Best, RunState

if TYPE_CHECKING:
    from seqtool.training.run import Run


def snapshot(run: Run) -> RunState:
    """Everything --resume needs, as plain types and tensors (copied: training goes on)."""
    best = run.best
    return copy.deepcopy(
        RunState(
            step=run.step, seconds=run.seconds, best_step=best.step, bad_evals=best.bad,
            history_len=len(run.history), threads=torch.get_num_threads(), best_val=best.val,
            fingerprint=run.data.fingerprint, acc=dict(run.acc), optimizer=run.opt.state_dict(),
            scheduler=run.schedule.state_dict(), weights=run.model.state_dict(),
            best_weights=best.weights, carry=run.carry, torch_rng=torch.get_rng_state(),
        )
    )  # fmt: skip


def restore(run: Run, previous: dict) -> None:
    """The training state of a checkpoint (checked by `state.check_resume`); the optimizer,
    scheduler and RNG states are checked by loading them."""
    state, damaged = RunState.from_dict(previous["resume"]), Damaged(str(run.out))
    run.model.load_state_dict(state.weights)
    loads = [
        ("optimizer", lambda: _load_optimizer(run.opt, state.optimizer)),
        ("scheduler", lambda: run.schedule.load_state_dict(state.scheduler)),
        ("torch_rng", lambda: torch.set_rng_state(state.torch_rng)),
    ]
    for name, load in loads:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                load()
        except (KeyError, TypeError, ValueError, RuntimeError, IndexError, AttributeError) as e:
            damaged(f"resume.{name} ({' '.join(str(e).split())[:120] or type(e).__name__})")
    device = run.data.rows.device
    run.step, run.seconds, run.done = state.step, state.seconds, state.done
    run.carry = map_state(lambda s: s.to(device), state.carry)
    run.best = Best(state.best_val, state.best_step, state.best_weights, state.bad_evals)
    run.acc = state.acc
    run.history = list(previous["history"])[: state.history_len]
    if run.step > run.total:
        damaged(f"resume.step {run.step} is past the end of the run ({run.total} steps)")
    if run.carry is not None and run.step > 0:  # the streams of its last step: this run's own?
        held, streams = (
            parts(run.carry)[0].shape[1],
            len(getattr(run.source, "inner", run.source).batch(run.step - 1)[0]),
        )
        if held != streams:
            damaged(
                f"resume.carry holds the state of {held} streams, where this run reads {streams} "
                "(a checkpoint of format 1 may come from a seqtool that cut long series otherwise); train anew"
            )


def _load_optimizer(opt, saved: dict) -> None:
    """torch loads an optimizer state whose buffers do not fit the parameters, and fails
    at the next step: check every buffer against its parameter."""
    opt.load_state_dict(saved)
    for group in opt.param_groups:
        for param in group["params"]:
            for key, buffer in opt.state.get(param, {}).items():
                if isinstance(buffer, torch.Tensor) and buffer.dim() > 0 and buffer.shape != param.shape:
                    raise ValueError(f"{key} is {tuple(buffer.shape)} for a parameter of {tuple(param.shape)}")
                if isinstance(buffer, torch.Tensor) and not torch.isfinite(buffer).all():
                    raise ValueError(f"{key} holds values that are not finite")


def save(run: Run, done: bool = False, state: RunState | None = None) -> None:
    """Write the checkpoint: rank 0 alone (every rank holds the same state)."""
    if not run.world.main:
        return
    state = state if state is not None else snapshot(run)
    weights = state.best_weights if state.best_weights is not None else state.weights
    with contextlib.suppress(OSError):  # the folder may have been removed while we trained: put it back
        run.out.parent.mkdir(parents=True, exist_ok=True)
    save_checkpoint(
        {
            "model": run.model_config.to_dict(),
            "data": run.data.info,
            "norm": run.data.scaling.to_dict(),
            "weights": weights,
            "train": asdict(run.config),
            "resume": replace(state, done=done).to_dict(),
            "history": run.history[: state.history_len],
        },
        run.out,
    )
