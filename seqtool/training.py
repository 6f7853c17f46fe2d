"""The training loop: windows or carried state, Adam, clipping, schedules, early stopping,
atomic checkpoints, exact resume.

Two ways to cut the data into mini-batches:

- windows (default): windows of `window` consecutive steps, every `stride` steps, from
  every series, shuffled into batches. Each window starts from a zero state.
- stateful (truncated BPTT): each series is a stream, read from its first step in
  consecutive chunks of `window` steps, `batch` streams side by side. The hidden state
  at the end of a chunk is carried, as values, into the next chunk of the same stream;
  the gradient is not: backpropagation stops at the chunk boundary. Where a series
  starts, the state is the model's learned start; a piece cut from a long series
  continues from the state the piece before it ended with (`batches.Streams.start`).

The run is a fixed number of optimizer steps (`steps`, or `epochs` passes over the
data). Every step's batch is a function of (seed, step), so a run that is stopped and
resumed from its checkpoint ends with the same weights as one that ran through.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import math
import signal
import sys
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np

from . import distributed, mapped, outputs
from .batches import Source, batches
from .checkpoint import check_checkpoint_path, check_resume, load_checkpoint, save_checkpoint
from .config import CELLS, DEVICES, WINDOW, ModelConfig, TrainConfig
from .dataset import MAPPING, NEXT_STEP, Rows, inputs_and_targets, positions, predicted, split, task_of
from .errors import Interrupted, RunFailed, SeqtoolError, Stopped, on_signals
from .limits import LIMITS, check_all, cores, fits_in_memory
from .outputs import writer_lock
from .scaling import Differencing, Scaling
from .tables import TABLE_FORMATS, SeriesTable, Table, csv_text, read_series, write_table
from .threads import use as use_threads
from .threads import work
from .timefeatures import TimeFeatures

DEFAULT_OUT = "model.pt"
DEFAULT_STEPS = 2000
WHOLE_SERIES = 10_000  # the longest window that --window's default makes of a whole series
EVAL_EVERY = 25  # steps between evaluations (a row of the log)
DIVERGED = 1e6  # a loss this large on standardised data (1 = always predicting the mean) has diverged
LOG_COLUMNS = ("epoch", "step", "train_loss", "val_loss", "lr", "grad_norm", "clipped", "seconds")
# sums since the last evaluation: squared errors and targets, gradient norms over the steps
# that had targets, clipped steps
EMPTY_ACC = {"loss": 0.0, "n": 0, "grad": 0.0, "steps": 0, "clipped": 0}


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
    source: Callable[[Rows, TrainConfig], Source] = batches,
) -> TrainResult:
    """`seqtool train`: fit a model to a series table and write its checkpoint to `out`.

    Everything that can be checked is checked before the data is read: the settings, the
    output paths, the device, the memory a step needs; then, with the data, that some step
    has a target to learn. One writer per checkpoint: a second run aiming at `out` while
    this one runs is refused. `source` makes the batch source from the training rows
    (`batches.batches`: windows, or streams); a wrapper of it changes where batches come from.
    """
    w = distributed.world()
    distributed.silence(w)
    check_all(threads=threads)
    dev = _device(device, w)
    if not resume:
        config = config or TrainConfig()
        _check_config(config, dev)
    check_checkpoint_path(out)
    outputs.check([(out, None, "checkpoint"), (log, TABLE_FORMATS, "table")], inputs=[data])
    distributed.check_input(w.size, data, f"{w.size} processes")
    distributed.join(w, dev)
    try:
        with writer_lock(out) if w.main else contextlib.nullcontext():
            previous = None
            if resume:
                previous = load_checkpoint(out)
                check_resume(previous, str(out))
                config = TrainConfig(**previous["train"])
                _check_config(config, dev)
                threads = threads or min(previous["resume"]["threads"], cores())  # same threads, same sums
            table = _table(data, config)
            run = _Run(table, Path(out), replace(config, world_size=w.size), previous, dev, quiet or not w.main, source, threads, w)
            with _growing_log(log if w.main else None, run.history) as run.log:
                with warnings.catch_warnings():  # a batch without targets skips opt.step(): torch
                    warnings.filterwarnings("ignore", message=r"Detected call of `lr_scheduler.step\(\)`")
                    return _fit(run)  # would warn that the schedule stepped before the optimizer
    except RuntimeError as e:
        if not distributed.is_lost(w, e):
            raise
        distributed.lost(e, Path(out))
    finally:
        distributed.leave(w)


def _check_config(c: TrainConfig, device) -> None:
    """The settings, and (on the CPU) the memory a step needs, about, before the data is
    read (one input, one output): weights, gradients, Adam's moments and the copies kept
    for the best state and the checkpoint, plus a batch's activations kept for backward."""
    c.check()
    if device.type == "cpu":
        gates = max(1, len(CELLS[c.cell].gates))
        params = c.layers * gates * c.hidden * (2 * c.hidden + 2) + c.hidden
        window = c.window or WINDOW
        activations = c.batch * window * c.layers * c.hidden * (gates + 2)
        what = f"training with --hidden {c.hidden} --layers {c.layers} --batch {c.batch} --window {window}"
        fits_in_memory(4.0 * (10 * params + 3 * activations), what)


