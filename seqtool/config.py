"""The settings of a run, declared once: the cell table, the model's fields and every
training option (with its help line; the `train` command is derived from them).

No torch here: the command line reads these to build `--help` fast.
"""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass, field, fields

from seqtool.errors import SeqtoolError
from seqtool.limits import LIMITS, check_all


@dataclass(frozen=True)
class Cell:
    """A recurrent cell: torch's module, its whole recurrence and one-step functions (by
    name, resolved where torch is loaded) and its gates, in the order torch stacks their weights."""

    name: str
    module: str  # in torch.nn
    fused: str  # in torch: the recurrence over a sequence, on weights given
    step: str  # in torch
    gates: str  # one letter a gate; "" for the plain tanh RNN
    help: str


CELLS = {
    c.name: c
    for c in (
        Cell("rnn", "RNN", "rnn_tanh", "rnn_tanh_cell", "", "tanh RNN"),
        Cell("lstm", "LSTM", "lstm", "lstm_cell", "ifgo", "LSTM"),
        Cell("gru", "GRU", "gru", "gru_cell", "rzn", "GRU"),
    )
}


@dataclass
class ModelConfig:
    """Everything needed to rebuild the network; stored in every checkpoint."""

    n_in: int
    n_out: int
    cell: str = "lstm"
    hidden: int = 32
    layers: int = 1
    dropout: float = 0.0
    learned_start: bool = False  # the state each series starts from is learned (stateful training), not zero
    loss: str = "mse"  # the head: a point forecast (mse: a mean, mae: a median), or a distribution (gaussian, studentt)
    horizon: int = 1  # steps the head forecasts from each position (n_out values each)
    members: int = 1  # an ensemble: networks of `hidden` units side by side, forecasting their median

    @property
    def width(self) -> int:
        """Recurrent units per layer, all members together."""
        return self.hidden * self.members

    def to_dict(self) -> dict:
        return asdict(self)


POINT_LOSSES = ("mse", "mae")  # a point forecast: a mean, a median
LOSSES = (*POINT_LOSSES, "gaussian", "studentt")
SCHEDULES = ("cosine", "plateau", "none")
DEVICES = ("auto", "cpu", "cuda")
IMAGE_FORMATS = ("png", "svg", "pdf")
GRAD_TASKS = ("adding", "sine", "sincos", "multisine")  # gradnorm's generated data
GRAD_LOSSES = ("last", "all")
WINDOW = 50  # --window's default, where targets are not sparse (prepare.window_for)
OPTIMIZERS = ("adam", "sgd")
SCALES = ("global", "series", "naive", "window")
GAPS = ("fill", "refuse")  # empty input cells: carried forward and marked (`data.gaps`), or refused


def _option(default, help: str, choices: tuple | None = None, flag: str | None = None, limit: str = ""):
    """A training option: its default, its help line ({span}: the bounds from limits.py, of
    `limit` where they are not the option's own), the values it takes and, where it is not
    --NAME, its flag."""
    return field(default=default, metadata={"help": help, "choices": choices, "flag": flag, "limit": limit})


