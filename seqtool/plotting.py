"""`seqtool plot`: the right picture for each table seqtool writes, recognised by its columns.

Headless (matplotlib's Agg canvas, no pyplot state) and torch-free. Each kind has a
drawing function that takes one or more (label, table) pairs, so `--overlay` is the same
code as a single table: several tables of one kind drawn on the same axes.
"""

from __future__ import annotations

import io
import math
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from seqtool import outputs
from seqtool.config import IMAGE_FORMATS
from seqtool.data.reading import as_table, read_series
from seqtool.data.tables import SeriesTable, Table, columns_of, of_role, times_of
from seqtool.errors import SeqtoolError
from seqtool.limits import check_all
from seqtool.outputs import check_format, open_output

FORMATS = tuple(f".{f}" for f in IMAGE_FORMATS)
MAX_PANELS = 6

# each kind and the columns that identify it, most specific first
KINDS = {
    "log": ("epoch", "step", "train_loss"),
    "gradnorm": ("cell", "layer", "t", "grad_norm"),
    "backtest": ("origin", "h", "yhat"),
    "rollout": ("yhat", "phase"),
    "predict": ("yhat",),
    "series": ("x",),
}
TRUTH, PRED, FREE = "#555555", "#1f77b4", "#d62728"
MAX_DRAWN = 1e300  # matplotlib's axis arithmetic overflows on values near the float64 limit
DRAWN = {  # the numeric columns each non-series kind draws
    "log": ("step", "train_loss", "val_loss", "lr", "grad_norm", "clipped"),
    "gradnorm": ("t", "grad_norm", "grad_norm_lo", "grad_norm_hi"),
}
NOT_TRUTH = ("series", "t", "phase", "origin", "h", "interval_level")  # besides the forecasts (FORECAST)
FORECAST = re.compile(r"(yhat|naive|seasonal_naive)\d*(_lo|_hi)?")
FORECASTERS = {"yhat": "model", "naive": "naive", "seasonal_naive": "seasonal naive"}  # backtest's columns, legend


def kind_of(table: Table, inputs_named: bool = False) -> str:
    """The kind of a table, from its columns; an unknown table is refused with the list of kinds.

    `inputs_named`: the user named the input columns (--x), so a table of none of the
    other kinds is a series table whatever its column names.
    """
    names = set(table.columns)
    yhat = bool(of_role(names, "yhat"))
    if {"epoch", "step", "train_loss"} <= names:
        return "log"
    if {"cell", "layer", "t", "grad_norm"} <= names:
        return "gradnorm"
    if yhat and {"origin", "h"} <= names:
        return "backtest"
    if yhat and "phase" in names:
        return "rollout"
    if yhat:
        return "predict"
    if inputs_named or of_role(names, "x"):
        return "series"
    needs = "; ".join(f"{k}: {', '.join(v)}" for k, v in KINDS.items())
    raise SeqtoolError(
        f"{table.source}: no kind of table that plot knows (columns: {', '.join(table.columns)}); "
        f"the kinds and the columns they need: {needs} (or x0, x1, ...; yhat0, ...)"
    )


def truth_columns(table: Table, x: str | Sequence[str] | None = None) -> list[str]:
    """The columns holding the truth that a table's yhat columns estimate, so that predict,
    rollout and backtest tables of a model trained with `--x value` plot without `--x` again.

    In order: `x` (as --x, "a,b" or a list); the inputs an npz remembers; `x` or x0, x1, ...;
    else the numeric columns that are none of series, t, phase, origin, h, interval_level and the forecasts
    (yhat*, naive*, seasonal_naive*, their _lo/_hi), in table order, which must be as many
    as the yhat columns: anything else is refused, naming the candidates.
    """
    named = columns_of(table, "x", x)
    if named or x is not None:
        return named
    found, yhat = _candidates(table), _yhat_names(table)
    if len(found) != len(yhat):
        raise SeqtoolError(
            f"{table.source}: cannot tell which columns are the truth of {', '.join(yhat)}: "
            f"{len(yhat)} forecast column(s), {len(found)} numeric candidate(s) ({', '.join(found) or 'none'}); "
            f"name them with --x COLS (and a mapping model's targets with --y COLS)"
        )
    return found


def _candidates(table: Table) -> list[str]:
    """Numeric columns that are neither ids, times, phases nor forecasts: the possible truths."""
    return [n for n in table.columns if n not in NOT_TRUTH and not FORECAST.fullmatch(n) and _numeric(table, n)]


