"""The training loop: windows or carried state, Adam, clipping, schedules, early stopping,
atomic checkpoints, exact resume.

Two ways to cut the data into mini-batches:

- windows (default): windows of `window` consecutive steps, every `stride` steps, from
  every series, shuffled into batches. Each window starts from a zero state.
- stateful (truncated BPTT): each series is a stream, read from its first step in
  consecutive chunks of `window` steps, `batch` streams side by side. The hidden state
  at the end of a chunk is carried, as values, into the next chunk of the same stream;
  the gradient is not: backpropagation stops at the chunk boundary. The state is reset
  to zero where a stream starts.

The run is a fixed number of optimizer steps (`steps`, or `epochs` passes over the
data). Every step's batch is a function of (seed, step), so a run that is stopped and
resumed from its checkpoint ends with the same weights as one that ran through.
"""

from __future__ import annotations

import copy
import hashlib
import math
import signal
import sys
import time
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from . import outputs
from .checkpoint import check_checkpoint_path, check_resume, load_checkpoint, save_checkpoint
from .dataset import NEXT_STEP, Norm, Rows, inputs_and_targets, split, task_of
from .errors import Interrupted, RunFailed, SeqtoolError, Stopped, on_signals
from .limits import LIMITS, check_all, fits_in_memory
from .outputs import writer_lock
from .tables import TABLE_FORMATS, SeriesTable, Table, read_series, write_table

SCHEDULES = ("cosine", "plateau", "none")
OPTIMIZERS = ("adam", "sgd")
DEFAULT_OUT = "model.pt"
DEFAULT_STEPS = 2000
DIVERGED = 1e6  # a loss this large on standardised data (1 = always predicting the mean) has diverged
LOG_COLUMNS = ("epoch", "step", "train_loss", "val_loss", "lr", "grad_norm", "clipped", "seconds")
# sums since the last evaluation: squared errors and targets, gradient norms over the steps
# that had targets, clipped steps
EMPTY_ACC = {"loss": 0.0, "n": 0, "grad": 0.0, "steps": 0, "clipped": 0}


@dataclass
class TrainConfig:
    """Every setting of a run; stored in the checkpoint and reused by --resume."""

    cell: str = "lstm"
    hidden: int = 32
    layers: int = 1
    dropout: float = 0.0
    lr: float = 1e-2
    optimizer: str = "adam"
    batch: int = 32
    window: int = 50
    stride: int = 1
    steps: int | None = None
    epochs: float | None = None
    clip: float = 0.0
    schedule: str = "cosine"
    val: float = 0.1
    patience: int = 0
    stateful: bool = False
    burn_in: int = 4
    seed: int = 0
    x: str | None = None
    y: str | None = None
    save_every: float = 30.0

    def check(self) -> None:
        """Every setting within its bounds (limits.py) and consistent with the others."""
        from .models import CELLS

        for name, value, choices in (("cell", self.cell, CELLS), ("optimizer", self.optimizer, OPTIMIZERS),
                                     ("schedule", self.schedule, SCHEDULES)):  # fmt: skip
            if value not in choices:
                raise SeqtoolError(f"--{name} must be one of {', '.join(choices)}, got {value!r}")
        check_all(
            hidden=self.hidden, layers=self.layers, dropout=self.dropout, lr=self.lr, batch=self.batch,
            window=self.window, stride=self.stride, steps=self.steps, epochs=self.epochs, clip=self.clip,
            val=self.val, patience=self.patience, burn_in=self.burn_in, seed=self.seed,
        )  # fmt: skip
        if not isinstance(self.stateful, bool):
            raise SeqtoolError(f"stateful must be true or false, got {self.stateful!r}")
        if not (isinstance(self.save_every, (int, float)) and 0 <= self.save_every < math.inf):
            raise SeqtoolError(f"save_every must be a number of seconds, got {self.save_every!r}")
        for name in ("x", "y"):
            if getattr(self, name) is not None and not isinstance(getattr(self, name), str):
                raise SeqtoolError(f"--{name} must be column names, got {getattr(self, name)!r}")
        if self.steps is not None and self.epochs is not None:
            raise SeqtoolError("give --steps or --epochs, not both")
        if not self.stateful and self.burn_in >= self.window:
            raise SeqtoolError(
                f"--window {self.window} is not longer than --burn-in {self.burn_in}: every step of "
                f"every window would be left out of the loss; use a longer --window or a smaller --burn-in"
            )

    def memory(self) -> float:
        """Bytes a step needs, about (before the data is read: one input, one output):
        weights, gradients, Adam's moments and the copies kept for the best state and the
        checkpoint, plus the activations of a batch kept for backpropagation."""
        gates = {"rnn": 1, "lstm": 4, "gru": 3}.get(self.cell, 4)
        params = self.layers * gates * self.hidden * (2 * self.hidden + 2) + self.hidden
        activations = self.batch * self.window * self.layers * self.hidden * (gates + 2)
        return 4.0 * (10 * params + 3 * activations)


