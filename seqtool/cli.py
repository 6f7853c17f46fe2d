"""The command line: each command parses its options and calls one library function.

Heavy modules (numpy, torch, matplotlib) are imported inside the commands, so that
`seqtool --help` and `seqtool gen` start fast.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from typer.core import TyperGroup

from . import __version__
from .errors import Interrupted, PipeClosed, SeqtoolError, guarded, signals_stop, warnings_as_lines
from .limits import LIMITS
from .limits import interval as span


class _Main(TyperGroup):
    """The top-level group: every failure becomes `seqtool: error: ...` and an exit code."""

    def main(self, args: Any = None, prog_name: Any = None, **extra: Any) -> Any:
        argv = list(sys.argv[1:] if args is None else args)
        debug = "--debug" in argv or os.environ.get("SEQTOOL_DEBUG", "") not in ("", "0")
        argv = [a for a in argv if a != "--debug"]
        extra["standalone_mode"] = False
        with signals_stop(), warnings_as_lines():
            code = guarded(lambda: TyperGroup.main(self, argv, prog_name or "seqtool", **extra), debug)
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
    add_completion=False,
    context_settings={"help_option_names": ["-h", "--help"]},
    help="Recurrent networks on time series, as composable commands.\n\n"
    "Tables go through pipes: [bold]seqtool gen sine | seqtool train --cell lstm[/bold]",
)


class _Kinds(TyperGroup):
    """`seqtool gen`: an unknown kind gets the list of kinds, not click's 'No such command'."""

    def resolve_command(self, ctx: Any, args: list[str]) -> Any:
        if args and args[0] not in self.commands and not args[0].startswith("-"):
            raise SeqtoolError(f"unknown kind {args[0]!r}; choose from {', '.join(self.commands)}")
        return super().resolve_command(ctx, args)


gen_app = typer.Typer(
    cls=_Kinds,
    no_args_is_help=True,
    help="Generate a series table: CSV on stdout, or CSV/npz with -o.\n\n"
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
    debug: Annotated[
        bool, typer.Option("--debug", help="Show tracebacks (also SEQTOOL_DEBUG=1).")
    ] = False,
) -> None:
    """Recurrent networks on time series, as composable commands."""


# --- shared options -------------------------------------------------------------------

Data = Annotated[
    Optional[str],
    typer.Argument(help="A CSV or npz table; '-' or nothing reads standard input.", show_default=False),
]
XCols = Annotated[
    Optional[str], typer.Option("--x", help="Input columns, comma-separated \\[default: x or x0,x1,...].")
]
YCols = Annotated[
    Optional[str], typer.Option("--y", help="Target columns, comma-separated \\[default: y or y0,y1,...].")
]


# --- train, predict, rollout -----------------------------------------------------------

Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="No progress or summary on stderr.")]
Metrics = Annotated[Optional[Path], typer.Option(help="Also write the metrics to FILE as JSON.")]
TableOut = Annotated[
    Optional[Path],
    typer.Option("--output", "-o", help="Write the table to FILE (.csv or .npz) instead of CSV on stdout."),
]
Model = Annotated[Path, typer.Argument(help="A checkpoint written by seqtool train.", show_default=False)]
_TRAINING = (
    "cell", "hidden", "layers", "dropout", "lr", "optimizer", "batch", "window", "stride", "steps", "epochs",
    "clip", "schedule", "val", "patience", "stateful", "burn_in", "seed", "x", "y",
)  # fmt: skip


