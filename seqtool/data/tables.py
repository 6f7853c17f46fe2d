"""Series tables (docs/formats.md, Tables): read and write CSV, npz and Parquet, from paths and pipes, and check them.

Two layers. `Table` is what a file holds: named columns in long form, one row per time
step. `SeriesTable` is a table read as series: inputs `x*`, targets `y*`, optional
`series` id and `t`, checked and converted to float64. Every command reads through
`read_table` and writes through `write_table`, so they all accept and produce the same
formats.
"""

from __future__ import annotations

import contextlib
import csv
import io
import re
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import BinaryIO

import numpy as np

from seqtool.data import columnar
from seqtool.data.dates import dates_of, is_dates, lengthened, not_a_date
from seqtool.errors import SeqtoolError
from seqtool.outputs import Target, check_format, format_of, open_output, write_errors

NPZ_MAGIC = b"PK\x03\x04"
TABLE_FORMATS = (".csv", ".npz", ".parquet")
MAX_LINE = 16 << 20  # bytes: 100,000 columns of 160 characters
FAST_CSV_BYTES = 1 << 20  # larger CSVs go to arrow's parser first (`columnar.from_csv`); < MAX_LINE


@dataclass
class Table:
    """Named columns in long form, in file order, all of one length.

    Cells read from CSV stay strings until a column is used as numbers (`numbers`), so
    columns that seqtool does not interpret (a `date`, a station id) are written back
    exactly as they were read. A large CSV or a Parquet file holds its columns in arrow
    until used (`columnar.ArrowColumns`).
    """

    columns: dict[str, np.ndarray]
    source: str = "table"
    roles: dict[str, list[str]] = field(default_factory=dict)  # x/y names an npz remembers

    def __len__(self) -> int:
        if isinstance(self.columns, columnar.ArrowColumns):
            return self.columns.rows
        return len(next(iter(self.columns.values()))) if self.columns else 0

    def numbers(self, name: str, missing_ok: bool = False) -> np.ndarray:
        """Column `name` as float64. Empty cells become NaN where `missing_ok`, else an error."""
        if isinstance(self.columns, columnar.ArrowColumns):
            parsed = self.columns.numbers(name, missing_ok)
            if parsed is not None:
                return parsed
        col = self.columns[name]
        if col.dtype.kind in "fiub":
            return col.astype(np.float64, copy=False)
        try:
            return col.astype(np.float64)
        except ValueError:
            pass
        out = np.empty(len(col))
        for i, cell in enumerate(col.tolist()):
            text = cell.strip()
            if not text and missing_ok:
                out[i] = np.nan
                continue
            try:
                out[i] = float(text)
            except ValueError:
                what = "an empty cell" if not text else f"{cell!r}"
                raise SeqtoolError(f"{self.source}: row {i + 1}, column {name!r}: {what} is not a number") from None
        return out

    def integers(self, name: str) -> np.ndarray | None:
        """Column `name` as int64 where every cell is written as an integer, else None."""
        if isinstance(self.columns, columnar.ArrowColumns):
            parsed = self.columns.integers(name)
            if parsed is not None:
                return parsed
        column = self.columns[name]
        if column.dtype.kind == "f":
            return None
        try:
            return column.astype(np.int64)
        except (ValueError, TypeError, OverflowError):
            return None


