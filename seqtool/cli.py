"""The command line: each command parses its options and calls one library function.

Options declared elsewhere are not repeated here: `train` has an option for each field of
`config.TrainConfig` with a help line, and `gen` a command for each kind that
`generators.COMMANDS` declares, made on first use. Heavy modules (numpy, torch, matplotlib)
are imported inside the commands, so that `seqtool --help` and `seqtool gen` start fast.
"""

from __future__ import annotations

import contextlib
import inspect
import json as _json
import os
import sys
import typing
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal, Optional

import typer
from typer.core import TyperGroup

from seqtool import __version__
from seqtool.config import DEVICES, GRAD_LOSSES, GRAD_TASKS, IMAGE_FORMATS, TRAIN_PANELS, ModelConfig, TrainConfig
from seqtool.errors import Interrupted, PipeClosed, SeqtoolError, guarded, signals_stop, warnings_as_lines
from seqtool.limits import check
from seqtool.limits import interval as span

if TYPE_CHECKING:
    from seqtool.data.generators import Kind


class _Main(TyperGroup):
    """The top-level group: every failure becomes `seqtool: error: ...` and an exit code."""

    def main(self, args: Any = None, prog_name: Any = None, **extra: Any) -> Any:
        argv = list(sys.argv[1:] if args is None else args)
        debug = "--debug" in argv or os.environ.get("SEQTOOL_DEBUG", "") not in ("", "0")
        argv = [a for a in argv if a != "--debug"]
        extra["standalone_mode"] = False
        from seqtool.training.distributed import end, silence_launched

        _plain_flags(self)
        silence_launched()  # a rank of `train --nproc` other than 0, from its first line on
        with signals_stop(), warnings_as_lines():
            code = guarded(lambda: TyperGroup.main(self, argv, prog_name or "seqtool", **extra), debug)
        end(code)  # a rank of a distributed job: now
        sys.exit(code)

    def invoke(self, ctx: Any) -> Any:
        try:
            result = super().invoke(ctx)
            sys.stdout.flush()
            return result
        except BrokenPipeError as e:
            raise PipeClosed() from e
        except KeyboardInterrupt as e:  # typer would turn it into a silent exit 130
            raise Interrupted(getattr(e, "name", "SIGINT")) from e


app = typer.Typer(
    cls=_Main,
    name="seqtool",
    no_args_is_help=True,
    context_settings={"help_option_names": ["-h", "--help"]},
    help="Recurrent networks on time series, as composable commands.\n\n"
    "Tables go through pipes: [bold]seqtool gen sine | seqtool train --cell lstm[/bold]",
)


def _plain_flags(command: Any) -> None:
    """A flag shows no `<bool>` in --help (the flag says it all), and a docstring's
    paragraphs are each one line (rich keeps their line breaks, then wraps again), in every
    command below, --help itself too (made on first use)."""
    if getattr(command, "help", None):
        command.help = "\n\n".join(" ".join(p.split()) for p in inspect.cleandoc(command.help).split("\n\n"))
    for param in getattr(command, "params", []):
        if getattr(param, "is_flag", False) and param.metavar is None:
            param.metavar = ""
    made = command.get_help_option

    def help_option(ctx: Any) -> Any:
        option = made(ctx)
        if option is not None:
            option.metavar = ""
        return option

    command.get_help_option = help_option
    for sub in getattr(command, "commands", {}).values():
        _plain_flags(sub)


def _panel(name: str) -> str:
    """The `train --help` panel of option `name` (config.TRAIN_PANELS)."""
    return next(panel for panel, names in TRAIN_PANELS.items() if name in names)


class _Kinds(TyperGroup):
    """`seqtool gen`: a command per kind that generators.COMMANDS declares, made on first use (so
    that numpy loads under `gen` only); an unknown kind gets the list of kinds, not click's
    'No such command'."""

    def _kinds(self) -> dict[str, Any]:
        if not self.commands:
            from seqtool.data.generators import COMMANDS

            for kind in COMMANDS.values():
                self.add_command(_gen_command(kind), kind.name)
            _plain_flags(self)
        return self.commands

    def list_commands(self, ctx: Any) -> list[str]:
        return list(self._kinds())

    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        return self._kinds().get(cmd_name)

    def resolve_command(self, ctx: Any, args: list[str]) -> Any:
        if args and args[0] not in self._kinds() and not args[0].startswith("-"):
            raise SeqtoolError(f"unknown kind {args[0]!r}; choose from {', '.join(self._kinds())}")
        return super().resolve_command(ctx, args)