@app.command()
def train(
    ctx: typer.Context,
    data: Data = None,
    cell: Annotated[str, typer.Option(help="rnn (tanh), lstm or gru.")] = "lstm",
    hidden: Annotated[int, typer.Option(help=f"Units per layer, {span('hidden')}.")] = 32,
    layers: Annotated[int, typer.Option(help=f"Stacked recurrent layers, {span('layers')}.")] = 1,
    dropout: Annotated[float, typer.Option(help=f"Dropout between stacked layers, {span('dropout')}.")] = 0.0,
    lr: Annotated[float, typer.Option(help=f"Learning rate, {span('lr')}.")] = 1e-2,
    optimizer: Annotated[str, typer.Option(help="adam, or sgd (momentum 0.9).")] = "adam",
    batch: Annotated[int, typer.Option(help=f"Windows (or streams) per step, {span('batch')}.")] = 32,
    window: Annotated[int, typer.Option(help=f"Steps per training window (per chunk with --stateful), {span('window')}; longer than --burn-in, unless --stateful.")] = 50,
    stride: Annotated[int, typer.Option(help=f"Steps between window starts, {span('stride')}.")] = 1,
    steps: Annotated[Optional[int], typer.Option(help=f"Optimizer steps, {span('steps')} \\[default: 2000].")] = None,
    epochs: Annotated[Optional[float], typer.Option(help=f"Passes over the data, instead of --steps, {span('epochs')}.")] = None,
    clip: Annotated[float, typer.Option(help=f"Clip the global gradient norm to this, {span('clip')}; 0: off.")] = 0.0,
    schedule: Annotated[str, typer.Option(help="Learning-rate schedule: cosine, plateau or none.")] = "cosine",
    val: Annotated[float, typer.Option(help=f"Fraction held out for validation (whole series), {span('val')}.")] = 0.1,
    patience: Annotated[int, typer.Option(help=f"Stop after this many evaluations without a better val loss, {span('patience')}; 0: off.")] = 0,
    stateful: Annotated[bool, typer.Option(help="Carry the state across consecutive chunks (truncated BPTT).")] = False,
    burn_in: Annotated[int, typer.Option(help=f"Steps after a zero state left out of the loss (their target is ambiguous), {span('burn_in')}.")] = 4,
    seed: Annotated[int, typer.Option(help=f"Random seed, {span('seed')}: the same seed, the same weights (on CPU).")] = 0,
    x: XCols = None,
    y: YCols = None,
    out: Annotated[Path, typer.Option("--out", "-o", help="Checkpoint to write (one writer at a time).")] = Path("model.pt"),
    log: Annotated[Optional[Path], typer.Option(help="Write the training log (a row per evaluation) to FILE (.csv or .npz).")] = None,
    resume: Annotated[bool, typer.Option(help="Continue the run saved in --out, with its settings.")] = False,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda.")] = "auto",
    threads: Annotated[Optional[int], typer.Option(help=f"CPU threads for torch, {span('threads')}.")] = None,
    quiet: Quiet = False,
) -> None:
    """Train a recurrent network on a series table; prints the checkpoint's path.

    No target column: next-step forecasting. Targets y: sequence mapping x -> y.

    Example: seqtool gen sine | seqtool train --cell lstm
    """
    from typer._click.core import ParameterSource

    from .config import TrainConfig
    from .training import train as run

    if resume:
        given = [n for n in _TRAINING if ctx.get_parameter_source(n) == ParameterSource.COMMANDLINE]
        if given:
            raise SeqtoolError(
                f"--resume continues with the settings saved in {out}; drop "
                + ", ".join(f"--{n}" for n in given)
            )
    config = TrainConfig(
        cell=cell, hidden=hidden, layers=layers, dropout=dropout, lr=lr, optimizer=optimizer, batch=batch,
        window=window, stride=stride, steps=steps, epochs=epochs, clip=clip, schedule=schedule,
        val=val, patience=patience, stateful=stateful, burn_in=burn_in, seed=seed, x=x, y=y,
    )  # fmt: skip
    result = run(data, out, config, resume=resume, log=log, quiet=quiet, device=device, threads=threads)
    typer.echo(str(result.path))


@app.command()
def predict(
    model: Model,
    data: Data = None,
    warmup: Annotated[int, typer.Option(help=f"Leave the first K steps of each series out of the metrics, {span('warmup')}.")] = 0,
    metrics: Metrics = None,
    output: TableOut = None,
    quiet: Quiet = False,
) -> None:
    """Teacher-forced predictions: the table plus yhat; metrics on stderr.

    Example: seqtool gen sine --seed 1 | seqtool predict model.pt --warmup 5 > pred.csv
    """
    from .inference import predict as run

    run(model, data, warmup=warmup, metrics=metrics, output=output or "-", quiet=quiet)