@dataclass
class SeriesTable:
    """One or more series in long form, with the roles of their columns.

    `columns` holds every column of the table (inputs, targets and `t` as float64; a
    missing target is NaN); the rows of series i are `offsets[i]:offsets[i+1]`.
    """

    columns: dict[str, np.ndarray]
    x_names: list[str]
    y_names: list[str]
    lengths: np.ndarray
    source: str = "table"
    ahead: dict[str, list[np.ndarray]] | None = None  # each column's given rows past each series' end (`covariates`)
    missing: np.ndarray | None = None  # [rows, F]: input cells empty in the table, read as filled (`gaps`)

    @classmethod
    def from_arrays(
        cls,
        x: Sequence[np.ndarray],
        x_names: Sequence[str] = ("x",),
        y: Sequence[np.ndarray] | None = None,
        y_names: Sequence[str] = ("y",),
        t: Sequence[np.ndarray] | None = None,
        ids: Sequence[str] | None = None,
        source: str = "table",
    ) -> SeriesTable:
        """Build a table from per-series arrays of shape [T_i] or [T_i, F], with a `series`
        column (ids 0, 1, ... unless given) and a `t` column where `t` is given."""
        lengths = np.array([len(a) for a in x], dtype=np.int64)
        ids = [str(i) for i in range(len(x))] if ids is None else [str(i) for i in ids]
        columns: dict[str, np.ndarray] = {"series": np.repeat(np.array(ids), lengths)}
        if t is not None:
            columns["t"] = np.concatenate(t).astype(np.float64)
        xs = np.concatenate([np.asarray(a, np.float64).reshape(len(a), -1) for a in x])
        columns.update({n: xs[:, j] for j, n in enumerate(x_names)})
        if y is None:
            y_names = ()
        else:
            ys = np.concatenate([np.asarray(a, np.float64).reshape(len(a), -1) for a in y])
            columns.update({n: ys[:, j] for j, n in enumerate(y_names)})
        return cls(columns, list(x_names), list(y_names), lengths, source)

    @property
    def offsets(self) -> np.ndarray:
        return np.concatenate([[0], np.cumsum(self.lengths)])

    @property
    def ids(self) -> list[str]:
        if "series" in self.columns:
            return self.columns["series"][self.offsets[:-1]].tolist()
        return ["0"]

    def named(self, i: int) -> str:
        """Series i as a message names it: "series 'a'", or "the series" in a table without ids."""
        return f"series {self.ids[i]!r}" if "series" in self.columns else "the series"

    @property
    def x(self) -> np.ndarray:
        """Inputs of all rows, [rows, F]; a gap (`missing`) holds the last value before it
        (`carried`): what a network reads and a forecast goes on from."""
        x = np.stack([self.columns[n] for n in self.x_names], axis=1)
        return x if self.missing is None else carried(x, self.offsets)

    @property
    def truth(self) -> np.ndarray:
        """Inputs of all rows as observed, [rows, F], NaN at a gap and up to `lead` (a
        forecast of those steps read a value from after them): what forecasts are scored on."""
        x = self.x
        if self.missing is None:
            return x
        early = positions(self.lengths) <= np.repeat(np.where(self.lead > 0, self.lead, -1), self.lengths)
        return np.where(self.missing | early[:, None], np.nan, x)

    @property
    def lead(self) -> np.ndarray:
        """Each series' first step at which every input has had a value [N] (0 without
        gaps): a step before it reads a value carried back from a later one (`carried`)."""
        if self.missing is None:
            return np.zeros(len(self.lengths), dtype=np.int64)
        rows = np.where(self.missing, len(self.missing), np.arange(len(self.missing))[:, None])
        first = np.minimum.reduceat(rows, self.offsets[:-1], axis=0).max(axis=1)
        return first - self.offsets[:-1]

    @property
    def y(self) -> np.ndarray | None:
        """Targets of all rows, [rows, G], NaN where a step has no target; None for none."""
        if not self.y_names:
            return None
        return np.stack([self.columns[n] for n in self.y_names], axis=1)

    def with_x(self, x: np.ndarray) -> SeriesTable:
        """The same table with its inputs replaced by x [rows, F]."""
        return replace(self, columns={**self.columns, **{n: x[:, j] for j, n in enumerate(self.x_names)}})

    def taken(self, rows: np.ndarray, lengths: np.ndarray) -> SeriesTable:
        """The series made of these rows (indices, end to end), series i the next lengths[i];
        a gap holds the value this table carried into it (from before the rows, maybe)."""
        columns = {name: col[rows] for name, col in self.columns.items()}
        missing = None if self.missing is None else self.missing[rows]
        if missing is not None:
            columns.update(zip(self.x_names, self.x[rows].T))
        lengths = np.asarray(lengths, dtype=np.int64)
        return SeriesTable(columns, self.x_names, self.y_names, lengths, self.source, missing=missing)

    def split(self, rows: np.ndarray) -> list[np.ndarray]:
        """Cut an array over all rows into one array per series."""
        return np.split(rows, self.offsets[1:-1])

    def padded(self, rows: np.ndarray, fill: float | str = 0.0) -> np.ndarray:
        """An array over all rows, [rows, ...], as [series, max length, ...] padded with `fill`."""
        n, steps = len(self.lengths), int(self.lengths.max())
        out = np.full((n, steps) + rows.shape[1:], fill, dtype=rows.dtype)
        out[np.arange(steps)[None, :] < self.lengths[:, None]] = rows
        return out