gen_app = typer.Typer(
    cls=_Kinds,
    no_args_is_help=True,
    help="Generate a series table: CSV on stdout, or CSV, npz or Parquet with -o.\n\n"
    "Example: [bold]seqtool gen sine --n-series 4 --seed 1 -o sine.csv[/bold]",
)
app.add_typer(gen_app, name="gen")


def _version(value: bool) -> None:
    if value:
        typer.echo(f"seqtool {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Show the version.")
    ] = False,
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks (also SEQTOOL_DEBUG=1).")] = False,
) -> None:
    """Recurrent networks on time series, as composable commands."""


# --- shared options -------------------------------------------------------------------


def _option(
    name: str, annotation: Any, default: Any, help: str, key: str = "", flag: Optional[str] = None,
    short: Optional[str] = None, choices: Optional[tuple] = None, panel: Optional[str] = None,
) -> inspect.Parameter:  # fmt: skip
    """A parameter that typer shows as the option `flag` (default: typer's --NAME) and `short`,
    in the help panel `panel`; "{span}" in `help` stands for the bounds of `key` (default:
    `name`) in limits.py. With `choices`, the values it takes (`Choice`)."""
    if "{span}" in help:
        help = help.replace("{span}", span(key or name))
    flags = [flag] if flag else []  # none: typer's --NAME, and --NAME/--no-NAME for a bool
    if short:
        flags = [flag or f"--{name.replace('_', '-')}", short]
    if choices:
        annotation = Choice(choices)
    option = typer.Option(*flags, help=help, case_sensitive=False, rich_help_panel=panel)
    return inspect.Parameter(
        name, inspect.Parameter.POSITIONAL_OR_KEYWORD, default=default, annotation=Annotated[annotation, option]
    )


def Choice(values: tuple) -> Any:
    """The type of an option that takes one of `values`: `--help` lists them, shell completion
    offers them, and any case is accepted (--cell LSTM is lstm)."""
    return Literal[values]  # type: ignore[valid-type]


def _with_options(
    options: list[inspect.Parameter], before: str
) -> Callable[[Callable[..., None]], Callable[..., None]]:
    """Give a command that takes `**options` these options, listed before its parameter `before`."""

    def decorate(command: Callable[..., None]) -> Callable[..., None]:
        signature = inspect.signature(command, eval_str=True)
        own = [p for p in signature.parameters.values() if p.kind is not p.VAR_KEYWORD]
        at = [p.name for p in own].index(before)
        command.__signature__ = signature.replace(parameters=[*own[:at], *options, *own[at:]])  # type: ignore[attr-defined]
        return command

    return decorate


def _given(ctx: typer.Context, names: Any) -> list[str]:
    """The options among `names` that the command line gave (a default does not count), as --NAME.
    (click's ParameterSource is compared by name: typer has vendored click since 0.26.)"""
    return [
        f"--{n.replace('_', '-')}" for n in names if getattr(ctx.get_parameter_source(n), "name", None) == "COMMANDLINE"
    ]


Data = Annotated[
    Optional[str],
    typer.Argument(help="A CSV, npz or Parquet table; '-' or nothing reads standard input.", show_default=False),
]
XCols = Annotated[
    Optional[str], typer.Option("--x", help="Input columns, comma-separated \\[default: x or x0,x1,...].")
]
YCols = Annotated[
    Optional[str], typer.Option("--y", help="Target columns, comma-separated \\[default: y or y0,y1,...].")
]
Level = Annotated[
    float,
    typer.Option(
        help=f"The interval's level in percent, {span('level')}, "
        "for a calibrated model or one trained with --loss gaussian or studentt: yhat_lo, yhat_hi."
    ),
]
INTERVALS = ("model", "conformal", "none")
Intervals = Annotated[
    Optional[Choice(INTERVALS)],
    typer.Option(
        help="Where intervals come from: model (a distribution head), conformal (seqtool calibrate's errors) or "
        "none \\[default: conformal where calibrated, else model where it has a distribution].",
        case_sensitive=False,
        show_default=False,
    ),
]


def samples_option(where: str) -> Any:
    """--samples of rollout and backtest: sample paths `where`."""
    return Annotated[
        int,
        typer.Option(
            help=f"Sample paths {where}, {span('samples')}, for a model trained with --loss gaussian or studentt: "
            "yhat is their mean (median with --log-values), yhat_lo and yhat_hi their quantiles at --level; "
            "0: the mean run."
        ),
    ]