@dataclass
class TrainResult:
    path: Path
    steps: int
    seconds: float
    train_loss: float
    val_loss: float
    best_step: int
    stopped: str  # "done", "early stop", "already done"


def train(
    data: str | Path | SeriesTable | Table | None = None,
    out: str | Path = DEFAULT_OUT,
    config: TrainConfig | None = None,
    *,
    resume: bool = False,
    log: str | Path | None = None,
    quiet: bool = False,
    device: str = "auto",
    threads: int | None = None,
) -> TrainResult:
    """`seqtool train`: fit a model to a series table and write its checkpoint to `out`.

    Everything that can be checked is checked before the data is read: the settings, the
    output paths, the device, the memory a step needs; then, with the data, that some step
    has a target to learn. One writer per checkpoint: a second run aiming at `out` while
    this one runs is refused.
    """
    import torch

    check_all(threads=threads)
    dev = _device(device)
    if not resume:
        config = config or TrainConfig()
        _check_config(config, dev)
    check_checkpoint_path(out)
    outputs.check([(out, None, "checkpoint"), (log, TABLE_FORMATS, "table")], inputs=[data])
    with writer_lock(out):
        previous = None
        if resume:
            previous = load_checkpoint(out)
            check_resume(previous, str(out))
            config = TrainConfig(**previous["train"])
            _check_config(config, dev)
            threads = threads or previous["resume"]["threads"]  # same threads, same sums
        if threads:
            torch.set_num_threads(threads)
        table = read_series(data, config.x, config.y)
        run = _Run(table, Path(out), config, previous, dev, quiet)
        try:
            with warnings.catch_warnings():  # a batch without targets skips opt.step(): torch
                warnings.filterwarnings("ignore", message=r"Detected call of `lr_scheduler.step\(\)`")
                result = run.fit()  # would warn that the schedule stepped before the optimizer
        finally:
            if log is not None:
                write_table(history_table(run.history), log)
    return result


def _check_config(config: TrainConfig, device) -> None:
    config.check()
    if device.type == "cpu":
        what = f"training with --hidden {config.hidden} --layers {config.layers} --batch {config.batch} --window {config.window}"
        fits_in_memory(config.memory(), what)


def history_table(history: list[dict]) -> Table:
    """The `train --log` table: one row per evaluation (DESIGN.md section 2)."""
    return Table({n: np.array([float(row[n]) for row in history]) for n in LOG_COLUMNS}, "log")


def _device(name: str):
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name not in ("cpu", "cuda"):
        raise SeqtoolError(f"--device must be auto, cpu or cuda, got {name!r}")
    if name == "cuda" and not torch.cuda.is_available():
        raise SeqtoolError("--device cuda: no CUDA device is available here")
    return torch.device(name)