def read_table(source: str | Path | None = None) -> Table:
    """Read a CSV, npz or Parquet table from a path, or from standard input for None or '-'.

    The format is detected from the content, so npz and Parquet bytes arrive through a pipe too.
    """
    with opened(source) as (name, stream):
        data = stream.read()
    if isinstance(data, str):  # a standard input without a binary buffer
        data = data.encode("utf-8")
    if not data or data.isspace():  # isspace: no copy of a large input
        raise SeqtoolError(f"{name}: empty input, expected a CSV, npz or Parquet table")
    if data.startswith(NPZ_MAGIC):
        return from_npz(data, name)
    if columnar.is_parquet(data):
        return from_parquet(data, name)
    if data.startswith(columnar.PARQUET_MAGIC):
        cut_parquet(data, name)
    return from_csv(data, name)


def series_of(
    table: Table,
    x: str | Sequence[str] | None = None,
    y: str | Sequence[str] | None = None,
    missing_inputs: bool = False,
) -> SeriesTable:
    """Check a table as series, with inputs `x` and targets `y`: the checks behind
    `reading.read_series`, whose docstring says what `x`, `y` and `missing_inputs` take."""
    src, names = table.source, list(table.columns)
    x_names = columns_of(table, "x", x)
    y_names = columns_of(table, "y", y)
    if not x_names:
        hint = "--x names no column" if x is not None else "expected 'x' or 'x0', 'x1', ..., or name them with --x"
        raise SeqtoolError(f"{src}: no input column: {hint} (columns: {', '.join(names)})")
    both = set(x_names) & set(y_names)
    if both:
        raise SeqtoolError(f"{src}: column {sorted(both)[0]!r} cannot be both an input and a target")
    if "series" in x_names + y_names:
        raise SeqtoolError(f"{src}: 'series' is the series id, not an input or a target")

    rows = len(table)
    lengths = _series_lengths(table)
    numeric = {*x_names, *y_names, "t"}
    columns = {n: None if n in numeric else table.columns[n] for n in names}  # in the table's order
    for name in x_names:
        columns[name] = _finite(table, name, missing_ok=missing_inputs)
    for name in y_names:
        columns[name] = _finite(table, name, missing_ok=True)
    if "t" in columns:
        t = times_of(table)
        columns["t"] = t if t.dtype.kind in "fi" else table.columns["t"]
        first = np.zeros(rows, dtype=bool)
        first[np.cumsum(lengths)[:-1]] = True
        steps = np.diff(t)
        bad = np.flatnonzero((steps <= np.zeros(1, steps.dtype)[0]) & ~first[1:])
        if len(bad):
            r = bad[0] + 1
            written = columns["t"]  # dates as written, with their instants where those are what compare
            shown = (f"{t[r]}", f"{t[r - 1]}") != (f"{written[r]}", f"{written[r - 1]}")
            instants = f" (as instants: {t[r]} and {t[r - 1]})" if shown else ""
            raise not_ordered(src, r + 1, f"{written[r]}", f"{written[r - 1]}{instants}")
    return SeriesTable(columns, x_names, y_names, lengths, src)


def describe(table: SeriesTable) -> dict:
    """What seqtool sees in a table (`info --json`, docs/formats.md): its series, columns
    and the task they imply; `gaps` where input cells are empty."""
    lengths, y = table.lengths, table.y
    if y is None:
        task = "next-step forecasting of the inputs (no target column)"
    else:
        present = int((~np.isnan(y).all(axis=1)).sum())
        task = "sequence mapping x -> y"
        if present < len(y):
            task += f", targets at {present} of {len(y)} steps (empty cells are left out)"
    roles = {*table.x_names, *table.y_names, "series", "t"}
    info = {
        "source": table.source,
        "rows": int(lengths.sum()),
        "series": len(lengths),
        "length": {"min": int(lengths.min()), "median": int(np.median(lengths)), "max": int(lengths.max())},
        "inputs": list(table.x_names),
        "targets": list(table.y_names),
        "time": "t" if "t" in table.columns else None,
        "other_columns": [n for n in table.columns if n not in roles],
        "task": task,
    }
    if table.missing is not None:
        per_series = np.add.reduceat(table.missing.any(axis=1), table.offsets[:-1])
        info["gaps"] = {"cells": int(table.missing.sum()), "series": int((per_series > 0).sum())}
    return info