def _numeric(table: Table, name: str) -> bool:
    try:
        table.numbers(name, missing_ok=True)
    except SeqtoolError:
        return False  # dates, strings
    return True


@dataclass
class _Plan:
    """What one figure draws, checked before anything is drawn: the kind, the tables (and
    for series kinds, the series views; for backtests, the truth columns of each table;
    and the ids of the panels)."""

    kind: str
    inputs: list[tuple[str, Table]]
    views: list[tuple[str, SeriesTable]] | None = None
    ids: list[str] | None = None
    picked: bool = False
    truths: list[list[str]] | None = None


def _plan(inputs, series=None, x=None, y=None) -> _Plan:
    kinds = {kind_of(t, inputs_named=x is not None) for _, t in inputs}
    if len(kinds) > 1:
        raise SeqtoolError(f"--overlay needs tables of one kind, got {', '.join(sorted(kinds))}")
    kind = kinds.pop()
    if kind in ("log", "gradnorm"):
        for _, table in inputs:
            _drawable(table, DRAWN[kind])
        return _Plan(kind, list(inputs))
    if kind == "backtest":
        return _plan_backtest(list(inputs), series, x)
    views = [(label, _view(t, kind, x, y)) for label, t in inputs]
    for _, view in views:
        _drawable(view, [*view.x_names, *view.y_names, *_yhat_names(view), "t"])
    ids = _pick_series(views[0][1].ids, views[0][1].source, series)
    return _Plan(kind, list(inputs), views, ids, bool(series))


def _view(table: Table, kind: str, x, y) -> SeriesTable:
    """The table read as series. A predict or rollout table's truth is its targets (--y, those
    an npz remembers, y or y0, ...), else its inputs, found by `truth_columns` unless --x."""
    if kind == "series":
        return read_series(table, x, y, missing_inputs=True)
    ys = columns_of(table, "y", y)
    if x is None and not ys:
        x = truth_columns(table)
    elif x is None and not columns_of(table, "x"):
        x = [n for n in _candidates(table) if n not in ys] or None  # a mapping model's inputs
    return read_series(table, x, ys, missing_inputs=True)


def _plan_backtest(inputs: list[tuple[str, Table]], series, x) -> _Plan:
    """Check each backtest table's numbers (origin, h, t, truths, forecasts) before drawing."""
    truths = []
    for _, table in inputs:
        names = truth_columns(table, x)
        drawn = ["origin", "h", *names, *(n for n in table.columns if FORECAST.fullmatch(n))]
        for name in ("origin", "h"):
            table.numbers(name)
        if "t" in table.columns and _times(table).dtype.kind in "fi":
            drawn.append("t")
        _drawable(table, drawn)
        truths.append(names)
    ids = _pick_series(_backtest_ids(inputs[0][1]), inputs[0][1].source, series, default=1)
    return _Plan("backtest", inputs, ids=ids, picked=bool(series), truths=truths)


@dataclass
class Look:
    """How a figure is drawn: the options `figure` and `plot` share."""

    title: str | None = None
    size: tuple[int, int] | None = None  # pixels
    dpi: int = 100
    logy: bool = False
    series: Sequence[str] | None = None  # ids to draw
    x: str | None = None  # input columns, as --x
    y: str | None = None


def figure(inputs: Sequence[tuple[str, Table]], **look):
    """One matplotlib Figure for one table, or several tables of one kind drawn together;
    `look`: the fields of `Look` (title, size, dpi, logy, series, x, y)."""
    look = Look(**look)
    _check_title(look.title)
    return _draw(_plan(inputs, look.series, look.x, look.y), look)


def _draw(plan: _Plan, look: Look):
    from matplotlib.figure import Figure  # lazily: bad options are refused before matplotlib loads

    size, dpi, logy = look.size, look.dpi, look.logy
    kind, inputs = plan.kind, plan.inputs
    if kind in ("log", "gradnorm"):
        panels = 3 if kind == "log" else 1
        fig = Figure(figsize=_inches(size, (900, 250 * panels + 100), dpi), dpi=dpi)
        (_draw_log if kind == "log" else _draw_gradnorm)(fig, inputs, logy)
    elif kind == "backtest":
        panels = 1 + (len(plan.ids) if len(inputs) == 1 else 0)
        fig = Figure(figsize=_inches(size, (900, 300 * panels + 100), dpi), dpi=dpi)
        _draw_backtest(fig, plan, logy)
    else:
        views, ids = plan.views, plan.ids
        rows = math.ceil(len(ids) / 2) if len(ids) > 1 else 1
        cols = 1 if len(ids) == 1 else 2
        height = 280 * rows * (1.35 if kind == "predict" else 1) + 120
        fig = Figure(figsize=_inches(size, (1100 if cols == 2 else 900, height), dpi), dpi=dpi)
        draw = {"series": _draw_series, "predict": _draw_predict, "rollout": _draw_rollout}[kind]
        draw(fig, views, ids, rows, cols, logy)
        total = len(views[0][1].lengths)
        _shown_of(fig, len(ids), total, plan.picked)
    what = {"log": "training log", "gradnorm": "gradient norm through time", "rollout": "rollout",
            "backtest": "backtest", "predict": "teacher-forced predictions", "series": "series"}[kind]  # fmt: skip
    source = inputs[0][1].source if len(inputs) == 1 else ", ".join(label for label, _ in inputs)
    fig.suptitle(look.title or (what if source == "<stdin>" else f"{what}: {_literal(source)}"))
    fig.set_layout_engine("constrained")
    return fig


