"""The training loop: optimizer steps on the run's batches, an evaluation (a log row) every
EVAL_EVERY steps, the schedule, early stopping, and the saves on the way (`resume.save`).
Signals end a run after the step they came in, with a resumable checkpoint."""

from __future__ import annotations

import math
import signal
import sys
import time
from typing import TYPE_CHECKING

import numpy as np
import torch

from seqtool.config import TrainConfig
from seqtool.data.examples import Rows
from seqtool.errors import Interrupted, RunFailed, SeqtoolError, on_signals
from seqtool.limits import LIMITS
from seqtool.model.network import detach, over_series
from seqtool.training.report import Progress, TrainResult, against_naive, result_of, summary
from seqtool.training.resume import save, snapshot
from seqtool.training.state import EMPTY_ACC

if TYPE_CHECKING:
    from seqtool.training.run import Run

DEFAULT_STEPS = 2000


EVAL_EVERY = 25  # steps between evaluations (a row of the log)


DIVERGED = 1e6  # a loss this large on standardised data (1 = always predicting the mean) has diverged


def fit(run: Run) -> TrainResult:
    """The loop, then the final save. SIGINT or SIGTERM at any moment (the final save
    included) ends with exit 130 and a usable checkpoint; see `Run._signalled`."""
    if run.done and run.step >= run.total:
        return result_of(run, "already done")
    with on_signals(run._signalled):
        stopped = _loop(run)
        save(run, done=True)
    if run.signals:  # it came after the last step: the finished run is saved
        raise Interrupted(f"{_name(run.signals[0])} as the run ended: the finished run is saved to {run.out}")
    result = result_of(run, stopped)
    if not run.quiet:
        for line in [*against_naive(run), summary(run, result)]:
            print(line, file=sys.stderr)
    return result


def _loop(run: Run) -> str:
    """Optimizer steps to the end of the run: "done", or "early stop"."""
    if run.config.patience and run.best.bad >= run.config.patience:  # saved as it met its patience
        return "early stop"
    progress = Progress(run.total, run.quiet)
    start, last_save = time.perf_counter() - run.seconds, time.perf_counter()
    try:
        run.model.train()
        while run.step < run.total:
            _step(run, *run.source.batch(run.step))
            run.seconds = time.perf_counter() - start
            if run.step % EVAL_EVERY == 0 or run.step == run.total:
                progress.update(run.step, _evaluate(run))
                if run.config.patience and run.best.bad >= run.config.patience:
                    return "early stop"
                run.good = snapshot(run)
                if time.perf_counter() - last_save > run.config.save_every:
                    save(run, state=run.good)
                    last_save = time.perf_counter()
            if run.stop:
                save(run)
                raise Interrupted(f"{_name(run.stop)} at step {run.step} of {run.total}: {_resumable(run)}")
    finally:
        progress.close()
    return "done"


def _resumable(run: Run) -> str:
    return f"saved a resumable checkpoint to {run.out}; continue with: seqtool train DATA --resume -o {run.out}"


def _step(run: Run, x, y, t0: int) -> None:
    """One optimizer step on a batch that starts at step t0 of its streams."""
    c = run.config
    if t0 == 0:
        run.carry = run.source.start(run.step, run.carry, run.model.initial)
    out, state = run.net(x, run.source.own(run.carry))
    if c.burn_in > t0:  # the first burn_in steps after a zero state are not scored
        y = y.clone()
        y[:, : c.burn_in - t0] = math.nan
    loss, count = run.model.head.loss(out, y)
    total, n, run.stop = run.world.agree(loss.item() * int(count), int(count), run.signals[0] if run.signals else 0)
    if run.world.size > 1:  # DDP averages the ranks' gradients: this makes it the whole batch's mean's
        loss = loss * (max(int(count), 1) * run.world.size / max(n, 1))
    run.opt.zero_grad(set_to_none=True)
    loss.backward()
    grad = float(torch.nn.utils.clip_grad_norm_(run.model.parameters(), c.clip if c.clip > 0 else math.inf))
    value = total / max(n, 1)
    if not (math.isfinite(value) and math.isfinite(grad)) or value > DIVERGED:
        _diverged(run, value, grad)
    if n > 0:  # a batch without targets teaches nothing, and is not in the averages
        run.opt.step()
        for key, amount in (("loss", total), ("n", n), ("grad", grad), ("steps", 1)):
            run.acc[key] += amount
    run.acc["clipped"] += int(c.clip > 0 and grad > c.clip)
    run.carry = run.source.whole(detach(state)) if c.stateful else None
    run.schedule.after_step()
    run.step += 1


def _evaluate(run: Run) -> dict:
    """A row of the log: the sums since the last row, the validation loss, the best
    weights so far, the plateau schedule."""
    acc, val_rows = run.acc, run.data.val
    val = run.world.same(_val_loss(run.model, val_rows)) if val_rows is not None else math.nan
    train_loss = acc["loss"] / acc["n"] if acc["n"] else math.nan  # NaN: no target since the last row
    watched = val if val_rows is not None else train_loss
    run.schedule.after_evaluation(watched)
    if val_rows is not None:
        run.best.update(val, run.step, run.model)
    row = {
        "epoch": run.step / run.source.per_epoch, "step": run.step, "train_loss": train_loss,
        "val_loss": val, "lr": run.opt.param_groups[0]["lr"],
        "grad_norm": acc["grad"] / acc["steps"] if acc["steps"] else math.nan,
        "clipped": acc["clipped"], "seconds": run.seconds,
    }  # fmt: skip
    run.history.append(row)
    run.acc = dict(EMPTY_ACC)
    if run.log is not None:
        _log(run, row)
    return row