def description(info: dict) -> list[str]:
    """`describe`'s dict as the lines `info` prints."""
    n = info["length"]
    lines = {
        "source": info["source"],
        "rows": info["rows"],
        "series": info["series"],
        "length": f"min {n['min']}, median {n['median']}, max {n['max']}",
        "inputs": ", ".join(info["inputs"]),
        "targets": ", ".join(info["targets"]) or "(none)",
        "time": "column t" if info["time"] else "steps 0, 1, 2, ... (no t column)",
        "other columns": ", ".join(info["other_columns"]) or "(none)",
        "task": info["task"],
    }
    if "gaps" in info:
        lines["gaps"] = (
            f"{info['gaps']['cells']} empty input cells in {info['gaps']['series']} series "
            "(train fills each with the value before it and marks it: --gaps)"
        )
    return [f"{key + ':':15} {value}" for key, value in lines.items()]


def extended(
    table: SeriesTable, total: np.ndarray, new: dict[str, np.ndarray], same: tuple = (), skip: tuple = ()
) -> SeriesTable:
    """The table cut or lengthened to `total` rows per series, plus the `new` columns.

    Past the end: the rows given there (a `--known` model's), then the series id and the
    columns `same` (a model's per-series attributes) repeat, `t` goes on with its last
    spacing and a column of ISO dates by its calendar (`dates.continued`), inputs are
    empty (no truth), other columns are empty. Columns `skip` are left out (a rollout's
    `phase`, which it writes anew).
    """
    columns = {}
    for name, col in table.columns.items():
        if name in new or name in skip:
            continue
        parts = []
        for i, part in enumerate(table.split(col)):
            if table.ahead is not None:  # the rows given past the end (`covariates.history`)
                part = np.concatenate([part, table.ahead[name][i]])
            parts.append(_lengthen(part, int(total[i]), name, repeat=name == "series" or name in same))
        columns[name] = np.concatenate(parts)
    columns.update(new)
    return SeriesTable(columns, table.x_names, table.y_names, total.astype(np.int64), table.source)


def _lengthen(part: np.ndarray, n: int, name: str, repeat: bool = False) -> np.ndarray:
    """A series' column cut or lengthened to n rows: with `repeat`, its first value again."""
    if n <= len(part):
        return part[:n]
    extra = n - len(part)
    if repeat:
        return np.concatenate([part, np.repeat(part[:1], extra)])
    if name == "t":
        return lengthened(part, n)
    if part.dtype.kind not in "fiub" and is_dates(part):
        with contextlib.suppress(SeqtoolError):  # another column of dates that cannot go on: empty
            return lengthened(part, n)
    if part.dtype.kind == "f":
        return np.concatenate([part, np.full(extra, np.nan)])
    return np.concatenate([part.astype(str), np.full(extra, "")])  # whole numbers stay whole, as text


def check_table_output(dest: str | Path | None) -> Target | None:
    """Check a table's output path before any work: CSV, npz or Parquet by extension; a
    device, pipe or descriptor (`/dev/stdout`) gets CSV unless its name has another's."""
    return check_format(dest, TABLE_FORMATS, "table")