def _shown_of(fig, shown: int, total: int, picked: bool) -> None:
    """Say in a corner that only some series are drawn, where the user did not pick them."""
    if shown < total and not picked:
        fig.text(
            0.99,
            0.005,
            f"{shown} of {total} series (--series to pick)",
            ha="right",
            va="bottom",
            fontsize=8,
            color="gray",
        )


def plot(
    files: Sequence[str | Path | None],
    *,
    output: str | Path | None = None,
    outdir: str | Path | None = None,
    overlay: bool = False,
    labels: Sequence[str] | None = None,
    fmt: str = "png",
    **look,
) -> list[Path]:
    """`seqtool plot`: draw each file (or all of them on one figure with `overlay`); return
    the paths. `look`: the fields of `Look` (title, size, dpi, logy, series, x, y).

    Without -o, each image goes beside its input, or into --outdir, named after it
    (stdin: plot.png); `-o -` writes the image to stdout. With --overlay, all inputs
    make one image. Every input is read and checked before the first image is drawn.
    """
    files = list(files) or [None]
    suffix = "." + fmt.lower().lstrip(".")
    if suffix not in FORMATS:
        raise SeqtoolError(f"--format must be one of {', '.join(IMAGE_FORMATS)}, got {fmt!r}")
    look = Look(**look)
    check_all(dpi=look.dpi)
    _check_title(look.title)
    if output is not None and outdir is not None:
        raise SeqtoolError("give -o or --outdir, not both")
    if labels and len(labels) != len(files):
        raise SeqtoolError(f"--label given {len(labels)} times for {len(files)} inputs")
    single = overlay or len(files) == 1
    if output is not None and not single:
        raise SeqtoolError("several inputs make several images: use --outdir DIR, or --overlay -o FILE")
    for f in files:
        if f is not None and not str(f):
            raise SeqtoolError(f"{f!r}: not a table")
    if output is not None:
        out = check_format(output, FORMATS, "image")
        suffix = out.suffix if out is not None and out.suffix in FORMATS else suffix
    targets = [Path(output)] if output is not None else [_beside(f, suffix, outdir) for f in files]
    if outdir is not None and not Path(outdir).is_dir():  # made once everything is checked
        _check_new_folder(Path(outdir))
        if len(set(targets)) < len(targets):
            raise SeqtoolError(f"two inputs would make the same image in {outdir}; give them different names")
    else:
        outputs.check([(t, FORMATS, "image") for t in targets], inputs=files)
    tables = [as_table(f) for f in files]  # a file, stdin or a table folder
    names = [_literal(n) for n in (labels or [_label(f) for f in files])]
    inputs = list(zip(names, tables))
    where = look.series, look.x, look.y
    plans = [_plan(inputs, *where)] if single else [_plan([pair], *where) for pair in inputs]
    if outdir is not None:
        _make_folder(Path(outdir))
    return [_save(_draw(plan, look), path, suffix) for plan, path in zip(plans, targets)]


def parse_size(text: str | None) -> tuple[int, int] | None:
    """'1200x800' -> (1200, 800) pixels."""
    if text is None:
        return None
    m = re.fullmatch(r"\s*(\d+)\s*[xX]\s*(\d+)\s*", text)
    if not m:
        raise SeqtoolError(f"--size must be WIDTHxHEIGHT in pixels, e.g. 1200x800, got {text!r}")
    width, height = int(m[1]), int(m[2])
    check_all(pixels=width)
    check_all(pixels=height)
    return width, height


# --- helpers ---------------------------------------------------------------------------