@dataclass
class TrainConfig:
    """Every setting of a run; stored in the checkpoint and reused by --resume. The
    `train` command has an option for each field, in this order, with this help."""

    cell: str = _option(ModelConfig.cell, "rnn (tanh), lstm or gru.", tuple(CELLS))
    hidden: int = _option(ModelConfig.hidden, "Units per layer, {span}.")
    layers: int = _option(ModelConfig.layers, "Stacked recurrent layers, {span}.")
    dropout: float = _option(ModelConfig.dropout, "Dropout between stacked layers, {span}.")
    loss: str = _option(
        "mse",
        "mse or mae: a point forecast (a mean, a median); gaussian or studentt: a distribution of each "
        "next value, by its likelihood, with intervals.",
        LOSSES,
    )
    lr: float = _option(1e-2, "Learning rate, {span}.")
    optimizer: str = _option("adam", "adam, or sgd (momentum 0.9).", OPTIMIZERS)
    batch: int = _option(32, "Windows (or streams) per step, {span}.")
    window: int | None = _option(
        None,
        "Steps per training window (per chunk with --stateful), {span}; longer than --burn-in, unless --stateful "
        "\\[default: 50; whole series if targets sparse or series short].",
    )
    stride: int = _option(1, "Steps between window starts, {span}.")
    steps: int | None = _option(None, "Optimizer steps, {span} \\[default: 2000].")
    epochs: float | None = _option(None, "Passes over the data, instead of --steps, {span}.")
    clip: float = _option(0.0, "Clip the global gradient norm to this, {span}; 0: off.")
    schedule: str = _option("cosine", "Learning-rate schedule: cosine, plateau or none.", SCHEDULES)
    val: float = _option(0.1, "Fraction held out for validation (whole series), {span}.")
    patience: int = _option(0, "Stop after this many evaluations without a better val loss, {span}; 0: off.")
    stateful: bool = _option(False, "Carry the state across consecutive chunks (truncated BPTT).")
    burn_in: int = _option(4, "Steps after a zero state left out of the loss (their target is ambiguous), {span}.")
    seed: int = _option(0, "Random seed, {span}: the same seed, the same weights (on CPU).")
    x: str | None = _option(None, "Input columns, comma-separated \\[default: x or x0,x1,...].")
    y: str | None = _option(None, "Target columns, comma-separated \\[default: y or y0,y1,...].")
    diff: str | None = _option(
        None,
        "Difference the series at these lags in turn (1: a trend; 1,12: and a season of 12) and learn the differences; "
        "forecasts are undone to the original scale.",
    )
    log_values: bool = _option(
        False,
        "Learn the logarithm of the series (all values positive), where it grows by a factor; "
        "forecasts are taken back by exp (a median).",
    )
    scale: str = _option(
        "global",
        "global; series: each series divided by its level (mean |x|); naive: by MASE's scale (the --season naive "
        "forecast's MAE); window: each window by its own.",
        SCALES,
    )
    horizon: int = _option(
        1,
        "Steps ahead the model is trained for, {span}: from each position the head forecasts the next H "
        "(direct); rollout and backtest use them.",
        limit="train_horizon",
    )
    ensemble: int = _option(
        1,
        "Train this many networks at once, {span}, each from its own start, side by side in one network; "
        "forecasts are their median.",
    )
    part: str | None = _option(
        None,
        "Train part I of N of the --ensemble (I/N: its members split into N runs of consecutive ones), the "
        "members the whole would train; join the parts with seqtool ensemble (run them side by side: make -j).",
    )
    season: int | None = _option(None, "Season length, {span}: the seasonal naive forecast every report compares with.")
    time_features: bool = _option(
        False,
        "Feed calendar features of t (or of a column of dates) as known inputs, also past the end: "
        "for seasons longer than a window.",
    )
    period: str | None = _option(
        None, "Cycles for --time-features, comma-separated: in steps of a numeric t, in days for dates."
    )
    known: str | None = _option(None, "Columns known in advance (a price), comma-separated: fed, not forecast.")
    static: str | None = _option(
        None, "Per-series attributes, comma-separated: one value per series, a number or a category (other text)."
    )
    gaps: str = _option(
        "fill",
        "Empty input cells in a series: fill (the last value before, with an input saying it was missing) or refuse.",
        GAPS,
    )
    save_every: float = field(default=30.0, metadata={"help": None})  # seconds between checkpoints; not an option
    world_size: int = field(
        default=1, metadata={"help": None}
    )  # processes that trained it (torchrun, --nproc); not an option

    def lags(self) -> tuple[int, ...]:
        """The lags of --diff, in the order they are applied; () for none."""
        if self.diff is None:
            return ()
        parts = str(self.diff).split(",") if isinstance(self.diff, str) else [None]
        try:
            lags = tuple(int(p) for p in parts)
        except (TypeError, ValueError):
            lags = ()
        if not lags or any(lag < 1 or lag > LIMITS["window"].hi for lag in lags) or len(lags) > 4:
            raise SeqtoolError(
                "--diff must be one to four whole numbers of steps, each at least 1, comma-separated (1, 12 or 1,12), "
                f"got {self.diff!r}"
            )
        return lags

    def reshapes(self) -> bool:
        """Whether the run changes the series beyond standardising them, or its targets
        beyond the next step: what a table folder read in place does not serve."""
        reshaped = self.diff or self.log_values or self.scale != "global" or self.horizon > 1
        return bool(reshaped or self.time_features or self.known or self.static)

    def known_columns(self) -> tuple[str, ...]:
        """The columns of --known; () for none."""
        return _columns(self.known, "--known")

    def static_columns(self) -> tuple[str, ...]:
        """The columns of --static; () for none."""
        return _columns(self.static, "--static")

    def periods(self) -> tuple[float, ...]:
        """The cycles of --period; () for none."""
        if self.period is None:
            return ()
        try:
            periods = tuple(float(p) for p in str(self.period).split(","))
        except ValueError:
            periods = (math.nan,)
        if not all(0 < p < 1e9 for p in periods) or len(periods) > 16:
            raise SeqtoolError(
                f"--period must be one to 16 positive numbers, comma-separated (12, or 7,365.25), got {self.period!r}"
            )
        if not self.time_features:
            raise SeqtoolError("--period names the cycles of --time-features: give --time-features too")
        return periods

    @classmethod
    def options(cls) -> list:
        """The fields that are command-line options, in order."""
        return [f for f in fields(cls) if f.metadata.get("help")]

    def check(self) -> None:
        """Every setting within its bounds (limits.py) and consistent with the others."""
        _check(self)