def write_table(table: Table | SeriesTable, dest: str | Path | None = None) -> None:
    """Write CSV to stdout (dest None or '-'), or CSV, npz or Parquet by the extension of `dest`.

    Files are replaced atomically (a failed write leaves any earlier file intact);
    devices and pipes are written through (`outputs`).
    """
    t = check_table_output(dest)
    if t is None:
        with write_errors("<stdout>"):
            sys.stdout.flush()
            if hasattr(sys.stdout, "buffer"):  # UTF-8 whatever the locale, as files
                _write_utf8(table.columns, sys.stdout.buffer)
                sys.stdout.buffer.flush()
            else:  # a text stream of its own (a notebook's, StringIO)
                _write_csv(table.columns, sys.stdout)
                sys.stdout.flush()
        return
    with open_output(t) as f:
        if format_of(t, TABLE_FORMATS) == ".npz":
            np.savez(f, **_npz_arrays(table))
        elif format_of(t, TABLE_FORMATS) == ".parquet":
            columnar.write_parquet(table.columns, f)
        else:
            _write_utf8(table.columns, f)


def _write_utf8(columns: dict[str, np.ndarray], stream: BinaryIO) -> None:
    text = io.TextIOWrapper(stream, encoding="utf-8", newline="", write_through=False)
    _write_csv(columns, text)
    text.flush()
    text.detach()


# --- reading -------------------------------------------------------------------------


@contextlib.contextmanager
def opened(source: str | Path | None) -> Iterator[tuple[str, BinaryIO]]:
    """A table's name and a stream to read it from: the file `source`, or standard input
    for None or '-' (binary where it can be; closed or a terminal is refused). A file that
    cannot be opened is refused in one line; a file is closed after use, stdin is not."""
    if source is None or str(source) == "-":
        stream = sys.stdin
        if stream is None or stream.closed:
            raise SeqtoolError("no input: give a table file, or pipe one in (stdin is closed)")
        if stream.isatty():
            raise SeqtoolError("no input: give a table file, or pipe one in (stdin is a terminal)")
        yield "<stdin>", getattr(stream, "buffer", None) or stream
        return
    name = str(source)
    try:
        f = open(source, "rb")  # noqa: SIM115 (closed by `with f` below; only open's errors are caught here)
    except FileNotFoundError:
        raise SeqtoolError(f"{name}: no such file") from None
    except IsADirectoryError:
        raise SeqtoolError(f"{name}: is a folder, not a table") from None
    except OSError as e:
        raise SeqtoolError(f"{name}: cannot read: {e.strerror or e}") from None
    with f:
        yield name, f


def from_csv(data: bytes, source: str) -> Table:
    if len(data) > FAST_CSV_BYTES and b'"' not in data and b"\0" not in data:
        end = data.find(b"\n")
        try:
            first = data[: end if end >= 0 else len(data)].decode("utf-8-sig").rstrip("\r")
        except UnicodeDecodeError:  # the csv module's path says where
            first = ""
        delimiter = _delimiter(first)
        header = [h.strip() for h in first.split(delimiter)]
        if first and all(header) and len(set(header)) == len(header):
            columns = columnar.from_csv(data, header, delimiter)
            if columns is not None:
                return Table(columns, source)
    _check_line_lengths(data, source)
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise SeqtoolError(f"{source}: not a CSV, npz or Parquet table (byte {e.start} is not UTF-8 text)") from None
    if not text.strip():  # e.g. a byte-order mark and nothing else
        raise SeqtoolError(f"{source}: empty input, expected a CSV, npz or Parquet table")
    first_line = text.split("\n", 1)[0]
    delimiter = _delimiter(first_line)
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, skipinitialspace=True)
    try:
        header = [h.strip() for h in next(reader)]
        rows = [r for r in reader if r]
    except csv.Error as e:
        raise SeqtoolError(f"{source}: line {reader.line_num}: malformed CSV ({e})") from None
    check_header(header, source)
    if not rows:
        raise no_rows(header, source)
    width = len(header)
    if set(map(len, rows)) != {width}:
        i, row = next((i, r) for i, r in enumerate(rows) if len(r) != width)
        raise SeqtoolError(f"{source}: row {i + 1} has {len(row)} fields, the header has {width}")
    # object arrays of str: building them is cheap, and numbers() converts on demand
    return Table({n: _strings(col) for n, col in zip(header, zip(*rows))}, source)


def _delimiter(header: str) -> str:
    """The first of comma, tab and semicolon that the header line holds (docs/formats.md, CSV)."""
    return next((d for d in ",\t;" if d in header), ",")