@app.command()
def rollout(
    model: Model,
    data: Data = None,
    warmup: Annotated[
        Optional[int],
        typer.Option(help=f"True steps to warm up on, {span('rollout_warmup')} \\[default: 10; with --horizon, all of each series]."),
    ] = None,
    steps: Annotated[Optional[int], typer.Option(help=f"Free-running steps, {span('free_steps')} \\[default: to the end of each series].")] = None,
    horizon: Annotated[int, typer.Option(help=f"Go this many steps past the end of each series, {span('horizon')}.")] = 0,
    metrics: Metrics = None,
    output: TableOut = None,
    quiet: Quiet = False,
) -> None:
    """Free-running generation: the model's own predictions fed back as inputs.

    Example: seqtool rollout model.pt data/daily_temperature.csv --horizon 30
    """
    from .inference import rollout as run

    run(model, data, warmup=warmup, steps=steps, horizon=horizon, metrics=metrics, output=output or "-", quiet=quiet)


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
    format: Annotated[str, typer.Option("--format", help="Image format with --outdir or by default: png, svg, pdf.")] = "png",
    title: Annotated[Optional[str], typer.Option(help="Figure title.")] = None,
    size: Annotated[Optional[str], typer.Option(help=f"WIDTHxHEIGHT in pixels, each {span('pixels')} \\[default: by kind].")] = None,
    dpi: Annotated[int, typer.Option(help=f"Dots per inch, {span('dpi')}.")] = 100,
    logy: Annotated[bool, typer.Option(help="Log scale on the value axis.")] = False,
    series: Annotated[Optional[str], typer.Option(help="Series ids to draw, comma-separated \\[default: the first 6].")] = None,
    x: XCols = None,
    y: YCols = None,
) -> None:
    """Draw each table as the picture it calls for; prints the image paths.

    Kinds, told apart by their columns: a series table, predict output, rollout output,
    a train --log, gradnorm output.

    Examples: seqtool gen sine | seqtool plot -o sine.png;
    seqtool plot out/*.csv --outdir plots/;
    seqtool plot lstm.csv gru.csv --overlay -o losses.png
    """
    from .plotting import parse_size
    from .plotting import plot as run

    paths = run(
        files or [None], output=output, outdir=outdir, overlay=overlay, labels=label, fmt=format,
        title=title, size=parse_size(size), dpi=dpi, logy=logy,
        series=series.split(",") if series else None, x=x, y=y,
    )  # fmt: skip
    from .outputs import to_stdout

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
        typer.Argument(help="[MODEL] [DATA]: a checkpoint and/or a table; neither: fresh models on a generated task.", show_default=False),
    ] = None,
    cell: Annotated[str, typer.Option(help="Cells of fresh models, comma-separated.")] = "rnn,lstm,gru",
    hidden: Annotated[int, typer.Option(help=f"Units per layer of fresh models, {span('hidden')}.")] = 32,
    layers: Annotated[int, typer.Option(help=f"Layers of fresh models, {span('layers')}.")] = 1,
    init_scale: Annotated[Optional[float], typer.Option(help=f"Rescale each recurrent matrix to this spectral radius, {span('init_scale')}.")] = None,
    forget_bias: Annotated[float, typer.Option(help=f"Forget-gate bias of a fresh LSTM (PyTorch's init: 0), {span('forget_bias')}.")] = 1.0,
    seed: Seed = 0,
    task: Annotated[str, typer.Option(help="Generated data without DATA: adding, sine, sincos, multisine.")] = "adding",
    length: Annotated[int, typer.Option("--length", "-l", help=f"Steps of generated sequences, {span('grad_length')}.")] = 100,
    batch: Annotated[int, typer.Option(help=f"Sequences in the batch, {span('grad_batch')}.")] = 64,
    loss: Annotated[str, typer.Option(help="Loss at the last step with a target, or at all steps.")] = "last",
    summary: Annotated[Optional[Path], typer.Option(help="Also write the summary (ratios, parameter gradients, singular values) as JSON.")] = None,
    output: TableOut = None,
    quiet: Quiet = False,
) -> None:
    """Gradient norms through time, ||dL/dh_t|| per step and layer: vanishing or exploding?

    Examples: seqtool gradnorm --cell rnn,lstm,gru --length 100 | seqtool plot -o g.png;
    seqtool gradnorm model.pt data.csv
    """
    from typer._click.core import ParameterSource

    from .gradients import gradnorm as run

    model, data = _model_and_data(inputs or [])
    if model is not None:
        given = [n for n in _FRESH if ctx.get_parameter_source(n) == ParameterSource.COMMANDLINE]
        if given:
            raise SeqtoolError(
                f"{', '.join('--' + n.replace('_', '-') for n in given)}: for fresh models only; "
                f"the model {model} brings its own"
            )
    cells = tuple(c.strip() for c in cell.split(",") if c.strip())
    run(
        model, data, cells=cells, hidden=hidden, layers=layers, init_scale=init_scale,
        forget_bias=forget_bias, seed=seed, task=task, length=length, batch=batch, loss=loss,
        summary=summary, output=output or "-", quiet=quiet,
    )  # fmt: skip