def _check(c: TrainConfig) -> None:
    """`TrainConfig.check`: each setting, then how they go together."""
    for f in c.options():
        choices = f.metadata["choices"]
        if choices and getattr(c, f.name) not in choices:
            raise SeqtoolError(f"--{f.name} must be one of {', '.join(choices)}, got {getattr(c, f.name)!r}")
    check_all(
        hidden=c.hidden, layers=c.layers, dropout=c.dropout, lr=c.lr, batch=c.batch,
        window=c.window, stride=c.stride, steps=c.steps, epochs=c.epochs, clip=c.clip,
        val=c.val, patience=c.patience, burn_in=c.burn_in, seed=c.seed, train_horizon=c.horizon,
        ensemble=c.ensemble,
    )  # fmt: skip
    for name in ("stateful", "time_features", "log_values"):
        if not isinstance(getattr(c, name), bool):
            raise SeqtoolError(f"{name} must be true or false, got {getattr(c, name)!r}")
    if not (isinstance(c.save_every, (int, float)) and 0 <= c.save_every < math.inf):
        raise SeqtoolError(f"save_every must be a number of seconds, got {c.save_every!r}")
    for name in ("x", "y", "known", "static"):
        if getattr(c, name) is not None and not isinstance(getattr(c, name), str):
            raise SeqtoolError(f"--{name} must be column names, got {getattr(c, name)!r}")
    c.lags()
    members(c)
    c.periods()
    c.known_columns()
    c.static_columns()
    check_all(season=c.season)
    _check_together(c)


def members(c: TrainConfig) -> range:
    """The members of the --ensemble a run trains: all, or those of --part I/N (the
    ensemble's members split into N runs of consecutive members, the first ones longer)."""
    if c.part is None:
        return range(c.ensemble)
    given = isinstance(c.part, str) and re.fullmatch(r"([1-9][0-9]{0,2})/([1-9][0-9]{0,2})", c.part)
    i, n = (int(p) for p in given.groups()) if given else (0, 0)
    if not 1 <= i <= n or n > c.ensemble:
        raise SeqtoolError(
            f"--part must be I/N with 1 <= I <= N <= --ensemble ({c.ensemble}): part I of the ensemble's "
            f"members split in N, got {c.part!r:.40}"
        )
    size, extra = divmod(c.ensemble, n)
    first = (i - 1) * size + min(i - 1, extra)
    return range(first, first + size + (i <= extra))


def _columns(value: str | None, option: str) -> tuple[str, ...]:
    """Distinct column names, comma-separated; () for None."""
    names = tuple(n.strip() for n in value.split(",")) if value is not None else ()
    if not all(names) or len(set(names)) < len(names):
        raise SeqtoolError(f"{option} names distinct columns, comma-separated, got {value!r}")
    return names


def _check_together(c: TrainConfig) -> None:
    """Options that exclude or need each other."""
    if c.ensemble > 1 and c.loss not in POINT_LOSSES:
        raise SeqtoolError("--ensemble forecasts the median of its members' points: train it with --loss mse or mae")
    if c.scale == "window" and (c.stateful or (c.window is not None and c.window < 2)):
        raise SeqtoolError(
            "--scale window scales each window of at least 2 steps by its own level: drop --stateful"
            if c.stateful else f"--scale window takes a level over at least 2 steps, got --window {c.window}"
        )  # fmt: skip
    if c.steps is not None and c.epochs is not None:
        raise SeqtoolError("give --steps or --epochs, not both")
    both = [n for n in c.known_columns() if n in c.static_columns()]
    if both:
        raise SeqtoolError(
            f"column {both[0]!r} is given to --known and --static: a column is fed one way, --known for values "
            "that change over time, --static for one value per series"
        )
    if not c.stateful and c.scale != "window" and c.window is not None and c.burn_in >= c.window:
        raise SeqtoolError(
            f"--window {c.window} is not longer than --burn-in {c.burn_in}: every step of "
            f"every window would be left out of the loss; use a longer --window or a smaller --burn-in"
        )


TRAIN_PANELS = {  # `train --help` shows its options in these panels, in this order (the fields')
    "Model": ("cell", "hidden", "layers", "dropout", "loss", "horizon", "ensemble", "part"),
    "Optimisation": (
        "lr", "optimizer", "batch", "window", "stride", "steps", "epochs", "clip", "schedule", "val", "patience",
        "stateful", "burn_in", "seed",
    ),
    "Data and transforms": (
        "x", "y", "diff", "log_values", "scale", "season", "time_features", "period", "known", "static", "gaps",
    ),
    "Output": ("out", "log", "quiet"),
    "Runtime": ("resume", "device", "threads", "nproc"),
}  # fmt: skip