def horizon_option(what: str) -> Any:
    """backtest's and calibrate's --horizon (required)."""
    return Annotated[int, typer.Option(help=f"{what}, {span('backtest_horizon')}.", show_default=False)]


def start_option(what: str) -> Any:
    """backtest's and calibrate's --start: the first origin."""
    return Annotated[
        float,
        typer.Option(
            help=f"{what}: a fraction of each series in (0, 1), a step index (a whole number >= 1), "
            "or -K: K steps before each series' end."
        ),
    ]


Stride = Annotated[int, typer.Option(help=f"Steps between origins, {span('stride')}.")]
Adaptive = Annotated[
    bool,
    typer.Option(
        help="Conformal intervals corrected as origins pass: each series' level moves by its own misses "
        "(adaptive conformal inference), so coverage recovers after a break."
    ),
]
Seed = Annotated[int, typer.Option("--seed", help=f"Random seed, {span('seed')}: the same seed, the same result.")]


# --- train, predict, rollout -----------------------------------------------------------

Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="No progress or summary on stderr.")]
Metrics = Annotated[Optional[Path], typer.Option(help="Also write the metrics to FILE as JSON.")]
TableOut = Annotated[
    Optional[Path],
    typer.Option("--output", "-o", help="Write the table to FILE (.csv, .npz or .parquet) instead of CSV on stdout."),
]
THREADS_HELP = (
    f"CPU threads for torch, {span('threads')} \\[default: as many as the model's size pays for, within the cores "
    "free now]."
)
Threads = Annotated[Optional[int], typer.Option(help=THREADS_HELP)]
Model = Annotated[Path, typer.Argument(help="A checkpoint written by seqtool train.", show_default=False)]
Season = Annotated[
    Optional[int],
    typer.Option(
        help=f"Season length for the seasonal naive forecast, {span('season')} "
        "\\[default: the model's --season, if any]."
    ),
]


def _training_options() -> list[inspect.Parameter]:
    """An option of `train` for each field of TrainConfig with a help line: its type,
    default, help line and flag, in the order of the fields."""
    types = typing.get_type_hints(TrainConfig)
    return [
        _option(
            f.name,
            types[f.name],
            f.default,
            f.metadata["help"],
            key=f.metadata["limit"],
            flag=f.metadata.get("flag"),
            choices=f.metadata["choices"],
            panel=_panel(f.name),
        )
        for f in TrainConfig.options()
    ]


@app.command()
@_with_options(_training_options(), before="out")
def train(
    ctx: typer.Context,
    data: Data = None,
    out: Annotated[
        Path, typer.Option("--out", "-o", help="Checkpoint to write (one writer at a time).", rich_help_panel="Output")
    ] = Path("model.pt"),
    log: Annotated[
        Optional[Path],
        typer.Option(
            help="Write the training log (a row per evaluation) to FILE (.csv, .npz or .parquet).",
            rich_help_panel="Output",
        ),
    ] = None,
    resume: Annotated[
        bool, typer.Option(help="Continue the run saved in --out, with its settings.", rich_help_panel="Runtime")
    ] = False,
    device: Annotated[
        Choice(DEVICES), typer.Option(help="auto, cpu or cuda.", case_sensitive=False, rich_help_panel="Runtime")
    ] = "auto",
    threads: Annotated[Optional[int], typer.Option(help=THREADS_HELP, rich_help_panel="Runtime")] = None,
    nproc: Annotated[
        int,
        typer.Option(
            help=f"Train in N processes on this machine, {span('nproc')}, each on its share of every batch "
            "(torch.distributed; as torchrun --nproc-per-node N -m seqtool train ...).",
            rich_help_panel="Runtime",
        ),
    ] = 1,
    quiet: Annotated[
        bool, typer.Option("--quiet", "-q", help="No progress or summary on stderr.", rich_help_panel="Output")
    ] = False,
    **options: Any,
) -> None:
    """Train a recurrent network on a series table; prints the checkpoint's path.

    No target column: next-step forecasting. Targets y: sequence mapping x -> y.

    Example: seqtool gen sine | seqtool train --cell lstm
    """
    check("nproc", nproc)
    given = _given(ctx, options) if resume else []
    if given:
        raise SeqtoolError(f"--resume continues with the settings saved in {out}; drop {', '.join(given)}")
    under = os.environ.get("WORLD_SIZE")  # under a launcher already (torchrun): its processes are these
    if nproc > 1 and under is not None and under != str(nproc):
        raise SeqtoolError(f"--nproc {nproc} under a launcher of WORLD_SIZE={under} processes: give one or the other")
    if nproc > 1 and under is None:
        from seqtool.training.distributed import check_input
        from seqtool.training.launcher import launch

        check_input(nproc, data, f"--nproc {nproc}")
        return launch(nproc, sys.argv[1:], str(out), lambda argv: app(args=argv, prog_name="seqtool"))
    from seqtool.training.run import train as run  # (after: --nproc forks before torch loads)

    result = run(data, out, TrainConfig(**options), resume=resume, log=log, quiet=quiet, device=device, threads=threads)
    typer.echo(str(result.path))