def _drawable(table, names) -> None:
    """Refuse a drawn column with a value matplotlib cannot place on an axis."""
    for name in dict.fromkeys(names):
        col = table.columns.get(name)
        if col is None or (col.dtype.kind not in "fiu" and isinstance(table, SeriesTable)):
            continue  # absent, or dates
        values = (
            col.astype(float)
            if col.dtype.kind in "fiu"
            else Table({name: col}, table.source).numbers(name, missing_ok=True)
        )
        big = float(np.max(np.abs(values[~np.isnan(values)]), initial=0.0))
        if big > MAX_DRAWN:
            raise SeqtoolError(
                f"{table.source}: column {name!r} holds {big:.3g}; plot draws values up to {MAX_DRAWN:g} in magnitude"
            )


def _check_title(title: str | None) -> None:
    """--title may use matplotlib's mathtext between $ signs; refuse one it cannot parse."""
    if not title:
        return
    from matplotlib import cbook  # lazily: as Figure

    if cbook.is_math_text(title):
        from matplotlib.mathtext import MathTextParser  # lazily: only for labels with $

        try:
            MathTextParser("path").parse(title)
        except ValueError:
            raise SeqtoolError(
                f"--title {title!r}: not mathtext matplotlib can draw between its $ signs; write \\$ for a dollar sign"
            ) from None


def _literal(text: str) -> str:
    """Text from the data (file names, column names, series ids) shown as it is, never as mathtext."""
    return str(text).replace("$", "\\$")


def _inches(size, default, dpi) -> tuple[float, float]:
    w, h = size or default
    return w / dpi, h / dpi


def _label(f) -> str:
    return "stdin" if f is None or str(f) == "-" else Path(f).stem


def _beside(f, suffix: str, outdir) -> Path:
    if f is None or str(f) == "-":
        name = Path("plot" + suffix)
        return Path(outdir) / name if outdir else name
    f = Path(f).resolve() if not Path(f).name else Path(f)  # `.` or `..`: the folder's own name
    if outdir is not None:
        return Path(outdir) / (f.stem + suffix)
    return f.with_suffix(suffix)


def _check_new_folder(folder: Path) -> None:
    """--outdir that is not there yet: it can be made (its nearest existing parent is a
    writable folder). It is made only once every input is read and checked."""
    if folder.exists():
        raise SeqtoolError(f"--outdir {folder}: is a file, not a folder")
    parent = folder.absolute().parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir() or not os.access(parent, os.W_OK | os.X_OK):
        raise SeqtoolError(f"--outdir {folder}: cannot be made in {parent}")


def _make_folder(folder: Path) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise SeqtoolError(f"--outdir {folder}: cannot make it: {e.strerror}") from None


def _save(fig, path: Path, fallback: str) -> Path:
    """Render in memory (PDF needs a seekable file), then write: atomically to a file,
    through to a device or pipe, in the format its name gives (else `fallback`)."""

    suffix = path.suffix.lower() if path.suffix.lower() in FORMATS else fallback
    buffer = io.BytesIO()
    fig.savefig(buffer, format=suffix.lstrip("."), dpi=fig.dpi)
    with open_output(path) as f:
        f.write(buffer.getbuffer())
    return path


def _band(ax, view, name: str, sl, t, where, color, j: int) -> None:
    """The interval of forecast column `name` (its _lo and _hi columns), where it has one,
    as a band under the forecast at the rows `where`."""
    if f"{name}_lo" not in view.columns or f"{name}_hi" not in view.columns:
        return
    lo, hi = _col(view, f"{name}_lo", sl), _col(view, f"{name}_hi", sl)
    ax.fill_between(t[where], lo[where], hi[where], color=color, alpha=0.2, lw=0, label="interval" if j == 0 else None)


def _yhat_names(table) -> list[str]:
    return of_role(list(table.columns), "yhat")


def _pick_series(ids: list[str], source: str, chosen: Sequence[str] | None, default: int = MAX_PANELS) -> list[str]:
    if not chosen:
        return ids[:default]
    missing = [c for c in chosen if c not in ids]
    if missing:
        raise SeqtoolError(
            f"{source}: no series {missing[0]!r} for --series "
            f"(ids: {', '.join(ids[:10])}{', ...' if len(ids) > 10 else ''})"
        )
    return list(chosen)