def check_header(header: list[str], source: str) -> None:
    """Every column named, no name twice (a CSV's header, a Parquet file's columns)."""
    seen: set[str] = set()
    for i, name in enumerate(header):
        if not name:
            raise SeqtoolError(f"{source}: column {i + 1} of the header has no name")
        if name in seen:
            raise SeqtoolError(f"{source}: column name {name!r} appears twice in the header")
        seen.add(name)


def no_rows(header: list[str], source: str) -> SeqtoolError:
    return SeqtoolError(f"{source}: a header ({', '.join(header)}) but no rows")


def _strings(cells: tuple) -> np.ndarray:
    out = np.empty(len(cells), dtype=object)
    out[:] = cells
    return out


def _check_line_lengths(data: bytes, source: str) -> None:
    """Refuse a line longer than MAX_LINE before decoding: parsing it would take many
    times its size in memory (a 1 GB line would take 8 GB)."""
    if len(data) <= MAX_LINE:
        return
    ends = np.flatnonzero(np.frombuffer(data, np.uint8) == ord("\n"))
    lengths = np.diff(np.concatenate([[-1], ends, [len(data)]])) - 1
    i = int(np.argmax(lengths))
    if lengths[i] > MAX_LINE:
        raise SeqtoolError(
            f"{source}: line {i + 1} is {lengths[i]:,} bytes long, more than any table line "
            f"seqtool reads ({MAX_LINE >> 20} MiB)"
        )


def from_npz(data: bytes, source: str) -> Table:
    try:
        npz = np.load(io.BytesIO(data), allow_pickle=False)
        names = [str(n) for n in npz["columns"]]
        if "lengths" not in npz.files:
            return Table({n: npz[_member(n, series=False)] for n in names}, source)
        lengths = npz["lengths"].astype(np.int64)
        mask = np.arange(int(lengths.max()))[None, :] < lengths[:, None]
        x_names, y_names = [str(n) for n in npz["x_names"]], [str(n) for n in npz["y_names"]]
        columns = {}
        for name in names:
            if name == "series":
                columns[name] = np.repeat(npz["series"], lengths)
            elif name in x_names:
                columns[name] = npz["x"][..., x_names.index(name)][mask]
            elif name in y_names:
                columns[name] = npz["y"][..., y_names.index(name)][mask]
            else:
                columns[name] = npz[_member(name)][mask]
        return Table(columns, source, {"x": x_names, "y": y_names})
    except Exception as e:  # a broken zip, a foreign npz, pickled objects, bad shapes: all refused
        if _pickled(data):
            raise SeqtoolError(f"{source}: a checkpoint (a trained model), not a table") from None
        reason = str(e).strip().splitlines()[0][:120] if str(e).strip() else type(e).__name__
        raise SeqtoolError(f"{source}: not a seqtool npz table ({reason})") from None


def _pickled(data: bytes) -> bool:
    """Whether a zip holds a pickle, as torch.save's checkpoints do (`data.pkl`)."""
    import zipfile

    try:
        return any(n.endswith("data.pkl") for n in zipfile.ZipFile(io.BytesIO(data)).namelist())
    except (zipfile.BadZipFile, ValueError):
        return False


def from_parquet(data: bytes, source: str) -> Table:
    """A Parquet file's columns (`columnar.of_arrow`), checked as a CSV's header and rows are."""
    with parquet_errors(source):
        columns = columnar.from_parquet(data)
    check_header(list(columns), source)
    if not columns.rows:
        raise no_rows(list(columns), source)
    return Table(columns, source)


def cut_parquet(data: bytes, source: str) -> None:
    """Refuse bytes that begin as Parquet, do not end as it, and are not text: a file cut short."""
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        raise SeqtoolError(
            f"{source}: not a readable Parquet table (it begins as one but does not end as one: cut short?)"
        ) from None


@contextlib.contextmanager
def parquet_errors(source: str) -> Iterator[None]:
    """A Parquet file arrow cannot read (damaged, a column of lists) refused in one line."""
    try:
        yield
    except SeqtoolError:
        raise
    except Exception as e:
        reason = str(e).strip().splitlines()[0][:160] if str(e).strip() else type(e).__name__
        raise SeqtoolError(f"{source}: not a readable Parquet table ({reason})") from None