def history_table(history: list[dict]) -> Table:
    """The `train --log` table: one row per evaluation (DESIGN.md section 2)."""
    return Table({n: np.array([float(row[n]) for row in history], dtype=np.float64) for n in LOG_COLUMNS}, "log")


@contextlib.contextmanager
def _growing_log(dest, history: list[dict]) -> Iterator[Callable[[dict], None] | None]:
    """`train --log FILE` as the run goes: gives the function that adds the row just
    appended to `history`. A CSV grows by that row, flushed, so `tail -f` and `seqtool plot`
    follow the run; an npz, which cannot grow, is rewritten (atomically) each time. It starts
    with the rows the run already has: a resumed run writes its checkpoint's history again."""
    if dest is None:
        yield None
    elif outputs.format_of(outputs.target(dest), TABLE_FORMATS) == ".npz":
        write_table(history_table(history), dest)
        yield lambda row: write_table(history_table(history), dest)
    else:
        with outputs.open_growing(dest) as f:

            def write(rows: list[dict], header: bool = False) -> None:
                f.write(csv_text(history_table(rows), header))
                f.flush()

            write(history, header=True)
            yield lambda row: write([row])


def _device(name: str, w: distributed.World = distributed.World()):
    """The device to train on; under torchrun each rank's own GPU (LOCAL_RANK)."""
    import torch

    if name not in DEVICES:
        raise SeqtoolError(f"--device must be one of {', '.join(DEVICES)}, got {name!r}")
    if name == "cuda" and not torch.cuda.is_available():
        raise SeqtoolError("--device cuda: no CUDA device is available here")
    if name == "cpu" or not torch.cuda.is_available():
        return torch.device("cpu")
    if w.local_rank >= torch.cuda.device_count():
        raise SeqtoolError(f"rank {w.rank} has local rank {w.local_rank}, but this machine has {torch.cuda.device_count()} GPUs")
    return torch.device("cuda", w.local_rank)


def _table(data, config: TrainConfig):
    """The table to train on: a table folder that training reads in place (`mapped`), or
    a table read into memory."""
    if mapped.is_folder(data):
        folder = mapped.Folder(data)
        folder.check_columns(config.x, config.y)
        if folder.in_place(config):
            return folder
    return read_series(data, config.x, config.y)


def _fingerprint(xs: list[np.ndarray], ys: list[np.ndarray]) -> str:
    digest = hashlib.sha256()
    for a in xs + ys:
        digest.update(np.ascontiguousarray(a, dtype=np.float64).tobytes())
    return digest.hexdigest()[:16]


@dataclass
class _Data:
    """What a run trains on: the split, standardised, stored end to end."""

    fingerprint: str
    scaling: Scaling
    rows: Rows
    val: Rows | None
    info: dict  # the checkpoint's "data": column names, task, source
    held_out: tuple[SeriesTable, list] | None = None  # next step: the validation series as read, their scored steps