def _panels(fig, rows: int, cols: int, count: int, error_strips: bool = False):
    """Axes for `count` series; with error strips, each panel has a thin axes below it."""
    if not error_strips:
        axes = fig.subplots(rows, cols, squeeze=False).ravel()
        for ax in axes[count:]:
            ax.set_visible(False)
        return [(ax, None) for ax in axes[:count]]
    grid = fig.add_gridspec(rows * 2, cols, height_ratios=[3, 1] * rows)
    pairs = []
    for i in range(count):
        r, c = divmod(i, cols)
        top = fig.add_subplot(grid[2 * r, c])
        bottom = fig.add_subplot(grid[2 * r + 1, c], sharex=top)
        pairs.append((top, bottom))
    return pairs


def _time(view, i: int) -> tuple[np.ndarray, str]:
    rows = slice(view.offsets[i], view.offsets[i + 1])
    if "t" in view.columns:
        return _times(Table({"t": view.columns["t"][rows]}, view.source)), "t"
    return np.arange(view.lengths[i]), "step"


def _times(table: Table) -> np.ndarray:
    """Column `t` as numbers, or as datetime64 where it holds dates (matplotlib draws both);
    a backtest table without `t` has its step index, origin + h - 1."""
    if "t" not in table.columns:
        return table.numbers("origin") + table.numbers("h") - 1
    return times_of(table)


def _rows(view, sid: str) -> tuple[int, slice]:
    i = view.ids.index(sid)
    return i, slice(view.offsets[i], view.offsets[i + 1])


def _col(view, name: str, rows: slice) -> np.ndarray:
    col = view.columns[name][rows]
    return col.astype(float) if col.dtype.kind in "fiu" else Table({name: col}).numbers(name, missing_ok=True)


def _legend(fig, ax) -> None:
    """One legend for all panels, below them, where it hides no data."""
    handles, labels = ax.get_legend_handles_labels()
    if handles:
        fig.legend(handles, labels, loc="outside lower center", ncol=min(len(handles), 4), fontsize=9, frameon=False)


def _style(ax, logy: bool, xlabel: str) -> None:
    if logy:
        ax.set_yscale("log")
    ax.grid(True, alpha=0.3)
    ax.set_xlabel(xlabel)


def _date_ticks(ax, t: np.ndarray) -> None:
    """Short date labels that do not run into each other, where time is dates."""
    if t.dtype.kind == "M":
        from matplotlib.dates import AutoDateLocator, ConciseDateFormatter  # lazily: only for dates

        locator = AutoDateLocator()
        ax.xaxis.set_major_locator(locator)
        ax.xaxis.set_major_formatter(ConciseDateFormatter(locator))


def _draw_series(fig, views, ids, rows, cols, logy) -> None:
    several = len(views) > 1
    for k, (ax, _) in enumerate(_panels(fig, rows, cols, len(ids))):
        for label, view in views:
            if ids[k] not in view.ids:
                continue
            i, sl = _rows(view, ids[k])
            t, xlabel = _time(view, i)
            for name in view.x_names:
                ax.plot(
                    t, view.columns[name][sl], lw=1.4, label=f"{label}: {_literal(name)}" if several else _literal(name)
                )
            for name in view.y_names:
                values = view.columns[name][sl]
                sparse = np.isnan(values).mean() > 0.5
                ax.plot(
                    t,
                    values,
                    "o" if sparse else "--",
                    lw=1.4,
                    ms=6,
                    label=f"{label}: {_literal(name)}" if several else f"{_literal(name)} (target)",
                )
        ax.set_title(f"series {_literal(ids[k])}", fontsize=10)
        _style(ax, logy, xlabel)
        _date_ticks(ax, t)
        if k == 0:
            _legend(fig, ax)


def _draw_predict(fig, views, ids, rows, cols, logy) -> None:
    several = len(views) > 1
    for k, (ax, err_ax) in enumerate(_panels(fig, rows, cols, len(ids), error_strips=True)):
        truth_drawn = False
        for n, (label, view) in enumerate(views):
            if ids[k] not in view.ids:
                continue
            i, sl = _rows(view, ids[k])
            t, xlabel = _time(view, i)
            truths = view.y_names or view.x_names
            for j, name in enumerate(_yhat_names(view)):
                truth = view.columns[truths[min(j, len(truths) - 1)]][sl]
                yhat = _col(view, name, sl)
                if not truth_drawn:
                    ax.plot(t, truth, color=TRUTH, lw=3, alpha=0.45, label="truth")
                color = f"C{n}" if several else PRED
                ax.plot(t, yhat, "--", color=color, lw=1.4, label=f"{label}" if several else "prediction")
                _band(ax, view, name, sl, t, np.ones(len(t), bool), color, j)
                err_ax.plot(t, yhat - truth, color=color, lw=1)
            truth_drawn = True
        ax.set_title(f"series {_literal(ids[k])}", fontsize=10)
        _style(ax, logy, "")
        ax.tick_params(labelbottom=False)
        err_ax.axhline(0, color="black", lw=0.6)
        err_ax.set_ylabel("error", fontsize=8)
        _style(err_ax, False, xlabel)
        if k == 0:
            _legend(fig, ax)


