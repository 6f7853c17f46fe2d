"""`seqtool train`: a run from its settings, data and checkpoint path to the saved model.

Two ways to cut the data into mini-batches (`batches`):

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
import math
import sys
import warnings
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import torch

from seqtool import outputs
from seqtool.config import CELLS, DEVICES, WINDOW, ModelConfig, TrainConfig, members
from seqtool.data.examples import Rows, predicted
from seqtool.data.tables import TABLE_FORMATS, SeriesTable, Table
from seqtool.errors import SeqtoolError, Stopped
from seqtool.limits import check_all, cores, fits_in_memory
from seqtool.model.checkpoint import check_checkpoint_path, load_checkpoint
from seqtool.model.network import SeqModel
from seqtool.outputs import writer_lock
from seqtool.threads import use as use_threads
from seqtool.threads import work
from seqtool.training import distributed
from seqtool.training.batches import Source, batches
from seqtool.training.loop import Schedule, fit, optimizer_for, param_groups, total_steps
from seqtool.training.prepare import prepare, table_for, window_for, with_window
from seqtool.training.report import TrainResult, growing_log
from seqtool.training.resume import restore, snapshot
from seqtool.training.state import EMPTY_ACC, Best, check_resume

DEFAULT_OUT = "model.pt"


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
        check_config(config, dev)
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
                check_config(config, dev)
                threads = threads or min(previous["resume"]["threads"], cores())  # same threads, same sums
            table = table_for(data, config)
            config = replace(config, world_size=w.size)
            run = Run(table, Path(out), config, previous, dev, quiet or not w.main, source, threads, w)
            with growing_log(log if w.main else None, run.history) as run.log, warnings.catch_warnings():
                # a batch without targets skips opt.step(): torch would warn that the
                # schedule stepped before the optimizer
                warnings.filterwarnings("ignore", message=r"Detected call of `lr_scheduler.step\(\)`")
                return fit(run)
    except RuntimeError as e:
        if not distributed.is_lost(w, e):
            raise
        distributed.lost(e, Path(out))
    finally:
        distributed.leave(w)


def check_config(c: TrainConfig, device) -> None:
    """The settings, and (on the CPU) the memory a step needs, about, before the data is
    read (one input, one output): weights, gradients, Adam's moments and the copies kept
    for the best state and the checkpoint, plus a batch's activations kept for backward."""
    c.check()
    if device.type == "cpu":
        gates = max(1, len(CELLS[c.cell].gates))
        width = c.hidden * len(members(c))
        params = c.layers * gates * width * (2 * width + 2) + width
        window = c.window or WINDOW
        activations = c.batch * window * c.layers * width * (gates + 2)
        ensemble = f" --ensemble {c.ensemble}" if c.ensemble > 1 else ""
        ensemble += f" --part {c.part}" if c.part else ""
        what = f"training with --hidden {c.hidden}{ensemble} --layers {c.layers} --batch {c.batch} --window {window}"
        fits_in_memory(4.0 * (10 * params + 3 * activations), what)


def _device(name: str, w: distributed.World = distributed.World()):  # noqa: B008 (a frozen dataclass: immutable)
    """The device to train on; under torchrun each rank's own GPU (LOCAL_RANK)."""
    if name not in DEVICES:
        raise SeqtoolError(f"--device must be one of {', '.join(DEVICES)}, got {name!r}")
    if name == "cuda" and not torch.cuda.is_available():
        raise SeqtoolError("--device cuda: no CUDA device is available here")
    if name == "cpu" or not torch.cuda.is_available():
        return torch.device("cpu")
    if w.local_rank >= torch.cuda.device_count():
        raise SeqtoolError(
            f"rank {w.rank} has local rank {w.local_rank}, but this machine has {torch.cuda.device_count()} GPUs"
        )
    return torch.device("cuda", w.local_rank)


class Run:
    """The state of one training run: the data and its batches, the model, the optimizer
    and schedule, and what --resume needs (step, carried state, best weights, sums,
    history). The functions below train it (`fit`) and save it (`save`)."""

    def __init__(
        self,
        table,
        out: Path,
        config: TrainConfig,
        previous,
        device,
        quiet: bool,
        source=batches,
        threads=None,
        world=distributed.World(),  # noqa: B008 (a frozen dataclass: immutable)
    ):
        self.config, self.out, self.quiet = config, out, quiet
        self.data = prepare(table, config, device, resuming=previous is not None)
        if self.data.advice and not quiet:
            print(f"seqtool: {self.data.advice}", file=sys.stderr)
        if previous is not None and previous["resume"].get("fingerprint") != self.data.fingerprint:
            raise SeqtoolError(f"{out}: the data differs from the data this run was trained on")
        if config.window is None:
            self.config = config = replace(
                config, window=window_for(self.data.rows, config, self.data.info["task"], quiet)
            )
            check_config(config, device)
        if config.scale == "window":
            with_window(self.data, config.window)
        self.world = world
        self.source = source(self.data.rows, config)
        if world.size > 1:
            self.source = distributed.Shard(self.source, world)
        self.total = total_steps(config, self.source.per_epoch)
        info = self.data.info
        outputs = predicted(info["task"], info["x_names"], info["y_names"])
        self.model_config = ModelConfig(
            n_in=self.data.rows.width, n_out=len(outputs), cell=config.cell, horizon=config.horizon,
            members=len(members(config)), hidden=config.hidden, layers=config.layers, dropout=config.dropout,
            loss=config.loss,
            learned_start=previous["model"].get("learned_start", False) if previous else config.stateful,
        )  # fmt: skip
        macs = work(self.model_config, math.ceil(min(config.batch, self.source.count) / world.size))
        self.threads = use_threads(threads or world.threads(macs), macs)
        torch.manual_seed(config.seed)
        for _ in range(members(config).start):  # the earlier parts' members draw their starts first
            SeqModel(replace(self.model_config, members=1))
        self.model = SeqModel(self.model_config).to(device)
        self.net = distributed.parallel(self.model, world, device)  # what a training step calls
        self.opt = optimizer_for(config.optimizer, param_groups(self.model, self.source, config.lr), config.lr)
        self.schedule = Schedule(self.opt, config, self.total)
        self.step, self.carry, self.seconds = 0, None, 0.0
        self.best = Best()
        self.acc = dict(EMPTY_ACC)
        self.history: list[dict] = []
        self.signals: list[int] = []
        self.stop = 0  # the signal one of the ranks got: all finish this step and save
        self.log: Callable[[dict], None] | None = None  # adds a row to `train --log`
        self.done = False  # saved by the final save (resume.done)
        if previous is not None:
            restore(self, previous)
        self.good = snapshot(self)

    def _signalled(self, signum: int) -> None:
        """The first SIGINT or SIGTERM is noted: the current step finishes, the state is
        saved, and the run ends with exit 130 (after the final save, if it came during it).
        A second one stops at once (`Stopped`): an unfinished write is abandoned and its
        temporary file removed, so the previous checkpoint stays."""
        self.signals.append(signum)
        if len(self.signals) > 1:
            raise Stopped(signum)