def _fingerprint(xs: list[np.ndarray], ys: list[np.ndarray]) -> str:
    digest = hashlib.sha256()
    for a in xs + ys:
        digest.update(np.ascontiguousarray(a, dtype=np.float64).tobytes())
    return digest.hexdigest()[:16]


class _Run:
    """One training run: data, model, optimizer and the loop, with what --resume needs."""

    def __init__(self, table, out: Path, config: TrainConfig, previous, device, quiet: bool):
        import torch

        from .models import ModelConfig, SeqModel

        self.config, self.out, self.device, self.quiet = config, out, device, quiet
        self.task = task_of(table)
        xs, ys = inputs_and_targets(table, self.task)
        self.fingerprint = _fingerprint(xs, ys)
        if previous is not None and previous["resume"].get("fingerprint") != self.fingerprint:
            raise SeqtoolError(f"{out}: the data differs from the data this run was trained on")
        (train_x, train_y), (val_x, val_y) = split(xs, ys, config.val, config.seed)
        _has_targets(train_y, table, "training")
        self.norm = Norm.fit(train_x, train_y, self.task, table.x_names, table.y_names, table.source)
        self.rows = Rows.of(train_x, train_y, self.norm, table.x_names, table.source).to(device)
        self.lengths = self.rows.lengths.cpu()
        self.val = None
        if val_x:
            vy = [y.copy() for y in val_y]
            for y in vy:
                y[: config.burn_in] = np.nan  # scored like training: no loss during burn-in
            _has_targets(vy, table, "validation", config.burn_in)
            self.val = Rows.of(val_x, vy, self.norm, table.x_names, table.source).to(device)
        self.data_info = {
            "x_names": table.x_names,
            "y_names": table.y_names or [],
            "task": self.task,
            "source": table.source,
        }
        self._plan_batches()

        torch.manual_seed(config.seed)
        n_out = len(table.x_names) if self.task == NEXT_STEP else len(table.y_names)
        self.model_config = ModelConfig(
            n_in=len(table.x_names), n_out=n_out, cell=config.cell,
            hidden=config.hidden, layers=config.layers, dropout=config.dropout,
        )  # fmt: skip
        self.model = SeqModel(self.model_config).to(device)
        self.opt = _optimizer(config.optimizer, self.model.parameters(), config.lr)
        self.sched = self._scheduler()
        self.step, self.carry, self.seconds = 0, None, 0.0
        self.best = {"val": math.inf, "step": 0, "weights": None, "bad": 0}
        self.acc = dict(EMPTY_ACC)
        self.history: list[dict] = []
        self.signals: list[int] = []
        if previous is not None:
            self._restore(previous)
        self.good = self._snapshot()

    # --- data ---------------------------------------------------------------------

    def _plan_batches(self) -> None:
        """How many steps make an epoch, and the total; the batches themselves come from
        `_batch`. A plan in which no step has a target to learn is refused here."""
        import torch

        c = self.config
        lengths = self.lengths.numpy()
        scored = np.concatenate([[0], np.cumsum(~torch.isnan(self.rows.y.cpu()).all(dim=1).numpy())])
        offsets = self.rows.offsets.cpu().numpy()
        if c.stateful:
            self.chunks = math.ceil(int(lengths.max()) / c.window)
            self.groups = math.ceil(len(lengths) / c.batch)
            self.per_epoch = self.groups * self.chunks
            self.n_windows = len(lengths)
            learnable = scored[offsets[1:]] - scored[np.minimum(offsets[:-1] + c.burn_in, offsets[1:])]
        else:
            series, starts = [], []
            for i, n in enumerate(lengths.tolist()):
                if n < c.window:
                    continue
                s = list(range(0, n - c.window + 1, c.stride))
                if s[-1] != n - c.window:
                    s.append(n - c.window)
                series += [i] * len(s)
                starts += s
            if not series:
                raise SeqtoolError(
                    f"every training series is shorter than --window {c.window} "
                    f"(longest: {int(lengths.max())} steps); use a smaller --window"
                )
            self.win_series, self.win_starts = torch.tensor(series), torch.tensor(starts)
            self.n_windows = len(series)
            self.per_epoch = math.ceil(self.n_windows / c.batch)
            first = offsets[self.win_series.numpy()] + self.win_starts.numpy()
            learnable = scored[first + c.window] - scored[first + c.burn_in]
        if not learnable.any():
            where = "stream" if c.stateful else f"window of {c.window} steps"
            raise SeqtoolError(
                f"no {where} has a target after its first {c.burn_in} steps (--burn-in), so "
                f"nothing can be learned; use a smaller --burn-in"
                + ("" if c.stateful else " or a longer --window")
            )
        if c.steps is not None:
            self.total = int(c.steps)
        elif c.epochs is not None:
            self.total = max(1, math.ceil(c.epochs * self.per_epoch))
            if self.total > LIMITS["steps"].hi:
                raise SeqtoolError(
                    f"--epochs {c.epochs:g} is {self.total:,} steps; at most {LIMITS['steps'].hi:,} are run"
                )
        else:
            self.total = DEFAULT_STEPS
        self.eval_every = 25

    def _order(self, epoch: int, n: int):
        """The shuffled order of epoch `epoch`: a function of (seed, epoch) alone, cached."""
        import torch

        if getattr(self, "_cached", (None,))[0] != epoch:
            g = torch.Generator().manual_seed(self.config.seed * 1_000_003 + epoch)
            self._cached = (epoch, torch.randperm(n, generator=g))
        return self._cached[1]

    def _batch(self, step: int):
        """Inputs, targets, and the step of the stream the batch starts at (0: a zero state),
        for optimizer step `step`."""
        import torch

        c = self.config
        epoch, pos = divmod(step, self.per_epoch)
        if c.stateful:
            group, chunk = divmod(pos, self.chunks)
            members = self._order(epoch, len(self.lengths))[group * c.batch : (group + 1) * c.batch]
            starts = torch.full((len(members),), chunk * c.window)
            x, y = self.rows.window(members.to(self.device), starts.to(self.device), c.window)
            return x, y, chunk * c.window
        picks = self._order(epoch, self.n_windows)[pos * c.batch : (pos + 1) * c.batch]
        series, starts = self.win_series[picks], self.win_starts[picks]
        x, y = self.rows.window(series.to(self.device), starts.to(self.device), c.window)
        return x, y, 0

    # --- optimisation -------------------------------------------------------------

    def _scheduler(self):
        import torch

        c = self.config
        if c.schedule == "cosine":
            return torch.optim.lr_scheduler.CosineAnnealingLR(self.opt, T_max=self.total, eta_min=c.lr / 100)
        if c.schedule == "plateau":
            return torch.optim.lr_scheduler.ReduceLROnPlateau(self.opt, factor=0.5, patience=5)
        return None

    def fit(self) -> TrainResult:
        """The loop, then the final save. SIGINT or SIGTERM at any moment (the final save
        included) ends with exit 130 and a usable checkpoint; see `_signalled`."""
        if self.step >= self.total:
            return self._result("already done")
        with on_signals(self._signalled):
            stopped = self._loop()
            self._save(done=True)
        if self.signals:  # it came after the last step: the finished run is saved
            raise Interrupted(f"{_name(self.signals[0])} as the run ended: the finished run is saved to {self.out}")
        result = self._result(stopped)
        if not self.quiet:
            print(self._summary(result), file=sys.stderr)
        return result

    def _loop(self) -> str:
        """Optimizer steps to the end of the run: "done", or "early stop"."""
        import torch

        from .models import detach, masked_mse

        c, model = self.config, self.model
        progress = _Progress(self.total, self.quiet)
        start = time.perf_counter() - self.seconds
        last_save = time.perf_counter()
        try:
            model.train()
            while self.step < self.total:
                x, y, t0 = self._batch(self.step)
                if t0 == 0:
                    self.carry = None
                out, state = model(x, self.carry)
                if c.burn_in > t0:  # the first burn_in steps after a zero state are not scored
                    y = y.clone()
                    y[:, : c.burn_in - t0] = math.nan
                loss, count = masked_mse(out, y)
                self.opt.zero_grad(set_to_none=True)
                loss.backward()
                limit = c.clip if c.clip > 0 else math.inf
                grad = float(torch.nn.utils.clip_grad_norm_(model.parameters(), limit))
                value = loss.item()
                if not (math.isfinite(value) and math.isfinite(grad)) or value > DIVERGED:
                    self._diverged(value, grad)
                if count > 0:  # a batch without targets teaches nothing, and is not in the averages
                    self.opt.step()
                    for key, amount in (("loss", value * int(count)), ("n", int(count)), ("grad", grad), ("steps", 1)):
                        self.acc[key] += amount
                self.acc["clipped"] += int(c.clip > 0 and grad > c.clip)
                self.carry = detach(state) if c.stateful else None
                if self.sched is not None and c.schedule == "cosine":
                    self.sched.step()
                self.step += 1
                self.seconds = time.perf_counter() - start
                if self.step % self.eval_every == 0 or self.step == self.total:
                    row = self._evaluate()
                    progress.update(self.step, row)
                    if c.patience and self.best["bad"] >= c.patience:
                        return "early stop"
                    self.good = self._snapshot()
                    if time.perf_counter() - last_save > c.save_every:
                        self._save()
                        last_save = time.perf_counter()
                if self.signals:
                    self._save()
                    raise Interrupted(
                        f"{_name(self.signals[0])} at step {self.step} of {self.total}: saved a "
                        f"resumable checkpoint to {self.out}; continue with: "
                        f"seqtool train DATA --resume -o {self.out}"
                    )
        finally:
            progress.close()
        return "done"

    def _evaluate(self) -> dict:
        acc = self.acc
        val = self._val_loss() if self.val is not None else math.nan
        train_loss = acc["loss"] / acc["n"] if acc["n"] else math.nan  # NaN: no target since the last evaluation
        watched = val if self.val is not None else train_loss
        if self.sched is not None and self.config.schedule == "plateau" and not math.isnan(watched):
            self.sched.step(watched)
        if self.val is not None:
            if val < self.best["val"]:
                self.best.update(val=val, step=self.step, bad=0, weights=_clone(self.model.state_dict()))
            else:
                self.best["bad"] += 1
        row = {
            "epoch": self.step / self.per_epoch,
            "step": self.step,
            "train_loss": train_loss,
            "val_loss": val,
            "lr": self.opt.param_groups[0]["lr"],
            "grad_norm": acc["grad"] / acc["steps"] if acc["steps"] else math.nan,
            "clipped": acc["clipped"],
            "seconds": self.seconds,
        }
        self.history.append(row)
        self.acc = dict(EMPTY_ACC)
        return row

    def _val_loss(self) -> float:
        """Teacher-forced over whole held-out series, state carried (what `predict` does)."""
        import torch

        from .models import over_series

        self.model.eval()
        out, _ = over_series(self.model, self.val.x, self.val.lengths.cpu().numpy())
        self.model.train()
        y = self.val.y
        scored = ~torch.isnan(y)
        return float((out - torch.nan_to_num(y))[scored].pow(2).mean())

    # --- checkpoints --------------------------------------------------------------

    def _snapshot(self) -> dict:
        """Everything --resume needs, as plain types and tensors (copied: training goes on)."""
        import torch

        return copy.deepcopy(
            {
                "weights": self.model.state_dict(),
                "optimizer": self.opt.state_dict(),
                "scheduler": self.sched.state_dict() if self.sched is not None else {},
                "step": self.step,
                "seconds": self.seconds,
                "torch_rng": torch.get_rng_state(),
                "carry": self.carry,
                "best_val": self.best["val"],
                "best_step": self.best["step"],
                "best_weights": self.best["weights"],
                "bad_evals": self.best["bad"],
                "acc": dict(self.acc),
                "history_len": len(self.history),
                "fingerprint": self.fingerprint,
                "threads": torch.get_num_threads(),
            }
        )

    def _restore(self, previous: dict) -> None:
        """The training state of a checkpoint (checked by `check_resume`); the optimizer,
        scheduler and RNG states are checked by loading them."""
        import torch

        from .checkpoint import Damaged

        state, damaged = previous["resume"], Damaged(str(self.out))
        self.model.load_state_dict(state["weights"])
        parts = [
            ("optimizer", lambda: self._load_optimizer(state["optimizer"])),
            ("scheduler", lambda: self.sched is None or self.sched.load_state_dict(state["scheduler"])),
            ("torch_rng", lambda: torch.set_rng_state(state["torch_rng"])),
        ]
        for name, load in parts:
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    load()
            except (KeyError, TypeError, ValueError, RuntimeError, IndexError, AttributeError) as e:
                damaged(f"resume.{name} ({' '.join(str(e).split())[:120] or type(e).__name__})")
        self.step, self.seconds = state["step"], state["seconds"]
        self.carry = state["carry"]
        self.best = {
            "val": state["best_val"], "step": state["best_step"],
            "weights": state["best_weights"], "bad": state["bad_evals"],
        }  # fmt: skip
        self.acc = {**EMPTY_ACC, "steps": state["acc"]["n"], **state["acc"]}  # "steps": since stop 9
        self.history = list(previous["history"])[: state["history_len"]]
        if self.step > self.total:
            damaged(f"resume.step {self.step} is past the end of the run ({self.total} steps)")

    def _load_optimizer(self, saved: dict) -> None:
        """torch loads an optimizer state whose buffers do not fit the parameters, and fails
        at the next step: check every buffer against its parameter."""
        import torch

        self.opt.load_state_dict(saved)
        for group in self.opt.param_groups:
            for param in group["params"]:
                for key, buffer in self.opt.state.get(param, {}).items():
                    if isinstance(buffer, torch.Tensor) and buffer.dim() > 0 and buffer.shape != param.shape:
                        raise ValueError(f"{key} is {tuple(buffer.shape)} for a parameter of {tuple(param.shape)}")
                    if isinstance(buffer, torch.Tensor) and not torch.isfinite(buffer).all():
                        raise ValueError(f"{key} holds values that are not finite")

    def _save(self, done: bool = False, snapshot: dict | None = None) -> None:
        state = snapshot if snapshot is not None else self._snapshot()
        weights = state["best_weights"] if state["best_weights"] is not None else state["weights"]
        history = self.history[: state["history_len"]]
        try:  # the folder may have been removed while we trained: put it back
            self.out.parent.mkdir(parents=True, exist_ok=True)
        except OSError:
            pass
        save_checkpoint(
            {
                "model": self.model_config.to_dict(),
                "data": self.data_info,
                "norm": self.norm.to_dict(),
                "weights": weights,
                "train": asdict(self.config),
                "resume": {**state, "done": done},
                "history": history,
            },
            self.out,
        )

    def _diverged(self, loss: float, grad: float) -> None:
        """Stop with exit 1; keep the last good state, and never replace a file with step 0."""
        if self.good["step"] > 0:
            self._save(snapshot=self.good)
            kept = f"the last good state (step {self.good['step']}) is kept in {self.out}"
        else:
            kept = "nothing was saved"
        raise RunFailed(
            f"training diverged at step {self.step + 1}: loss {loss:.3g} (1 = predicting the mean), "
            f"gradient norm {grad:.3g}; try --clip 1 or a lower --lr (now {self.config.lr:g}); {kept}"
        )

    def _result(self, stopped: str) -> TrainResult:
        last = self.history[-1] if self.history else {"train_loss": math.nan, "val_loss": math.nan}
        return TrainResult(
            self.out, self.step, self.seconds, last["train_loss"], last["val_loss"],
            self.best["step"] or self.step, stopped,
        )  # fmt: skip

    def _summary(self, r: TrainResult) -> str:
        c = self.config
        what = f"{c.cell} ({c.layers} x {c.hidden})"
        mode = f"{self.n_windows} streams, stateful" if c.stateful else f"{self.n_windows} windows"
        text = (
            f"seqtool: trained {what} on {mode} for {r.steps} steps "
            f"({r.steps / self.per_epoch:.1f} epochs) in {r.seconds:.1f} s"
            f"{' (early stop)' if r.stopped == 'early stop' else ''}; "
            f"train loss {r.train_loss:.3g}"
        )
        if self.val is not None:
            text += f", val loss {r.val_loss:.3g} (best {self.best['val']:.3g} at step {r.best_step})"
        return text + f" -> {self.out}"

    # --- signals ------------------------------------------------------------------

    def _signalled(self, signum: int) -> None:
        """The first SIGINT or SIGTERM is noted: the current step finishes, the state is
        saved, and the run ends with exit 130 (after the final save, if it came during it).
        A second one stops at once (`Stopped`): an unfinished write is abandoned and its
        temporary file removed, so the previous checkpoint stays."""
        self.signals.append(signum)
        if len(self.signals) > 1:
            raise Stopped(signum)