def _draw_rollout(fig, views, ids, rows, cols, logy) -> None:
    several = len(views) > 1
    for k, (ax, _) in enumerate(_panels(fig, rows, cols, len(ids))):
        for n, (label, view) in enumerate(views):
            if ids[k] not in view.ids:
                continue
            i, sl = _rows(view, ids[k])
            t, xlabel = _time(view, i)
            phase = view.columns["phase"][sl]
            free = phase == "free"
            errors = []
            for j, name in enumerate(_yhat_names(view)):
                yhat = _col(view, name, sl)
                truth = view.columns[view.x_names[min(j, len(view.x_names) - 1)]][sl]
                if n == 0:
                    ax.plot(t, truth, color=TRUTH, lw=5, alpha=0.3, label="truth" if j == 0 else None)
                    warm = ~free
                    ax.plot(
                        t[warm],
                        yhat[warm],
                        ":",
                        color=PRED,
                        lw=1.4,
                        label="warm-up (teacher-forced)" if j == 0 else None,
                    )
                color = f"C{n + 1}" if several else FREE
                ax.plot(
                    t[free],
                    yhat[free],
                    color=color,
                    lw=1.3,
                    label=(label if several else "free-running") if j == 0 else None,
                )
                _band(ax, view, name, sl, t, free, color, j)
                errors.append((yhat - truth)[free])
            if n == 0 and free.any():
                start = t[np.argmax(free)]
                ax.axvline(start, color="black", ls="--", lw=0.8)
                ax.axvspan(start, t[free][-1], color=FREE, alpha=0.05)
                ax.annotate("free running starts", (start, 1), xycoords=("data", "axes fraction"),
                            xytext=(4, -12), textcoords="offset points", fontsize=8)  # fmt: skip
                e = np.concatenate(errors)
                e = e[~np.isnan(e)]
                if len(views) == 1 and e.size:
                    ax.set_title(
                        f"series {_literal(ids[k])}: free-running RMSE {np.sqrt(np.mean(e**2)):.2g}", fontsize=10
                    )
        if len(views) > 1 or not ax.get_title():
            ax.set_title(f"series {_literal(ids[k])}", fontsize=10)
        _style(ax, logy, xlabel)
        if k == 0:
            _legend(fig, ax)


def _draw_log(fig, inputs, logy) -> None:
    loss_ax, lr_ax, grad_ax = fig.subplots(3, 1, sharex=True)
    several = len(inputs) > 1
    for n, (label, table) in enumerate(inputs):
        step = table.numbers("step")
        color = f"C{n}"
        prefix = f"{label}: " if several else ""
        loss_ax.plot(step, table.numbers("train_loss", True), color=color, lw=1.6, label=f"{prefix}train")
        if "val_loss" in table.columns:
            val = table.numbers("val_loss", True)
            if not np.isnan(val).all():
                loss_ax.plot(step, val, "--", color=color, lw=1.6, label=f"{prefix}validation")
        if "lr" in table.columns:
            lr_ax.plot(step, table.numbers("lr", True), color=color, lw=1.4, label=label if several else None)
        if "grad_norm" in table.columns:
            grad = table.numbers("grad_norm", True)
            grad_ax.plot(step, grad, color=color, lw=1.2, label=label if several else "gradient norm")
            if "clipped" in table.columns:
                hit = table.numbers("clipped", True) > 0
                if hit.any():
                    grad_ax.plot(step[hit], grad[hit], "x", color="black", ms=6,
                                 label="clipped steps" if n == 0 else None)  # fmt: skip
    loss_ax.set_yscale("log")
    loss_ax.set_ylabel("loss (standardised)")
    lr_ax.set_yscale("log")
    lr_ax.set_ylabel("learning rate")
    grad_ax.set_yscale("log")
    grad_ax.set_ylabel("gradient norm")
    grad_ax.set_xlabel("step")
    for ax in (loss_ax, lr_ax, grad_ax):
        ax.grid(True, alpha=0.3, which="both")
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8, loc="best")