def columns_of(table: Table, prefix: str, chosen: str | Sequence[str] | None = None) -> list[str]:
    """The columns of a role ("x" or "y"): those chosen (--x/--y: "a,b" or a list; an empty
    list means none; a missing name is refused), else those an npz remembers, else the
    naming rule (`of_role`)."""
    names, src, hint = list(table.columns), table.source, table.roles.get(prefix)
    if chosen is not None:  # an empty list means "none"
        if isinstance(chosen, str):
            chosen = [c.strip() for c in chosen.split(",") if c.strip()]
        picked = list(chosen)
        for name in picked:
            if name not in names:
                raise SeqtoolError(f"{src}: no column {name!r} for --{prefix} (columns: {', '.join(names)})")
        return picked
    if hint is not None and all(n in names for n in hint):
        return list(hint)
    return of_role(names, prefix)


def numbered(prefix: str, n: int) -> list[str]:
    """The names of n columns of one role (docs/formats.md, Tables): `x` alone, or x0, x1, ..."""
    return [prefix] if n == 1 else [f"{prefix}{i}" for i in range(n)]


def of_role(names: Sequence[str], prefix: str) -> list[str]:
    """The columns of `names` that the naming rule gives to a role: `prefix` itself, or
    else prefix0, prefix1, ... in order of their number."""
    if prefix in names:
        return [prefix]
    found = [n for n in names if re.fullmatch(rf"{prefix}\d+", n)]
    return sorted(found, key=lambda n: int(n[len(prefix) :]))


def _series_lengths(table: Table) -> np.ndarray:
    """Rows per series; rows of one series must be contiguous."""
    if "series" not in table.columns:
        return np.array([len(table)], dtype=np.int64)
    ids = table.columns["series"]
    starts = np.flatnonzero(np.concatenate([[True], ids[1:] != ids[:-1]]))
    run_ids = ids[starts].tolist()
    if len(set(run_ids)) != len(run_ids):
        seen: dict[str, int] = {}
        for sid, start in zip(run_ids, starts.tolist()):
            if sid in seen:
                raise not_contiguous(table.source, start + 1, sid, seen[sid] + 1)
            seen[sid] = start
    return np.diff(np.concatenate([starts, [len(ids)]])).astype(np.int64)


def not_ordered(source: str, row: int, value, before) -> SeqtoolError:
    """The error of row `row` (from 1), whose t does not increase on the row before it."""
    return SeqtoolError(
        f"{source}: row {row}, column 't': {value} does not increase on {before} "
        "(rows of a series must be ordered by t)"
    )


def not_contiguous(source: str, row: int, sid: str, started: int) -> SeqtoolError:
    """The error of row `row` (from 1), where series `sid`, begun at row `started`, comes back."""
    return SeqtoolError(
        f"{source}: row {row}: series {sid!r} continues after other series (it started at row {started}); "
        f"rows of one series must be contiguous"
    )


