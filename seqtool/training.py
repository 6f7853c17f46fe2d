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
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from .checkpoint import load_checkpoint, save_checkpoint
from .dataset import Norm, inputs_and_targets, split, standardised, task_of
from .errors import RunFailed, SeqtoolError
from .tables import SeriesTable, Table, read_series, write_table

SCHEDULES = ("cosine", "plateau", "none")
OPTIMIZERS = ("adam", "sgd")
DEFAULT_OUT = "model.pt"
DEFAULT_STEPS = 2000
DIVERGED = 1e6  # a loss this large on standardised data (1 = always predicting the mean) has diverged


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
        from .models import CELLS

        if self.cell not in CELLS:
            raise SeqtoolError(f"--cell must be one of {', '.join(CELLS)}, got {self.cell!r}")
        if self.optimizer not in OPTIMIZERS:
            raise SeqtoolError(f"--optimizer must be one of {', '.join(OPTIMIZERS)}, got {self.optimizer!r}")
        if self.schedule not in SCHEDULES:
            raise SeqtoolError(f"--schedule must be one of {', '.join(SCHEDULES)}, got {self.schedule!r}")
        for name in ("hidden", "layers", "batch", "window", "stride", "lr"):
            if not getattr(self, name) > 0:
                raise SeqtoolError(f"--{name} must be positive, got {getattr(self, name)}")
        if self.steps is not None and self.epochs is not None:
            raise SeqtoolError("give --steps or --epochs, not both")
        for name in ("steps", "epochs"):
            value = getattr(self, name)
            if value is not None and not value > 0:
                raise SeqtoolError(f"--{name} must be positive, got {value}")
        if not 0 <= self.dropout < 1:
            raise SeqtoolError(f"--dropout must be in [0, 1), got {self.dropout}")
        if self.clip < 0 or self.patience < 0 or self.burn_in < 0:
            raise SeqtoolError("--clip, --patience and --burn-in must be zero (off) or positive")


@dataclass
class TrainResult:
    path: Path
    steps: int
    seconds: float
    train_loss: float
    val_loss: float
    best_step: int
    stopped: str  # "done", "early stop", "already done"


class Interrupted(SeqtoolError):
    """Ctrl-C or SIGTERM: a resumable checkpoint was saved."""

    exit_code = 130
    label = "stopped"


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
    """`seqtool train`: fit a model to a series table and write its checkpoint to `out`."""
    import torch

    previous = None
    if resume:
        previous = load_checkpoint(out)
        if "resume" not in previous or "train" not in previous:
            raise SeqtoolError(f"{out}: this checkpoint holds no training state to resume")
        config = TrainConfig(**previous["train"])
        threads = threads or previous["resume"].get("threads")  # same threads, same sums
    if threads:
        torch.set_num_threads(threads)
    config = config or TrainConfig()
    config.check()
    table = read_series(data, config.x, config.y)
    run = _Run(table, Path(out), config, previous, _device(device), quiet)
    try:
        result = run.fit()
    finally:
        if log is not None:
            write_table(history_table(run.history), log)
    return result