def _draw_gradnorm(fig, inputs, logy) -> None:
    ax = fig.subplots()
    several = len(inputs) > 1
    for _n, (label, table) in enumerate(inputs):
        cells, layers = table.columns["cell"].astype(str), table.columns["layer"].astype(str)
        t, g = table.numbers("t"), table.numbers("grad_norm", True)
        groups = list(dict.fromkeys(zip(cells.tolist(), layers.tolist())))
        for cell, layer in groups:
            rows = (cells == cell) & (layers == layer)
            first, last = g[rows][np.argmin(t[rows])], g[rows][np.argmax(t[rows])]
            ratio = f"t={t[rows].min():g} / t={t[rows].max():g}: {first / last:.2g}" if last > 0 else ""
            name = (
                f"{_literal(cell)} layer {_literal(layer)}"
                + (f" ({label})" if several else "")
                + (f"   [{ratio}]" if ratio else "")
            )
            (line,) = ax.plot(t[rows], g[rows], lw=1.8, label=name)
            if {"grad_norm_lo", "grad_norm_hi"} <= set(table.columns):  # the spread over the batch
                lo, hi = table.numbers("grad_norm_lo", True), table.numbers("grad_norm_hi", True)
                ax.fill_between(t[rows], lo[rows], hi[rows], color=line.get_color(), alpha=0.15)
    ax.set_yscale("log")
    ax.set_xlabel("time step t (the loss is at the end; its gradient flows back to t = 1)")
    ax.set_ylabel("||dL/dh_t||")
    ax.grid(True, alpha=0.3, which="both")
    ax.legend(fontsize=9, loc="best")