def ranges(starts: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """starts[i], starts[i] + 1, ..., starts[i] + counts[i] - 1 for every i, end to end."""
    return np.repeat(starts - (np.cumsum(counts) - counts), counts) + np.arange(int(np.sum(counts)))


def carried(x: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """x [rows, F] of series end to end with each NaN replaced by the last value before it
    in its series (the first value after it at the series' start); all-NaN stays NaN."""
    rows = np.arange(len(x))[:, None]
    known = ~np.isnan(x)
    index = np.where(known, rows, -1)
    starts = offsets[:-1]
    if len(starts):
        first = np.minimum.reduceat(np.where(known, rows, len(x)), starts[starts < len(x)], axis=0)
        index[starts[starts < len(x)]] = np.minimum(first, len(x) - 1)
    index = np.maximum.accumulate(index, axis=0)
    return np.take_along_axis(x, np.maximum(index, 0), axis=0)


def positions(lengths: np.ndarray) -> np.ndarray:
    """Each row's step index within its series, end to end."""
    return ranges(np.zeros_like(lengths), lengths)


def times_of(table: Table) -> np.ndarray:
    """Column `t` as numbers (int64 where every value is written as an integer, so that it is
    written back as one), or as datetime64 when it holds dates (then it is kept as written)."""
    try:
        t = _finite(table, "t", missing_ok=False)
    except SeqtoolError as not_a_number:
        try:
            dates = dates_of(table.columns["t"])
        except SeqtoolError as e:
            raise SeqtoolError(f"{table.source}: column 't': {e}") from None
        if dates is None:
            r = not_a_date(table.columns["t"])
            if r is not None:
                cell = str(table.columns["t"][r]).strip()
                raise SeqtoolError(
                    f"{table.source}: row {r + 1}, column 't': {cell!r} is not an ISO date (YYYY-MM-DD, "
                    "YYYY-MM-DDTHH:MM, ...) like the rest of the column"
                ) from None
            raise not_a_number from None
        return dates
    whole = table.integers("t") if (t == np.round(t)).all() else None
    return whole if whole is not None and (whole == t).all() else t


def _finite(table: Table, name: str, missing_ok: bool) -> np.ndarray:
    """Column as float64 with no inf, and no NaN unless missing values are allowed."""
    values = table.numbers(name, missing_ok)
    bad = ~np.isfinite(values) if not missing_ok else np.isinf(values)
    if bad.any():
        r = int(np.flatnonzero(bad)[0])
        raise SeqtoolError(f"{table.source}: row {r + 1}, column {name!r}: {values[r]} is not a finite number")
    return values


# --- writing -------------------------------------------------------------------------


def _cells(col: np.ndarray) -> list:
    """Column as CSV cells: floats by their shortest exact repr, NaN as an empty cell."""
    values = col.tolist()
    if col.dtype.kind == "f" and np.isnan(col).any():
        values = [None if v != v else v for v in values]
    return values


def cells_text(col: np.ndarray) -> list[str]:
    """Column as the text of its CSV cells (`_cells`; NaN empty)."""
    return ["" if v is None else str(v) for v in _cells(col)]


def _write_csv(columns: dict[str, np.ndarray], stream, header: bool = True) -> None:
    writer = csv.writer(stream, lineterminator="\n")
    if header:
        writer.writerow(list(columns))
    writer.writerows(zip(*(_cells(c) for c in columns.values())))


def csv_text(table: Table, header: bool = True) -> bytes:
    """The CSV that `write_table` writes for `table` (without its header line if asked): for
    a file that grows a row at a time, written as the whole table would be."""
    text = io.StringIO()
    _write_csv(table.columns, text, header)
    return text.getvalue().encode("utf-8")


def _npz_arrays(table: Table | SeriesTable) -> dict[str, np.ndarray]:
    """Series tables as [series, step, feature] arrays plus `lengths` (docs/formats.md, Tables);
    other tables column by column. Floats stay float64, so CSV -> npz -> CSV is exact."""
    names = list(table.columns)
    arrays: dict[str, np.ndarray] = {"columns": np.array(names, dtype=str)}
    if not isinstance(table, SeriesTable):
        arrays.update({_member(n, series=False): _plain(c) for n, c in table.columns.items()})
        return arrays
    arrays["lengths"] = table.lengths
    arrays["x_names"] = np.array(table.x_names, dtype=str)
    arrays["y_names"] = np.array(table.y_names, dtype=str)
    arrays["x"] = table.padded(table.x)
    if table.y_names:
        arrays["y"] = table.padded(table.y, np.nan)
    for name in names:
        if name == "series":
            arrays["series"] = np.array(table.ids, dtype=str)
        elif name not in table.x_names and name not in table.y_names:
            col = _plain(table.columns[name])
            fill = "" if col.dtype.kind == "U" else 0 if col.dtype.kind == "i" else np.nan  # padding: never read
            arrays[_member(name)] = table.padded(col, fill)
    return arrays


def _member(name: str, series: bool = True) -> str:
    """The npz member of a column other than inputs, targets and ids (docs/formats.md, Tables):
    a series table's `t`, or col_NAME."""
    return "t" if series and name == "t" else f"col_{name}"


def _plain(col: np.ndarray) -> np.ndarray:
    """An array that loads without pickle: strings as fixed-width unicode."""
    return col.astype(str) if col.dtype.kind == "O" else col