def history_table(history: list[dict]) -> Table:
    """The `train --log` table: one row per evaluation (DESIGN.md section 2)."""
    names = ("epoch", "step", "train_loss", "val_loss", "lr", "grad_norm", "clipped", "seconds")
    return Table({n: np.array([float(row[n]) for row in history]) for n in names}, "log")


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
        self.norm = Norm.fit(train_x, train_y, self.task)
        self.x, self.y = (t.to(device) for t in standardised(train_x, train_y, self.norm))
        self.lengths = torch.tensor([len(a) for a in train_x])
        self.val = None
        if val_x:
            vx, vy = standardised(val_x, val_y, self.norm)
            vy[:, : config.burn_in] = math.nan  # scored like training: no loss during burn-in
            self.val = (vx.to(device), vy.to(device))
        self.data_info = {
            "x_names": table.x_names,
            "y_names": table.y_names or [],
            "task": self.task,
            "source": table.source,
        }
        self._plan_batches()

        torch.manual_seed(config.seed)
        n_out = len(table.x_names) if self.task == "next-step" else len(table.y_names)
        self.model_config = ModelConfig(
            n_in=len(table.x_names), n_out=n_out, cell=config.cell,
            hidden=config.hidden, layers=config.layers, dropout=config.dropout,
        )  # fmt: skip
        self.model = SeqModel(self.model_config).to(device)
        self.opt = _optimizer(config.optimizer, self.model.parameters(), config.lr)
        self.sched = self._scheduler()
        self.step, self.carry, self.seconds = 0, None, 0.0
        self.best = {"val": math.inf, "step": 0, "weights": None, "bad": 0}
        self.acc = {"loss": 0.0, "n": 0, "grad": 0.0, "clipped": 0}
        self.history: list[dict] = []
        self.stop_signal = None
        if previous is not None:
            self._restore(previous)
        self.good = self._snapshot()

    # --- data ---------------------------------------------------------------------

    def _plan_batches(self) -> None:
        """How many steps make an epoch, and the total; the batches themselves come from `_batch`."""
        c = self.config
        lengths = self.lengths.tolist()
        if c.stateful:
            self.chunks = math.ceil(max(lengths) / c.window)
            self.groups = math.ceil(len(lengths) / c.batch)
            self.per_epoch = self.groups * self.chunks
            self.n_windows = len(lengths)
        else:
            series, starts = [], []
            for i, n in enumerate(lengths):
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
                    f"(longest: {max(lengths)} steps); use a smaller --window"
                )
            import torch

            self.win_series, self.win_starts = torch.tensor(series), torch.tensor(starts)
            self.n_windows = len(series)
            self.per_epoch = math.ceil(self.n_windows / c.batch)
        if c.steps is not None:
            self.total = int(c.steps)
        elif c.epochs is not None:
            self.total = max(1, math.ceil(c.epochs * self.per_epoch))
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
        """Inputs, targets and whether the carried state starts anew, for optimizer step `step`."""
        import torch

        c = self.config
        epoch, pos = divmod(step, self.per_epoch)
        if c.stateful:
            group, chunk = divmod(pos, self.chunks)
            members = self._order(epoch, len(self.lengths))[group * c.batch : (group + 1) * c.batch]
            t0 = chunk * c.window
            sl = slice(t0, t0 + c.window)
            return self.x[members, sl], self.y[members, sl], chunk == 0
        picks = self._order(epoch, self.n_windows)[pos * c.batch : (pos + 1) * c.batch]
        rows = self.win_starts[picks, None] + torch.arange(c.window)
        series = self.win_series[picks, None]
        return self.x[series, rows], self.y[series, rows], True

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
        import torch

        from .models import detach, masked_mse

        c, model = self.config, self.model
        if self.step >= self.total:
            return self._result("already done")
        handlers = self._catch_signals()
        progress = _Progress(self.total, self.quiet)
        start = time.perf_counter() - self.seconds
        last_save = time.perf_counter()
        stopped = "done"
        try:
            model.train()
            while self.step < self.total:
                x, y, fresh = self._batch(self.step)
                if fresh:
                    self.carry = None
                out, state = model(x, self.carry)
                if fresh and c.burn_in:
                    y = y.clone()
                    y[:, : c.burn_in] = math.nan
                loss, count = masked_mse(out, y)
                self.opt.zero_grad(set_to_none=True)
                loss.backward()
                limit = c.clip if c.clip > 0 else math.inf
                grad = float(torch.nn.utils.clip_grad_norm_(model.parameters(), limit))
                value = loss.item()
                if not (math.isfinite(value) and math.isfinite(grad)) or value > DIVERGED:
                    self._diverged(value, grad)
                if count > 0:
                    self.opt.step()
                self.carry = detach(state) if c.stateful else None
                if self.sched is not None and c.schedule == "cosine":
                    self.sched.step()
                self.step += 1
                self.acc["loss"] += value
                self.acc["n"] += 1
                self.acc["grad"] += grad
                self.acc["clipped"] += int(c.clip > 0 and grad > c.clip)
                self.seconds = time.perf_counter() - start
                if self.step % self.eval_every == 0 or self.step == self.total:
                    row = self._evaluate()
                    progress.update(self.step, row)
                    if c.patience and self.best["bad"] >= c.patience:
                        stopped = "early stop"
                        break
                    self.good = self._snapshot()
                    if time.perf_counter() - last_save > c.save_every:
                        self._save()
                        last_save = time.perf_counter()
                if self.stop_signal is not None:
                    self._save()
                    name = signal.Signals(self.stop_signal).name
                    raise Interrupted(
                        f"{name} at step {self.step} of {self.total}: saved a resumable checkpoint "
                        f"to {self.out}; continue with: seqtool train DATA --resume -o {self.out}"
                    )
        finally:
            progress.close()
            self._restore_signals(handlers)
        self._save(done=True)
        result = self._result(stopped)
        if not self.quiet:
            print(self._summary(result), file=sys.stderr)
        return result

    def _evaluate(self) -> dict:
        import torch

        from .models import masked_mse

        n = max(self.acc["n"], 1)
        val = math.nan
        if self.val is not None:
            self.model.eval()
            with torch.no_grad():
                x, y = self.val
                val = float(masked_mse(self.model(x)[0], y)[0])
            self.model.train()
        train_loss = self.acc["loss"] / n
        watched = val if self.val is not None else train_loss
        if self.sched is not None and self.config.schedule == "plateau":
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
            "grad_norm": self.acc["grad"] / n,
            "clipped": self.acc["clipped"],
            "seconds": self.seconds,
        }
        self.history.append(row)
        self.acc = {"loss": 0.0, "n": 0, "grad": 0.0, "clipped": 0}
        return row

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
        import torch

        state = previous["resume"]
        self.model.load_state_dict(state["weights"])
        self.opt.load_state_dict(state["optimizer"])
        if self.sched is not None:
            self.sched.load_state_dict(state["scheduler"])
        self.step, self.seconds = state["step"], state["seconds"]
        torch.set_rng_state(state["torch_rng"])
        self.carry = state["carry"]
        self.best = {
            "val": state["best_val"], "step": state["best_step"],
            "weights": state["best_weights"], "bad": state["bad_evals"],
        }  # fmt: skip
        self.acc = dict(state["acc"])
        self.history = list(previous["history"])

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

    def _catch_signals(self) -> dict:
        """Ctrl-C and SIGTERM finish the current step, save, and exit 130."""

        def handler(signum, frame):
            self.stop_signal = signum

        saved = {}
        try:
            for sig in (signal.SIGINT, signal.SIGTERM):
                saved[sig] = signal.signal(sig, handler)
        except ValueError:  # not the main thread: leave signals alone
            pass
        return saved

    @staticmethod
    def _restore_signals(saved: dict) -> None:
        for sig, old in saved.items():
            signal.signal(sig, old)


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