def mae_by_h(table: Table, truths: Sequence[str], forecasts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """A backtest's mean absolute error per step ahead: the values of h, and for each the mean
    of |forecasts[j] - truths[j]| over every row with a known truth (all series, all origins,
    all truth columns alike). A forecast with no truth, or no value, counts for nothing."""
    steps, index = np.unique(table.numbers("h"), return_inverse=True)
    sums, counts = np.zeros(len(steps)), np.zeros(len(steps))
    for j, name in enumerate(forecasts):
        error = np.abs(table.numbers(name, True) - table.numbers(truths[min(j, len(truths) - 1)], True))
        known = ~np.isnan(error)
        sums += np.bincount(index[known], weights=error[known], minlength=len(steps))
        counts += np.bincount(index[known], minlength=len(steps))
    return steps, np.divide(sums, counts, out=np.full(len(steps), np.nan), where=counts > 0)


def _backtest_ids(table: Table) -> list[str]:
    if "series" not in table.columns:
        return ["0"]
    return list(dict.fromkeys(np.asarray(table.columns["series"]).astype(str).tolist()))


def coverage_by_h(table: Table, truths: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """A backtest's interval coverage per step ahead: the values of h, and for each the share
    of known truths inside [yhat_lo, yhat_hi] (all series, origins and outputs)."""
    steps, index = np.unique(table.numbers("h"), return_inverse=True)
    hits, counts = np.zeros(len(steps)), np.zeros(len(steps))
    for j, name in enumerate(_yhat_names(table)):
        y = table.numbers(truths[min(j, len(truths) - 1)], True)
        lo, hi = table.numbers(f"{name}_lo", True), table.numbers(f"{name}_hi", True)
        known = ~np.isnan(y) & ~np.isnan(lo) & ~np.isnan(hi)
        hits += np.bincount(index[known], weights=((lo <= y) & (y <= hi))[known], minlength=len(steps))
        counts += np.bincount(index[known], minlength=len(steps))
    return steps, np.divide(hits, counts, out=np.full(len(steps), np.nan), where=counts > 0)


def _intervals_in(table: Table) -> bool:
    names = _yhat_names(table)
    return bool(names) and all(f"{n}_lo" in table.columns and f"{n}_hi" in table.columns for n in names)


def _draw_backtest(fig, plan: _Plan, logy: bool) -> None:
    """The error against h for each forecaster; the intervals' coverage against h where the
    tables have intervals; with one table, a panel per series drawn with the truth and the
    forecasts of a few origins."""
    ids = plan.ids if len(plan.inputs) == 1 else []
    banded = [(i, t) for i, t in zip(plan.inputs, plan.truths) if _intervals_in(i[1])]
    axes = fig.subplots(1 + bool(banded) + len(ids), 1, squeeze=False).ravel()
    _draw_errors(axes[0], plan.inputs, plan.truths, logy)
    if banded:
        _draw_coverage(axes[1], banded, several=len(plan.inputs) > 1)
    table = plan.inputs[0][1]
    for ax, sid in zip(axes[1 + bool(banded) :], ids):
        _draw_origins(ax, table, plan.truths[0], sid, logy)
    total = len(_backtest_ids(table))
    if ids:
        _shown_of(fig, len(ids), total, plan.picked)


def _draw_errors(ax, inputs, truths, logy: bool) -> None:
    from matplotlib.ticker import MaxNLocator  # lazily: as Figure

    several = len(inputs) > 1
    looks = {"yhat": ("-", "o"), "naive": ("--", "s"), "seasonal_naive": (":", "^")}
    for n, ((label, table), names) in enumerate(zip(inputs, truths)):
        for prefix, name in FORECASTERS.items():
            columns = of_role(list(table.columns), prefix)
            if not columns or (n > 0 and prefix != "yhat"):
                continue  # the naive forecasts of the first table stand for all
            steps, mae = mae_by_h(table, names, columns)
            line, marker = looks[prefix]
            color = (f"C{n}" if several else PRED) if prefix == "yhat" else TRUTH
            text = _literal(label) if several and prefix == "yhat" else name
            ax.plot(steps, mae, line, marker=marker, color=color, lw=1.6, ms=5, label=text)
    ax.set_ylabel("mean absolute error")
    ax.set_title("error by steps ahead (all series, all origins)", fontsize=10)
    _style(ax, logy, "steps ahead h")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.legend(fontsize=8, loc="best")


def _draw_coverage(ax, banded: list, several: bool) -> None:
    """Coverage against h for each table with intervals, and its level (`interval_level`) as a line."""
    from matplotlib.ticker import MaxNLocator  # lazily: as Figure

    levels = set()
    for n, ((label, table), truths) in enumerate(banded):
        steps, covered = coverage_by_h(table, truths)
        ax.plot(steps, covered, "-", marker="o", color=f"C{n}" if several else PRED, lw=1.6, ms=5,
                label=_literal(label) if several else "coverage")  # fmt: skip
        if "interval_level" in table.columns:
            levels.update(np.unique(table.numbers("interval_level", True) / 100).tolist())
    for level in sorted(v for v in levels if np.isfinite(v)):
        ax.axhline(level, color=TRUTH, ls="--", lw=1.2, label=f"level {level:.0%}")
    ax.set_ylim(0, 1.02)
    ax.set_ylabel("coverage")
    ax.set_title("interval coverage by steps ahead (all series, all origins)", fontsize=10)
    _style(ax, False, "steps ahead h")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.legend(fontsize=8, loc="best")


def _draw_origins(ax, table: Table, truths: list[str], sid: str, logy: bool) -> None:
    """The truth of one series over time, and the forecasts of at most 6 origins, evenly
    spaced (each with its interval as a band, where the table has one)."""
    rows = (
        np.ones(len(table), bool)
        if "series" not in table.columns
        else np.asarray(table.columns["series"]).astype(str) == sid
    )
    t, origin, h = _times(table)[rows], table.numbers("origin")[rows], table.numbers("h")[rows]
    _, first = np.unique(t, return_index=True)
    for j, name in enumerate(truths):
        ax.plot(
            t[first],
            table.numbers(name, True)[rows][first],
            color=TRUTH,
            lw=3,
            alpha=0.45,
            label="truth" if j == 0 else None,
        )
    origins = np.unique(origin)
    shown = origins[np.unique(np.linspace(0, len(origins) - 1, min(len(origins), MAX_PANELS)).round().astype(int))]
    for k, o in enumerate(shown):
        at = np.flatnonzero(origin == o)
        at = at[np.argsort(h[at], kind="stable")]
        for j, name in enumerate(_yhat_names(table)):
            yhat = table.numbers(name, True)[rows][at]
            ax.plot(t[at], yhat, color=f"C{k}", lw=1.3, marker=".", ms=4, label=f"origin {o:g}" if j == 0 else None)
            if f"{name}_lo" in table.columns and f"{name}_hi" in table.columns:  # an interval, as a band
                lo, hi = (table.numbers(f"{name}_{end}", True)[rows][at] for end in ("lo", "hi"))
                ax.fill_between(
                    t[at], lo, hi, color=f"C{k}", alpha=0.15, lw=0, label="interval" if j == k == 0 else None
                )
    ax.set_title(f"series {_literal(sid)}: forecasts from {len(shown)} of {len(origins)} origins", fontsize=10)
    _style(ax, logy, "t")
    _date_ticks(ax, t)
    ax.legend(fontsize=8, loc="best", ncol=2)