def _prepare(table: SeriesTable, config: TrainConfig, device) -> _Data:
    """Targets, the split (`--val`), the standardisation of the training part. A split in
    which no step has a target is refused; validation is scored like training (no loss
    during the burn-in). With --diff, the series are differenced first (next step only)."""
    if isinstance(table, mapped.Folder):
        return _prepare_in_place(table, config, device)
    task = task_of(table)
    diff = Differencing(config.lags(), config.log_values)
    time = TimeFeatures.choose(table, config.periods()) if config.time_features else None
    xs, ys = inputs_and_targets(table, task, diff, time)
    (train_x, train_y), (val_x, val_y) = split(xs, ys, config.val, config.seed)
    _has_targets(train_y, table, "training")
    series = [x[:, : len(table.x_names)] for x in train_x]  # not the time features: they are not scaled
    scaling = Scaling.fit(series, train_y, task == NEXT_STEP, table.x_names, table.y_names, table.source, diff)
    val = held_out = None
    if val_x:
        val, scored = _validation(val_x, val_y, table, scaling, config, device, config.burn_in, diff.order)
        if task == NEXT_STEP:  # as read: the naive forecasts repeat the values, not their differences
            rows = split(table.split(np.arange(int(table.lengths.sum()))[:, None]), xs, config.val, config.seed)[1][0]
            held_out = (_rows_of(table, [r[:, 0] for r in rows]), scored)
    info = _info(table, task, config)
    if time is not None:
        info["time"] = time.to_dict()
    rows = Rows.of(train_x, train_y, scaling, table.x_names, table.source).to(device)
    return _Data(_fingerprint(xs, ys), scaling, rows, val, info, held_out)


def _validation(xs, ys, table, scaling: Scaling, config: TrainConfig, device, skip: int, order: int = 0) -> tuple[Rows, list]:
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


def _prepare_in_place(folder: mapped.Folder, config: TrainConfig, device) -> _Data:
    """`_prepare` of a next-step table folder read in place: the training rows stay in the
    maps (`mapped.MappedRows`), standardised by the blocks' moments; the validation part,
    bounded (`Folder.split`), is read into memory and scored as any other."""
    starts, lengths, val_table, lead = folder.split(config)
    if not (lengths >= 2).any():
        raise SeqtoolError(f"{folder.source}: no training series has two steps, so no step has a target to learn")
    scaling = folder.scaling(starts, lengths)
    val = held_out = None
    if val_table is not None:
        val, scored = _validation(*inputs_and_targets(val_table, NEXT_STEP), val_table, scaling, config, device, max(config.burn_in, lead))
        held_out = (val_table, scored)
    rows = mapped.MappedRows(folder, starts, lengths, scaling, device)
    return _Data(folder.meta["sha256"], scaling, rows, val, _info(folder, NEXT_STEP, config), held_out)


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
        say(f"every series is shorter than {WINDOW} steps: each window covers a whole series (--window {longest}){left}")
        return longest
    if targets * WINDOW < steps:
        sparse = f"targets are sparse (one step in {steps / max(targets, 1):.0f} has one)"
        if longest <= WHOLE_SERIES:
            say(f"{sparse}: each window covers a whole series (--window {longest}); give --window to choose")
            return longest
        say(f"{sparse} and series of {longest:,} steps are too long for one window: train with --stateful (carried state)")
    elif task == MAPPING:
        say(f"each window of {WINDOW} steps starts from a zero state, so a target can depend on the last {WINDOW} inputs only; if it depends on more (an integrator), train with --stateful")
    return WINDOW


class _Run:
    """The state of one training run: the data and its batches, the model, the optimizer
    and schedule, and what --resume needs (step, carried state, best weights, sums,
    history). The functions below train it (`_fit`) and save it (`_save`)."""

    def __init__(self, table, out: Path, config: TrainConfig, previous, device, quiet: bool, source=batches, threads=None, world=distributed.World()):
        import torch

        from .models import SeqModel

        self.config, self.out, self.quiet = config, out, quiet
        self.data = _prepare(table, config, device)
        if previous is not None and previous["resume"].get("fingerprint") != self.data.fingerprint:
            raise SeqtoolError(f"{out}: the data differs from the data this run was trained on")
        if config.window is None:
            self.config = config = replace(config, window=window_for(self.data.rows, config, self.data.info["task"], quiet))
            _check_config(config, device)
        self.world = world
        self.source = source(self.data.rows, config)
        if world.size > 1:
            self.source = distributed.Shard(self.source, world)
        self.total = _total_steps(config, self.source.per_epoch)
        info = self.data.info
        outputs = predicted(info["task"], info["x_names"], info["y_names"])
        self.model_config = ModelConfig(
            n_in=self.data.rows.width, n_out=len(outputs), cell=config.cell,
            hidden=config.hidden, layers=config.layers, dropout=config.dropout, loss=config.loss,
            learned_start=previous["model"].get("learned_start", False) if previous else config.stateful,
        )  # fmt: skip
        macs = work(self.model_config, math.ceil(min(config.batch, self.source.count) / world.size))
        self.threads = use_threads(threads or world.threads(macs), macs)
        torch.manual_seed(config.seed)
        self.model = SeqModel(self.model_config).to(device)
        self.net = distributed.parallel(self.model, world, device)  # what a training step calls
        self.opt = _optimizer(config.optimizer, _groups(self.model, self.source, config.lr), config.lr)
        self.schedule = _Schedule(self.opt, config, self.total)
        self.step, self.carry, self.seconds = 0, None, 0.0
        self.best = _Best()
        self.acc = dict(EMPTY_ACC)
        self.history: list[dict] = []
        self.signals: list[int] = []
        self.stop = 0  # the signal one of the ranks got: all finish this step and save
        self.log: Callable[[dict], None] | None = None  # adds a row to `train --log`
        if previous is not None:
            _restore(self, previous)
        self.good = _snapshot(self)

    def _signalled(self, signum: int) -> None:
        """The first SIGINT or SIGTERM is noted: the current step finishes, the state is
        saved, and the run ends with exit 130 (after the final save, if it came during it).
        A second one stops at once (`Stopped`): an unfinished write is abandoned and its
        temporary file removed, so the previous checkpoint stays."""
        self.signals.append(signum)
        if len(self.signals) > 1:
            raise Stopped(signum)