@app.command()
def predict(
    model: Model,
    data: Data = None,
    warmup: Annotated[
        int, typer.Option(help=f"Leave the first K steps of each series out of the metrics, {span('warmup')}.")
    ] = 0,
    season: Season = None,
    level: Level = 80.0,
    intervals: Intervals = None,
    metrics: Metrics = None,
    output: TableOut = None,
    threads: Threads = None,
    quiet: Quiet = False,
) -> None:
    """Teacher-forced one-step predictions: the table plus yhat.

    An interval beside, for a calibrated model or one of a distribution; metrics on
    stderr, beside the naive forecasts' on the same steps.

    Example: seqtool gen sine --seed 1 | seqtool predict model.pt --warmup 5 > pred.csv
    """
    from seqtool.forecast.predict import predict as run

    run(
        model,
        data,
        warmup=warmup,
        season=season,
        level=level,
        intervals=intervals,
        metrics=metrics,
        output=output or "-",
        quiet=quiet,
        threads=threads,
    )


@app.command()
def rollout(
    model: Model,
    data: Data = None,
    warmup: Annotated[
        Optional[int],
        typer.Option(
            help=f"True steps to warm up on, {span('rollout_warmup')} "
            "\\[default: 10; with --horizon, all of each series]."
        ),
    ] = None,
    steps: Annotated[
        Optional[int],
        typer.Option(help=f"Free-running steps, {span('free_steps')} \\[default: to the end of each series]."),
    ] = None,
    horizon: Annotated[
        int, typer.Option(help=f"Go this many steps past the end of each series, {span('horizon')}.")
    ] = 0,
    samples: samples_option("per series") = 0,
    level: Level = 80.0,
    intervals: Intervals = None,
    paths: Annotated[
        Optional[Path],
        typer.Option(
            "--paths", help="Write the sample paths to FILE (.csv, .npz or .parquet): series, path, t, phase, yhat."
        ),
    ] = None,
    seed: Seed = 0,
    season: Season = None,
    metrics: Metrics = None,
    output: TableOut = None,
    threads: Threads = None,
    quiet: Quiet = False,
) -> None:
    """Free-running generation: the model's own predictions fed back as inputs.

    Example: seqtool rollout model.pt data/daily_temperature.csv --horizon 30
    """
    from seqtool.forecast.rollout import rollout as run

    run(
        model,
        data,
        warmup=warmup,
        steps=steps,
        horizon=horizon,
        samples=samples,
        level=level,
        intervals=intervals,
        paths=paths,
        seed=seed,
        season=season,
        metrics=metrics,
        output=output or "-",
        quiet=quiet,
        threads=threads,
    )


@app.command()
def backtest(
    model: Model,
    data: Data = None,
    horizon: horizon_option("Steps to forecast from each origin") = ...,  # type: ignore[assignment]
    start: start_option("First origin") = 0.8,
    stride: Stride = 1,
    samples: samples_option("from each origin") = 0,
    level: Level = 80.0,
    intervals: Intervals = None,
    adaptive: Adaptive = False,
    seed: Seed = 0,
    season: Season = None,
    metrics: Metrics = None,
    output: TableOut = None,
    threads: Threads = None,
    quiet: Quiet = False,
) -> None:
    """Rolling-origin evaluation: forecasts from many origins, scored by h.

    From every origin, warm up on all history before it and forecast --horizon steps
    free-running; one row per (series, origin, h), with the naive forecasts beside;
    metrics for each h and overall on stderr.

    Example: seqtool backtest air.pt data/airline.csv --horizon 12 | seqtool plot -o bt.png
    """
    from seqtool.forecast.backtest import backtest as run

    run(
        model,
        data,
        horizon=horizon,
        start=start,
        stride=stride,
        samples=samples,
        level=level,
        intervals=intervals,
        adaptive=adaptive,
        seed=seed,
        season=season,
        metrics=metrics,
        output=output or "-",
        quiet=quiet,
        threads=threads,
    )