def _name(signum: int) -> str:
    return signal.Signals(signum).name


def _has_targets(ys: list[np.ndarray], table, part: str, burn_in: int = 0) -> None:
    """Refuse a split in which no step has a target: nothing to learn, or to validate on."""
    if any((~np.isnan(y)).any() for y in ys):
        return
    if part == "training":
        names = ", ".join(table.y_names) if table.y_names else "the inputs (next step)"
        raise SeqtoolError(f"{table.source}: no step of the training split has a target ({names} empty)")
    raise SeqtoolError(
        f"{table.source}: no step of the validation split has a target after its first {burn_in} "
        f"steps (--burn-in); use a larger --val, or --val 0"
    )


def _optimizer(name: str, params, lr: float):
    """Adam (fused where this torch has it: one kernel per step instead of one per tensor),
    or plain SGD with momentum 0.9, under which exploding gradients show and clipping cures."""
    import torch

    params = list(params)
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=0.9)
    try:
        return torch.optim.Adam(params, lr=lr, fused=True)
    except (RuntimeError, TypeError, ValueError):
        return torch.optim.Adam(params, lr=lr)


def _clone(state: dict) -> dict:
    return {k: v.detach().clone() for k, v in state.items()}


class _Progress:
    """A rich bar when stderr is a terminal; otherwise a plain line every tenth of the run."""

    def __init__(self, total: int, quiet: bool):
        self.total, self.quiet, self.bar, self.next_line = total, quiet, None, 0
        self.start = time.perf_counter()
        if not quiet and sys.stderr.isatty():
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            self.bar = Progress(
                TextColumn("train"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                TextColumn("{task.fields[info]}"), transient=True,
            )  # fmt: skip
            self.bar.start()
            self.task = self.bar.add_task("train", total=total, info="")

    def update(self, step: int, row: dict) -> None:
        if self.quiet:
            return
        rate = step / max(time.perf_counter() - self.start, 1e-9)
        info = f"epoch {row['epoch']:.1f}  loss {row['train_loss']:.3g}"
        if not math.isnan(row["val_loss"]):
            info += f"  val {row['val_loss']:.3g}"
        info += f"  lr {row['lr']:.2g}  {rate:.0f} steps/s"
        if self.bar is not None:
            self.bar.update(self.task, completed=step, info=info)
        elif step >= self.next_line or step == self.total:
            print(f"seqtool: step {step}/{self.total}  {info}", file=sys.stderr)
            self.next_line = step + max(1, self.total // 10)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.stop()
            self.bar = None