# --- training a run ---------------------------------------------------------------------


def _fit(run: _Run) -> TrainResult:
    """The loop, then the final save. SIGINT or SIGTERM at any moment (the final save
    included) ends with exit 130 and a usable checkpoint; see `_Run._signalled`."""
    if run.step >= run.total:
        return _result(run, "already done")
    with on_signals(run._signalled):
        stopped = _loop(run)
        _save(run, done=True)
    if run.signals:  # it came after the last step: the finished run is saved
        raise Interrupted(f"{_name(run.signals[0])} as the run ended: the finished run is saved to {run.out}")
    result = _result(run, stopped)
    if not run.quiet:
        for line in [*_against_naive(run), _summary(run, result)]:
            print(line, file=sys.stderr)
    return result


def _loop(run: _Run) -> str:
    """Optimizer steps to the end of the run: "done", or "early stop"."""
    progress = _Progress(run.total, run.quiet)
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
                run.good = _snapshot(run)
                if time.perf_counter() - last_save > run.config.save_every:
                    _save(run, snapshot=run.good)
                    last_save = time.perf_counter()
            if run.stop:
                _save(run)
                raise Interrupted(
                    f"{_name(run.stop)} at step {run.step} of {run.total}: saved a resumable "
                    f"checkpoint to {run.out}; continue with: seqtool train DATA --resume -o {run.out}"
                )
    finally:
        progress.close()
    return "done"


def _step(run: _Run, x, y, t0: int) -> None:
    """One optimizer step on a batch that starts at step t0 of its streams."""
    import torch

    from .models import detach

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


def _evaluate(run: _Run) -> dict:
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
    if run.log is not None:
        run.log(row)
    run.acc = dict(EMPTY_ACC)
    return row


def _total_steps(config: TrainConfig, per_epoch: int) -> int:
    if config.steps is not None:
        return int(config.steps)
    if config.epochs is None:
        return DEFAULT_STEPS
    total = max(1, math.ceil(config.epochs * per_epoch))
    if total > LIMITS["steps"].hi:
        raise SeqtoolError(f"--epochs {config.epochs:g} is {total:,} steps; at most {LIMITS['steps'].hi:,} are run")
    return total


class _Schedule:
    """The learning rate over the run: cosine annealing to lr/100, stepped after every
    optimizer step; or halved on a plateau of the watched loss, stepped after every
    evaluation; or constant."""

    def __init__(self, opt, config: TrainConfig, total: int):
        import torch

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


@dataclass
class _Best:
    """The best validation loss so far, the step and weights it came with, and the
    evaluations since without a better one (early stopping counts them)."""

    val: float = math.inf
    step: int = 0
    weights: dict | None = None
    bad: int = 0

    def update(self, val: float, step: int, model) -> None:
        if val < self.val:
            self.val, self.step, self.bad, self.weights = val, step, 0, _clone(model.state_dict())
        else:
            self.bad += 1

    def to_resume(self) -> dict:
        """As the checkpoint's `resume` section stores it."""
        return {"best_val": self.val, "best_step": self.step, "best_weights": self.weights, "bad_evals": self.bad}

    @classmethod
    def from_resume(cls, state: dict) -> _Best:
        return cls(state["best_val"], state["best_step"], state["best_weights"], state["bad_evals"])