@app.command()
def calibrate(
    model: Model,
    data: Data = None,
    horizon: horizon_option("Steps ahead to calibrate") = ...,  # type: ignore[assignment]
    start: start_option("First origin, where the model was not trained") = 0.8,
    stride: Stride = 1,
    level: Annotated[
        float, typer.Option(help=f"The highest level to serve, {span('level')}: enough origins for it, or refused.")
    ] = 95.0,
    out: Annotated[Path, typer.Option("--output", "-o", help="The calibrated checkpoint.")] = ...,
    threads: Threads = None,
    quiet: Quiet = False,
) -> None:
    """Calibrate a model's intervals on data it was not trained on (conformal).

    Its backtest errors per step ahead, scaled per series, are stored in a copy of the
    checkpoint; its forecasts then have conformal intervals at any --level.

    Example: seqtool calibrate m.pt later.csv --horizon 12 -o cal.pt
    """
    from seqtool.forecast.calibrate import calibrate as run

    run(model, data, horizon=horizon, start=start, stride=stride, level=level, output=out, quiet=quiet, threads=threads)
    typer.echo(str(out))


# --- plot --------------------------------------------------------------------------------


@app.command()
def plot(
    files: Annotated[
        Optional[list[str]],
        typer.Argument(help="Tables written by seqtool (or yours); '-' or nothing reads stdin.", show_default=False),
    ] = None,
    output: Annotated[Optional[Path], typer.Option("--output", "-o", help="The image (.png, .svg, .pdf).")] = None,
    outdir: Annotated[Optional[Path], typer.Option(help="One image per input in DIR, named after it.")] = None,
    overlay: Annotated[bool, typer.Option(help="Draw all inputs (of one kind) on one figure.")] = False,
    label: Annotated[Optional[list[str]], typer.Option(help="Name an input in the legend (once per input).")] = None,
    format: Annotated[
        Choice(IMAGE_FORMATS),
        typer.Option("--format", help="Image format with --outdir or by default: png, svg, pdf.", case_sensitive=False),
    ] = "png",
    title: Annotated[Optional[str], typer.Option(help="Figure title.")] = None,
    size: Annotated[
        Optional[str], typer.Option(help=f"WIDTHxHEIGHT in pixels, each {span('pixels')} \\[default: by kind].")
    ] = None,
    dpi: Annotated[int, typer.Option(help=f"Dots per inch, {span('dpi')}.")] = 100,
    logy: Annotated[bool, typer.Option(help="Log scale on the value axis.")] = False,
    series: Annotated[
        Optional[str], typer.Option(help="Series ids to draw, comma-separated \\[default: the first 6].")
    ] = None,
    x: XCols = None,
    y: YCols = None,
) -> None:
    """Draw each table as the picture it calls for; prints the image paths.

    Kinds, told apart by their columns: a series table, predict output, rollout output,
    backtest output, a train --log, gradnorm output.

    Examples: seqtool gen sine | seqtool plot -o sine.png;
    seqtool plot out/*.csv --outdir plots/;
    seqtool plot lstm.csv gru.csv --overlay -o losses.png
    """
    from seqtool.plotting import parse_size
    from seqtool.plotting import plot as run

    paths = run(
        files or [None], output=output, outdir=outdir, overlay=overlay, labels=label, fmt=format,
        title=title, size=parse_size(size), dpi=dpi, logy=logy,
        series=series.split(",") if series else None, x=x, y=y,
    )  # fmt: skip
    from seqtool.outputs import to_stdout

    for path in paths:  # an image that went to standard output is not followed by its name
        if not to_stdout(path):
            typer.echo(str(path))


# --- gradnorm ----------------------------------------------------------------------------


_FRESH = ("cell", "hidden", "layers", "init_scale", "forget_bias")  # gradnorm's options for fresh models