def _log(run: Run, row: dict) -> None:
    """A log that can no longer be written (a full disk, a closed pipe, a removed folder)
    ends the run as a signal does: saved first, so that nothing trained is lost."""
    try:
        run.log(row)
    except SeqtoolError as e:
        try:
            save(run)
        except SeqtoolError as unsaved:
            raise RunFailed(f"{e}; the run could not be saved either: {unsaved}") from e
        raise RunFailed(f"{e}; {_resumable(run)}") from e


def total_steps(config: TrainConfig, per_epoch: int) -> int:
    if config.steps is not None:
        return int(config.steps)
    if config.epochs is None:
        return DEFAULT_STEPS
    total = max(1, math.ceil(config.epochs * per_epoch))
    if total > LIMITS["steps"].hi:
        raise SeqtoolError(f"--epochs {config.epochs:g} is {total:,} steps; at most {LIMITS['steps'].hi:,} are run")
    return total


class Schedule:
    """The learning rate over the run: cosine annealing to lr/100, stepped after every
    optimizer step; or halved on a plateau of the watched loss, stepped after every
    evaluation; or constant."""

    def __init__(self, opt, config: TrainConfig, total: int):
        self.kind, self.torch = config.schedule, None
        if self.kind == "cosine":
            self.torch = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=total, eta_min=config.lr / 100)
        elif self.kind == "plateau":
            self.torch = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, factor=0.5, patience=5)

    def after_step(self) -> None:
        if self.kind == "cosine":
            self.torch.step()

    def after_evaluation(self, watched: float) -> None:
        if self.kind == "plateau" and not math.isnan(watched):
            self.torch.step(watched)

    def state_dict(self) -> dict:
        return self.torch.state_dict() if self.torch is not None else {}

    def load_state_dict(self, state: dict) -> None:
        if self.torch is not None:
            self.torch.load_state_dict(state)


def _val_loss(model, val: Rows) -> float:
    """The head's loss, teacher-forced over whole held-out series, state carried (what
    `predict` does); for --scale window, over every window of the held-out series, each
    from a zero state, on its own level (what its forecasts do)."""
    model.eval()
    if val.levels is not None:
        total, count = _windows_loss(model, val, val.levels.scaling.window)
    else:
        out, _ = over_series(model, val.x, val.lengths.cpu().numpy())
        total, count = model.head.loss(out, val.y)
        total = float(total) * int(count)
    model.train()
    return total / int(count) if count else math.nan


def _windows_loss(model, val: Rows, window: int, batch: int = 4096) -> tuple[float, int]:
    """The head's summed loss over every window of `window` rows of the rows `val` whose last
    row has a target (a long series' tail alone, with one series), and its count."""
    lengths = val.lengths.cpu().numpy()
    first = np.concatenate([s + np.arange(max(n - window + 1, 0)) for s, n in zip(val.starts, lengths)])
    first = first[val.targets_in(first + window - 1, first + window) > 0]
    total, count = 0.0, 0
    with torch.no_grad():
        for k in range(0, len(first), batch):
            index = torch.from_numpy(first[k : k + batch, None] + np.arange(window)).to(val.device)
            x, y = val.take(index)
            loss, n = model.head.loss(model(x)[0], y)
            total, count = total + float(loss) * int(n), count + int(n)
    return total, count


def _diverged(run: Run, loss: float, grad: float) -> None:
    """Stop with exit 1; keep the last good state, and never replace a file with step 0."""
    if run.good.step > 0:
        save(run, state=run.good)
        kept = f"the last good state (step {run.good.step}) is kept in {run.out}"
    else:
        kept = "nothing was saved"
    raise RunFailed(
        f"training diverged at step {run.step + 1}: loss {loss:.3g} (1 = predicting the mean), "
        f"gradient norm {grad:.3g}; try --clip 1 or a lower --lr (now {run.config.lr:g}); {kept}"
    )


def _name(signum: int) -> str:
    return signal.Signals(signum).name


def param_groups(model, source, lr: float) -> list[dict]:
    """The weights at `lr`; a learned start at lr x sqrt(k): only the first chunk of a
    stream, one step in k, reaches it, so it moves about 1/k as far as a weight reached
    every step. sqrt(k) is a measured compromise, not a derivation: on one cut integrator
    series (k = 63), x8 took the first 150 steps' MAE from 0.02-0.08 to 0.004-0.007 (x10 and
    x30 alike); moving it as far as the weights (x k) would make its steps 63 times theirs."""
    weights = [p for name, p in model.named_parameters() if name != "start"]
    start = [] if model.start is None else [{"params": [model.start], "lr": lr * math.sqrt(source.chunks)}]
    return [{"params": weights}, *start]


def optimizer_for(name: str, params, lr: float):
    """Adam (fused where this torch has it: one kernel per step instead of one per tensor),
    or plain SGD with momentum 0.9, under which exploding gradients show and clipping cures."""
    params = list(params)
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=0.9)
    try:
        return torch.optim.Adam(params, lr=lr, fused=True)
    except (RuntimeError, TypeError, ValueError):
        return torch.optim.Adam(params, lr=lr)