def _val_loss(model, val: Rows) -> float:
    """The head's loss, teacher-forced over whole held-out series, state carried (what
    `predict` does)."""
    from .models import over_series

    model.eval()
    out, _ = over_series(model, val.x, val.lengths.cpu().numpy())
    model.train()
    return float(model.head.loss(out, val.y)[0])


# --- the checkpoint of a run ---------------------------------------------------------------


def _snapshot(run: _Run) -> dict:
    """Everything --resume needs, as plain types and tensors (copied: training goes on)."""
    import torch

    return copy.deepcopy(
        {
            "weights": run.model.state_dict(),
            "optimizer": run.opt.state_dict(),
            "scheduler": run.schedule.state_dict(),
            "step": run.step,
            "seconds": run.seconds,
            "torch_rng": torch.get_rng_state(),
            "carry": run.carry,
            **run.best.to_resume(),
            "acc": dict(run.acc),
            "history_len": len(run.history),
            "fingerprint": run.data.fingerprint,
            "threads": torch.get_num_threads(),
        }
    )


def _restore(run: _Run, previous: dict) -> None:
    """The training state of a checkpoint (checked by `check_resume`); the optimizer,
    scheduler and RNG states are checked by loading them."""
    import torch

    from .checkpoint import Damaged
    from .models import map_state, parts

    state, damaged = previous["resume"], Damaged(str(run.out))
    run.model.load_state_dict(state["weights"])
    loads = [
        ("optimizer", lambda: _load_optimizer(run.opt, state["optimizer"])),
        ("scheduler", lambda: run.schedule.load_state_dict(state["scheduler"])),
        ("torch_rng", lambda: torch.set_rng_state(state["torch_rng"])),
    ]
    for name, load in loads:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                load()
        except (KeyError, TypeError, ValueError, RuntimeError, IndexError, AttributeError) as e:
            damaged(f"resume.{name} ({' '.join(str(e).split())[:120] or type(e).__name__})")
    device = run.data.rows.device
    run.step, run.seconds = state["step"], state["seconds"]
    run.carry = map_state(lambda s: s.to(device), state["carry"])
    run.best = _Best.from_resume(state)
    run.acc = {**EMPTY_ACC, "steps": state["acc"]["n"], **state["acc"]}  # format 1 may lack "steps"
    run.history = list(previous["history"])[: state["history_len"]]
    if run.step > run.total:
        damaged(f"resume.step {run.step} is past the end of the run ({run.total} steps)")
    if run.carry is not None and run.step > 0:  # the streams of its last step: this run's own?
        held, streams = parts(run.carry)[0].shape[1], len(getattr(run.source, "inner", run.source).batch(run.step - 1)[0])
        if held != streams:
            damaged(f"resume.carry holds the state of {held} streams, where this run reads {streams} (a checkpoint of format 1 may come from a seqtool that cut long series otherwise); train anew")


def _load_optimizer(opt, saved: dict) -> None:
    """torch loads an optimizer state whose buffers do not fit the parameters, and fails
    at the next step: check every buffer against its parameter."""
    import torch

    opt.load_state_dict(saved)
    for group in opt.param_groups:
        for param in group["params"]:
            for key, buffer in opt.state.get(param, {}).items():
                if isinstance(buffer, torch.Tensor) and buffer.dim() > 0 and buffer.shape != param.shape:
                    raise ValueError(f"{key} is {tuple(buffer.shape)} for a parameter of {tuple(param.shape)}")
                if isinstance(buffer, torch.Tensor) and not torch.isfinite(buffer).all():
                    raise ValueError(f"{key} holds values that are not finite")


def _save(run: _Run, done: bool = False, snapshot: dict | None = None) -> None:
    """Write the checkpoint: rank 0 alone (every rank holds the same state)."""
    if not run.world.main:
        return
    state = snapshot if snapshot is not None else _snapshot(run)
    weights = state["best_weights"] if state["best_weights"] is not None else state["weights"]
    try:  # the folder may have been removed while we trained: put it back
        run.out.parent.mkdir(parents=True, exist_ok=True)
    except OSError:
        pass
    save_checkpoint(
        {
            "model": run.model_config.to_dict(),
            "data": run.data.info,
            "norm": run.data.scaling.to_dict(),
            "weights": weights,
            "train": asdict(run.config),
            "resume": {**state, "done": done},
            "history": run.history[: state["history_len"]],
        },
        run.out,
    )