@app.command()
def gradnorm(
    ctx: typer.Context,
    inputs: Annotated[
        Optional[list[str]],
        typer.Argument(
            help="[MODEL] [DATA]: a checkpoint and/or a table; neither: fresh models on a generated task.",
            show_default=False,
        ),
    ] = None,
    cell: Annotated[str, typer.Option(help="Cells of fresh models, comma-separated.")] = "rnn,lstm,gru",
    hidden: Annotated[
        int, typer.Option(help=f"Units per layer of fresh models, {span('hidden')}.")
    ] = ModelConfig.hidden,
    layers: Annotated[int, typer.Option(help=f"Layers of fresh models, {span('layers')}.")] = ModelConfig.layers,
    init_scale: Annotated[
        Optional[float],
        typer.Option(help=f"Rescale each recurrent matrix to this spectral radius, {span('init_scale')}."),
    ] = None,
    forget_bias: Annotated[
        float, typer.Option(help=f"Forget-gate bias of a fresh LSTM (PyTorch's init: 0), {span('forget_bias')}.")
    ] = 1.0,
    seed: Seed = 0,
    task: Annotated[
        Choice(GRAD_TASKS),
        typer.Option(help="Generated data without DATA: adding, sine, sincos, multisine.", case_sensitive=False),
    ] = "adding",
    length: Annotated[
        int, typer.Option("--length", "-l", help=f"Steps of generated sequences, {span('grad_length')}.")
    ] = 100,
    batch: Annotated[int, typer.Option(help=f"Sequences in the batch, {span('grad_batch')}.")] = 64,
    loss: Annotated[
        Choice(GRAD_LOSSES),
        typer.Option(help="Loss at the last step with a target, or at all steps.", case_sensitive=False),
    ] = "last",
    summary: Annotated[
        Optional[Path],
        typer.Option(help="Also write the summary (ratios, parameter gradients, singular values) as JSON."),
    ] = None,
    output: TableOut = None,
    threads: Threads = None,
    quiet: Quiet = False,
) -> None:
    """Gradient norms through time, ||dL/dh_t|| per step and layer: vanishing or exploding?

    Examples: seqtool gradnorm --cell rnn,lstm,gru --length 100 | seqtool plot -o g.png;
    seqtool gradnorm model.pt data.csv
    """
    from seqtool.gradients import gradnorm as run

    model, data = _model_and_data(inputs or [])
    given = _given(ctx, _FRESH) if model is not None else []
    if given:
        raise SeqtoolError(f"{', '.join(given)}: for fresh models only; the model {model} brings its own")
    cells = tuple(c.strip().lower() for c in cell.split(",") if c.strip())
    run(
        model, data, cells=cells, hidden=hidden, layers=layers, init_scale=init_scale,
        forget_bias=forget_bias, seed=seed, task=task, length=length, batch=batch, loss=loss,
        summary=summary, output=output or "-", quiet=quiet, threads=threads,
    )  # fmt: skip


def _model_and_data(inputs: list[str]) -> tuple[Optional[str], Optional[str]]:
    """[MODEL] [DATA]: with one path, a seqtool checkpoint is the model, anything else the data."""
    if len(inputs) > 2:
        raise SeqtoolError("gradnorm takes at most a MODEL and a DATA path")
    if len(inputs) == 2:
        return inputs[0], inputs[1]
    from seqtool.model.checkpoint import is_checkpoint

    if len(inputs) == 1 and inputs[0] != "-" and is_checkpoint(inputs[0]):
        return inputs[0], None
    return None, (inputs[0] if inputs else None)


# --- ensemble --------------------------------------------------------------------------


@app.command()
def ensemble(
    models: Annotated[list[str], typer.Argument(help="Checkpoints of one model: columns, transforms, architecture.")],
    out: Annotated[Path, typer.Option("--output", "-o", help="The ensemble's checkpoint.")] = ...,
) -> None:
    """Join checkpoints into one ensemble that forecasts their median.

    As train --ensemble does; every command reads it as one model. The members must scale
    the data alike: trained on the same table with --val 0 (or the same split), with
    different seeds.

    Example: seqtool ensemble a.pt b.pt c.pt -o abc.pt  (each from make -j)
    """
    from seqtool.model.ensemble import ensemble as run

    config = run(models, out)
    typer.echo(str(out))
    typer.echo(f"seqtool: {config.members} networks in {out}", err=True)


# --- info ------------------------------------------------------------------------------