def _model_and_data(inputs: list[str]) -> tuple[Optional[str], Optional[str]]:
    """[MODEL] [DATA]: with one path, a seqtool checkpoint is the model, anything else the data."""
    if len(inputs) > 2:
        raise SeqtoolError("gradnorm takes at most a MODEL and a DATA path")
    if len(inputs) == 2:
        return inputs[0], inputs[1]
    from .checkpoint import is_checkpoint

    if len(inputs) == 1 and inputs[0] != "-" and is_checkpoint(inputs[0]):
        return inputs[0], None
    return None, (inputs[0] if inputs else None)


# --- info ------------------------------------------------------------------------------


@app.command()
def info(data: Data = None, x: XCols = None, y: YCols = None) -> None:
    """Check a table and show what seqtool sees in it: series, columns, task.

    Example: seqtool info data/daily_temperature.csv --x value
    """
    from .tables import describe, read_series

    for key, value in describe(read_series(data, x, y)).items():
        typer.echo(f"{key + ':':15} {value}")


# --- gen -----------------------------------------------------------------------------

NSeries = Annotated[int, typer.Option("--n-series", "-n", help=f"Number of series, {span('n_series')}; at most {int(LIMITS['rows'].hi):,} rows in all.")]
Length = Annotated[int, typer.Option("--length", "-l", help=f"Steps per series, {span('length')}.")]
Seed = Annotated[int, typer.Option("--seed", help=f"Random seed, {span('seed')}: the same seed, the same result.")]
Output = Annotated[
    Optional[Path],
    typer.Option("--output", "-o", help="Write to FILE (.csv or .npz) instead of CSV on stdout."),
]
Noise = Annotated[float, typer.Option(help=f"Std of Gaussian noise added to x, {span('noise')}.")]
Span = Annotated[float, typer.Option(help=f"Length of the time span each series covers, {span('span')}.")]


def _gen(kind: str, output: Optional[Path], **options: Any) -> None:
    from .tables import check_table_output, write_table
    from .tasks import generate

    check_table_output(output)
    write_table(generate(kind, **options), output)


@gen_app.command("sine")
def gen_sine(
    n_series: NSeries = 256,
    length: Length = 50,
    seed: Seed = 0,
    span: Span = 10.0,
    noise: Noise = 0.0,
    output: Output = None,
) -> None:
    """Next-step forecasting: x = sin(t) from a random start (no target column).

    Example: seqtool gen sine --n-series 4 --seed 1 | head
    """
    _gen("sine", output, n_series=n_series, length=length, seed=seed, span=span, noise=noise)