def _diverged(run: _Run, loss: float, grad: float) -> None:
    """Stop with exit 1; keep the last good state, and never replace a file with step 0."""
    if run.good["step"] > 0:
        _save(run, snapshot=run.good)
        kept = f"the last good state (step {run.good['step']}) is kept in {run.out}"
    else:
        kept = "nothing was saved"
    raise RunFailed(
        f"training diverged at step {run.step + 1}: loss {loss:.3g} (1 = predicting the mean), "
        f"gradient norm {grad:.3g}; try --clip 1 or a lower --lr (now {run.config.lr:g}); {kept}"
    )


def _result(run: _Run, stopped: str) -> TrainResult:
    last = run.history[-1] if run.history else {"train_loss": math.nan, "val_loss": math.nan}
    return TrainResult(
        run.out, run.step, run.seconds, last["train_loss"], last["val_loss"], run.best.step or run.step, stopped
    )


def _summary(run: _Run, r: TrainResult) -> str:
    c = run.config
    mode = f"{run.source.count} windows"
    if c.stateful:
        series = len(run.data.rows.lengths)
        cut = f" cut from {series} series" if run.source.count > series else ""
        mode = f"{run.source.count} streams{cut}, stateful"
    text = (
        f"seqtool: trained {c.cell} ({c.layers} x {c.hidden}) on {mode} for {r.steps} steps "
        f"({r.steps / run.source.per_epoch:.1f} epochs) in {r.seconds:.1f} s on {run.threads} thread{'s' if run.threads > 1 else ''}"
        f"{f' x {run.world.size} processes' if run.world.size > 1 else ''}"
        f"{' (early stop)' if r.stopped == 'early stop' else ''}; train loss {r.train_loss:.3g}"
    )
    if run.data.val is not None:
        text += f", val loss {r.val_loss:.3g} (best {run.best.val:.3g} at step {r.best_step})"
    return text + f" -> {run.out}"


def _against_naive(run: _Run) -> list[str]:
    """The saved model's one-step error on the validation steps, on the original scale,
    beside the naive forecasts' on the same steps; and, where it loses, the likely remedy."""
    from .inference import Model
    from .metrics import line, remedy, score

    if run.data.held_out is None:
        return []
    net = copy.deepcopy(run.model).cpu()
    if run.best.weights is not None:
        net.load_state_dict(run.best.weights)
    m = Model.of(net, run.data.scaling, run.data.info, str(run.out))
    table, scored = run.data.held_out
    naive, seasonal = m.baselines(table, positions(table.lengths), m.season)
    try:
        forecasts = m.one_step(table)
    except SeqtoolError as e:  # the run is saved; its comparison cannot be made
        return [f"seqtool: no comparison with the naive forecast on validation: {e}"]
    scores = score(forecasts, table.x, np.concatenate(scored), naive, seasonal)
    if scores["mae"] is None:
        return []
    lines = [f"seqtool: validation, one step ahead, original scale: {line(scores)} over {scores['steps']} steps"]
    advice = remedy({**scores, "season": m.season}, m.scaling.diff.lags)
    return lines + ([f"seqtool: {advice}"] if advice else [])


def _rows_of(table: SeriesTable, rows: list[np.ndarray]) -> SeriesTable:
    """The series made of these rows of `table` (one array of row indices per series)."""
    every = np.concatenate(rows)
    columns = {name: col[every] for name, col in table.columns.items()}
    return SeriesTable(columns, table.x_names, table.y_names, np.array([len(r) for r in rows]), table.source)


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


def _groups(model, source, lr: float) -> list[dict]:
    """The weights at `lr`; a learned start at lr x sqrt(k): only the first chunk of a
    stream, one step in k, reaches it, so it moves about 1/k as far as a weight reached
    every step. sqrt(k) is a measured compromise, not a derivation: on one cut integrator
    series (k = 63), x8 took the first 150 steps' MAE from 0.02-0.08 to 0.004-0.007 (x10 and
    x30 alike); moving it as far as the weights (x k) would make its steps 63 times theirs."""
    weights = [p for name, p in model.named_parameters() if name != "start"]
    start = [] if model.start is None else [{"params": [model.start], "lr": lr * math.sqrt(source.chunks)}]
    return [{"params": weights}, *start]


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