@app.command()
def info(
    data: Data = None,
    x: XCols = None,
    y: YCols = None,
    json: Annotated[bool, typer.Option("--json", help="One JSON object (docs/formats.md, Info JSON).")] = False,
) -> None:
    """Check a table and show what seqtool sees in it: series, columns, task.

    Example: seqtool info data/daily_temperature.csv --x value
    """
    from seqtool.data.reading import read_history
    from seqtool.data.tables import describe, description

    seen = describe(read_history(data, x, y))
    typer.echo(_json.dumps(seen) if json else "\n".join(description(seen)))


@app.command()
def profile(
    data: Data = None,
    season: Annotated[int, typer.Option(help=f"Season length, {span('season')}.", show_default=False)] = ...,
    lag: Annotated[
        int,
        typer.Option(
            help=f"Read only steps at least this many before each step, {span('profile_lag')}: the longest "
            "horizon forecast from the column.",
            show_default=False,
        ),
    ] = ...,
    ahead: Annotated[
        Optional[int], typer.Option(help=f"Rows past each series' end, {span('profile_ahead')} \\[default: --lag].")
    ] = None,
    x: XCols = None,
    output: TableOut = None,
) -> None:
    """Add each series' seasonal profile from its own past: a column known in advance.

    NAME_profile beside each input column: the mean change at each phase of the season over
    the steps at least --lag before, over the mean absolute change; rows past the end carry
    it on. Train on it with --known NAME_profile.

    Example: seqtool profile m.csv --x value --season 12 --lag 18 -o p.csv
    """
    from seqtool.data.profile import profile as run

    run(data, season=season, lag=lag, ahead=ahead, x=x, output=output or "-")


@app.command()
def convert(
    data: Data = None,
    out: Annotated[Path, typer.Option("--output", "-o", help="The table folder to write (a new folder).")] = ...,
    x: XCols = None,
    y: YCols = None,
) -> None:
    """Convert a table to a folder that train reads in place (bigger than memory).

    A CSV is read a chunk at a time, a Parquet file a batch of rows at a time, never whole.

    Example: seqtool convert big.csv --x value -o big.seq && seqtool train big.seq
    """
    from seqtool.data.folders import convert as run

    done = run(data, out, x, y)
    typer.echo(done.path)
    typer.echo(f"seqtool: {done.rows:,} rows of {done.series:,} series in {done.path}", err=True)


@app.command()
def export(
    model: Model,
    out: Annotated[Path, typer.Option("--output", "-o", help="The ONNX file to write (.onnx).")] = ...,
) -> None:
    """Export a model's network as ONNX, its scaling and transforms inside as JSON.

    The state is an input and an output: one call runs one step or a sequence
    (docs/formats.md, ONNX). Needs the onnx package (seqtool[export]).

    Example: seqtool export model.pt -o model.onnx
    """
    from seqtool.model.export import export as run

    typer.echo(run(model, out))


# --- gen -----------------------------------------------------------------------------

Output = Annotated[
    Optional[Path],
    typer.Option("--output", "-o", help="Write to FILE (.csv, .npz or .parquet) instead of CSV on stdout."),
]


def _gen_command(kind: Kind) -> Any:
    """The click command `seqtool gen KIND`: the kind's declared options, then --output."""

    def command(output: Output = None, **options: Any) -> None:
        from seqtool.data.tables import check_table_output, write_table

        check_table_output(output)
        write_table(kind.function(**options), output)

    command.__doc__ = f"{kind.summary}\n\nExample: {kind.example}\n\nTrain and judge it: {kind.pipeline}"
    options = [
        _option(o.name, annotation, default, o.help, o.key, short=o.short)
        for o, annotation, default in kind.parameters()
    ]
    one = typer.Typer(add_completion=False)
    one.command(kind.name)(_with_options(options, before="output")(command))
    return typer.main.get_command(one)


def main() -> None:
    """Console-script entry point. A command that loaded torch or pyarrow ends, its output
    flushed, without the interpreter's teardown of them: torch's takes half a second to a
    second of freeing what the process drops anyway, and pyarrow's threads can abort the
    process there (SIGABRT, apache/arrow#34314)."""
    try:
        app()
    except SystemExit as e:
        if ("torch" in sys.modules or "pyarrow" in sys.modules) and isinstance(e.code, (int, type(None))):
            for stream in (sys.stdout, sys.stderr):
                with contextlib.suppress(OSError, ValueError):
                    stream.flush()
            os._exit(e.code or 0)
        raise
