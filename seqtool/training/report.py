"""What a run says: the `train --log` table as it grows, the progress bar or lines, the
summary line, and the saved model beside the naive forecasts on the validation steps."""

from __future__ import annotations

import contextlib
import copy
import math
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from rich import progress as rich

from seqtool import outputs
from seqtool.config import TrainConfig, members
from seqtool.data.tables import TABLE_FORMATS, Table, csv_text, positions, write_table
from seqtool.errors import RunFailed, SeqtoolError
from seqtool.forecast.forecaster import Forecaster
from seqtool.forecast.metrics import line, remedy, score
from seqtool.forecast.predict import baselines, one_step
from seqtool.training.state import LOG_COLUMNS

if TYPE_CHECKING:
    from seqtool.training.run import Run


@dataclass
class TrainResult:
    path: Path
    steps: int
    seconds: float
    train_loss: float
    val_loss: float
    best_step: int
    stopped: str  # "done", "early stop", "already done"


def history_table(history: list[dict]) -> Table:
    """The `train --log` table: one row per evaluation (docs/formats.md, Tables)."""
    return Table({n: np.array([float(row[n]) for row in history], dtype=np.float64) for n in LOG_COLUMNS}, "log")


@contextlib.contextmanager
def growing_log(dest, history: list[dict]) -> Iterator[Callable[[dict], None] | None]:
    """`train --log FILE` as the run goes: gives the function that adds the row just
    appended to `history`. A CSV grows by that row, flushed, so `tail -f` and `seqtool plot`
    follow the run; an npz or Parquet file, which cannot grow, is rewritten (atomically) each time. It starts
    with the rows the run already has: a resumed run writes its checkpoint's history again.
    A row that cannot be written, a pipe's reader gone included, raises RunFailed (the
    loop saves the run first)."""
    if dest is None:
        yield None
    elif outputs.format_of(outputs.target(dest), TABLE_FORMATS) in (".npz", ".parquet"):

        def rewrite(row: dict | None = None) -> None:
            with _log_errors(dest):
                write_table(history_table(history), dest)

        rewrite()
        yield rewrite
    else:
        with outputs.open_growing(dest) as f:

            def write(rows: list[dict], header: bool = False) -> None:
                with _log_errors(dest):
                    f.write(csv_text(history_table(rows), header))
                    f.flush()

            write(history, header=True)
            yield lambda row: write([row])


@contextlib.contextmanager
def _log_errors(dest) -> Iterator[None]:
    """`outputs.write_errors`, and a closed pipe too: a log whose reader has gone is a
    failed write, not the quiet end of a pipeline (`| head`) that a table's output is."""
    try:
        with outputs.write_errors(str(dest)):
            yield
    except BrokenPipeError:
        raise RunFailed(f"{dest}: cannot write: its reader has gone (a closed pipe)") from None


def result_of(run: Run, stopped: str) -> TrainResult:
    last = run.history[-1] if run.history else {"train_loss": math.nan, "val_loss": math.nan}
    return TrainResult(
        run.out, run.step, run.seconds, last["train_loss"], last["val_loss"], run.best.step or run.step, stopped
    )


def _members(c: TrainConfig) -> str:
    """'5 x ', or the members of a --part ('members 4-5 of 5 x ', 'member 5 of 5 x '); '' for one network."""
    if c.ensemble == 1:
        return ""
    m = members(c)
    if len(m) == c.ensemble:
        return f"{c.ensemble} x "
    which = f"member {m.stop}" if len(m) == 1 else f"members {m.start + 1}-{m.stop}"
    return f"{which} of {c.ensemble} x "


def summary(run: Run, r: TrainResult) -> str:
    c = run.config
    mode = f"{run.source.count} windows"
    if c.stateful:
        series = len(run.data.rows.lengths)
        cut = f" cut from {series} series" if run.source.count > series else ""
        mode = f"{run.source.count} streams{cut}, stateful"
    text = (
        f"seqtool: trained {_members(c)}{c.cell} ({c.layers} x {c.hidden}) on {mode} "
        f"for {r.steps} steps "
        f"({r.steps / run.source.per_epoch:.1f} epochs) in {r.seconds:.1f} s "
        f"on {run.threads} thread{'s' if run.threads > 1 else ''}"
        f"{f' x {run.world.size} processes' if run.world.size > 1 else ''}"
        f"{' (early stop)' if r.stopped == 'early stop' else ''}; train loss {r.train_loss:.3g}"
    )
    if run.data.val is not None:
        text += f", val loss {r.val_loss:.3g} (best {run.best.val:.3g} at step {r.best_step})"
    return text + f" -> {run.out}"


def against_naive(run: Run) -> list[str]:
    """The saved model's one-step error on the validation steps, on the original scale,
    beside the naive forecasts' on the same steps; and, where it loses, the likely remedy."""
    if run.data.held_out is None:
        return []
    net = copy.deepcopy(run.model).cpu()
    if run.best.weights is not None:
        net.load_state_dict(run.best.weights)
    m = Forecaster.of(net, run.data.scaling, run.data.info, str(run.out))
    table, scored = run.data.held_out
    naive, seasonal = baselines(m, table, positions(table.lengths), m.season)
    try:
        forecasts = one_step(m, table)
    except SeqtoolError as e:  # the run is saved; its comparison cannot be made
        return [f"seqtool: no comparison with the naive forecast on validation: {e}"]
    scores = score(forecasts, table.truth, np.concatenate(scored), naive, seasonal)
    if scores["mae"] is None:
        return []
    lines = [f"seqtool: validation, one step ahead, original scale: {line(scores)} over {scores['steps']} steps"]
    advice = remedy({**scores, "season": m.season}, m.scaling.diff.lags)
    return lines + ([f"seqtool: {advice}"] if advice else [])


class Progress:
    """A rich bar when stderr is a terminal; otherwise a plain line every tenth of the run."""

    def __init__(self, total: int, quiet: bool):
        self.total, self.quiet, self.bar, self.next_line = total, quiet, None, 0
        self.start = time.perf_counter()
        if not quiet and sys.stderr.isatty():
            self.bar = rich.Progress(
                rich.TextColumn("train"), rich.BarColumn(), rich.MofNCompleteColumn(), rich.TimeRemainingColumn(),
                rich.TextColumn("{task.fields[info]}"), transient=True,
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