@gen_app.command("multisine")
def gen_multisine(
    n_series: NSeries = 256,
    length: Length = 100,
    seed: Seed = 0,
    span: Span = 20.0,
    freqs: Annotated[str, typer.Option(help=f"Angular frequencies, comma-separated, each in {span('freq')}.")] = "1,2.3,3.7",
    noise: Noise = 0.0,
    output: Output = None,
) -> None:
    """Harder forecasting: a sum of sines (amplitude 1/k) with random phases, optional noise.

    Example: seqtool gen multisine --freqs 1,3 --noise 0.05 -o ms.csv
    """
    _gen(
        "multisine", output,
        n_series=n_series, length=length, seed=seed, span=span, freqs=freqs, noise=noise,
    )  # fmt: skip


@gen_app.command("sincos")
def gen_sincos(
    n_series: NSeries = 64,
    length: Length = 300,
    seed: Seed = 0,
    per_span: Annotated[int, typer.Option(help=f"Points per span of pi, {span('per_span')}.")] = 30,
    output: Output = None,
) -> None:
    """Sequence mapping: input x = sin(t), target y = cos(t); needs memory.

    Example: seqtool gen sincos --length 600 -o sincos.csv
    """
    _gen("sincos", output, n_series=n_series, length=length, seed=seed, per_span=per_span)


@gen_app.command("integral")
def gen_integral(
    n_series: NSeries = 32,
    length: Length = 2000,
    seed: Seed = 0,
    jump_prob: Annotated[float, typer.Option(help=f"Chance per step that u jumps, {span('jump_prob')}.")] = 0.1,
    gain: Annotated[float, typer.Option(help=f"Integration gain, {span('gain')}.")] = 0.1,
    output: Output = None,
) -> None:
    """A saturating integrator: y_k = clip(y_k-1 + gain*(x_k - 0.5), 0, 1).

    Example: seqtool gen integral --length 100000 -o integral.npz
    """
    _gen(
        "integral", output,
        n_series=n_series, length=length, seed=seed, jump_prob=jump_prob, gain=gain,
    )  # fmt: skip


@gen_app.command("adding")
def gen_adding(
    n_series: NSeries = 1000,
    length: Annotated[int, typer.Option("--length", "-l", help=f"Steps per series, {span('adding_length')}.")] = 100,
    seed: Seed = 0,
    output: Output = None,
) -> None:
    """The adding problem: sum the two marked values; target at the last step only.

    Example: seqtool gen adding --length 200 -o adding200.npz
    """
    _gen("adding", output, n_series=n_series, length=length, seed=seed)


@gen_app.command("lorenz")
def gen_lorenz(
    n_series: NSeries = 1,
    length: Length = 1000,
    seed: Seed = 0,
    dt: Annotated[float, typer.Option(help=f"Time between samples, {span('lorenz_dt')}.")] = 0.02,
    output: Output = None,
) -> None:
    """Chaos, multivariate: the Lorenz system as inputs x0, x1, x2.

    Example: seqtool gen lorenz --length 5000 -o lorenz.npz
    """
    _gen("lorenz", output, n_series=n_series, length=length, seed=seed, dt=dt)


@gen_app.command("mackey-glass")
def gen_mackey_glass(
    n_series: NSeries = 1,
    length: Length = 1000,
    seed: Seed = 0,
    tau: Annotated[float, typer.Option(help=f"Delay; chaotic from about 17, {span('tau')}.")] = 17.0,
    dt: Annotated[float, typer.Option(help=f"Time between samples, {span('mg_dt')}.")] = 1.0,
    output: Output = None,
) -> None:
    """Chaos, univariate: the Mackey-Glass delay equation.

    Example: seqtool gen mackey-glass --tau 30 -o mg.csv
    """
    _gen("mackey-glass", output, n_series=n_series, length=length, seed=seed, tau=tau, dt=dt)


def main() -> None:
    """Console-script entry point."""
    app()
