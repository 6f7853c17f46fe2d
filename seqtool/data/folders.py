"""Tables bigger than memory: the table folder (docs/formats.md, Table folders), a folder
of .npy arrays that `convert` writes from a CSV without ever holding the whole CSV, and
that `Folder` opens, read by offset (`os.pread`), nothing until used.

A table folder (format "seqtool-table", version 1):

    meta.json     format, version, x_names, y_names, rows, series, t ("number", "integer",
                  "date" or null), sha256 (of the arrays below, for --resume)
    x.npy         inputs as read, float64 [rows, F]; y.npy targets [rows, G] (NaN: none)
    t.npy         the t column (float64, or datetime64 for dates), where the table has one
    offsets.npy   int64 [series + 1]: series i is rows offsets[i]:offsets[i+1]
    series.npy    the series ids, str [series]
    moments.npy   float64 [blocks, F + G, 4]: count, mean, std, largest magnitude of each
                  column in each block of BLOCK rows of a series (blocks start at each
                  series' first row), so that training standardises without a pass over
                  the rows

Every command reads such a folder (`reading.read_series` loads it whole); `train` of a
next-step table without --diff, --log-values or --time-features reads it in place
(`training.inplace.FolderRows`), so memory does not grow with the table. A chunk's rows
are checked by the table reader (`tables.series_of`); what a chunk cannot see alone (a
series that comes back, t across chunks) by the writer, with the reader's errors.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from seqtool.data import columnar
from seqtool.data.dates import dates_of
from seqtool.data.examples import held_out, tail_start
from seqtool.data.scaling import Scaling, spread
from seqtool.data.tables import (
    NPZ_MAGIC,
    SeriesTable,
    Table,
    cells_text,
    check_header,
    cut_parquet,
    from_csv,
    from_npz,
    not_contiguous,
    not_ordered,
    opened,
    parquet_errors,
    series_of,
)
from seqtool.errors import SeqtoolError
from seqtool.outputs import new_folder

FORMAT, VERSION = "seqtool-table", 2  # 2: the table's other columns, as text (1: none; still read)
BLOCK = 1 << 16  # rows of a series per block of moments
CHUNK = 16 << 20  # bytes of CSV parsed at a time by convert
VAL_ROWS = 1 << 18  # rows of validation at most, for a table read in place (each evaluation runs them)
LEAD_WINDOWS = 100  # one series' validation tail starts this many windows earlier (its lead-in)


def _first_line(e: Exception) -> str:
    return (str(e).splitlines() or [type(e).__name__])[0][:200]


def is_folder(source) -> bool:
    """Whether `source` names a folder (a table folder, or a mistake said as such)."""
    return isinstance(source, (str, os.PathLike)) and str(source) != "-" and Path(source).is_dir()


# --- writing: convert ---------------------------------------------------------------------


@dataclass
class Converted:
    path: Path
    rows: int
    series: int


def convert(source: str | Path | None, dest: str | Path, x: str | None = None, y: str | None = None) -> Converted:
    """`seqtool convert`: a CSV or Parquet table (path or stdin) to a table folder at `dest`, a part at
    a time (`_parts`), each chunk read and checked by the table reader (`tables.series_of`), so a folder
    holds what the CSV would give. Written to a temporary folder beside `dest`, renamed at
    the end (`outputs.new_folder`): a failure leaves nothing. An npz input is read whole (npz cannot stream)."""
    if str(dest) in ("-", ""):
        raise SeqtoolError(f"-o {str(dest)!r}: convert writes a table folder, not a stream: name a new folder")
    dest = Path(dest)
    if os.path.lexists(dest):
        what = "is a link" if dest.is_symlink() else "exists"
        raise SeqtoolError(f"{dest}: {what}; convert writes a new folder (remove it, or choose another name)")
    if not dest.parent.is_dir():
        raise SeqtoolError(f"{dest}: its folder {dest.parent} does not exist")
    with new_folder(dest) as tmp:
        writer = _Writer(tmp)
        for table in _chunks(source, x, y):
            writer.add(table)
        meta = writer.close()
        _write_moments(tmp, meta)
    return Converted(dest, meta["rows"], meta["series"])


def _chunks(source, x, y):
    """The table, as series tables of consecutive rows (`_parts`); error lines name rows and
    lines of the whole file."""
    with opened(source) as (name, stream):
        rows, last = 0, (None, 0)  # the last series read, and its first row in the file
        for part in _parts(name, stream):
            try:
                table = series_of(part(), x, y, missing_inputs=True)
            except SeqtoolError as e:  # the reader counts from the part's first row
                text = re.sub(r"\b(row|line) (\d+)", lambda m: f"{m[1]} {int(m[2]) + rows}", str(e))  # noqa: B023 (called at once)
                if f"series {last[0]!r} continues" in text:  # it began in an earlier part
                    text = re.sub(r"started at row \d+", f"started at row {last[1] + 1}", text)
                raise SeqtoolError(text) from None
            ids = table.ids
            if not (len(ids) == 1 and ids[0] == last[0]):
                last = (ids[-1], rows + int(table.offsets[-2]))
            rows += int(table.lengths.sum())
            yield table
        if rows == 0:
            raise SeqtoolError(f"{name}: a header but no rows")


def _parts(name: str, stream) -> Iterator[Callable[[], Table]]:
    """A table's consecutive parts, each read when called: CHUNK bytes of CSV (a chunk ends
    at a line end outside quotes), a Parquet file's batches, or an npz whole (npz cannot stream)."""
    header = stream.readline()
    if header.startswith(NPZ_MAGIC):
        data = header + stream.read()
        yield lambda: from_npz(data, name)
        return
    if header.startswith(columnar.PARQUET_MAGIC):
        if not stream.seekable():
            stream = io.BytesIO(header + stream.read())
        if _parquet_end(stream, len(header)):
            yield from _batches(name, stream)
            return
        cut_parquet(header, name)
    if b"\r" in header.rstrip(b"\r\n"):  # \r alone ends lines (old Macs)
        stream = io.BytesIO((header + stream.read()).replace(b"\r", b"\n"))  # (one readline read it all)
        header = stream.readline()
    if not header.strip():
        raise SeqtoolError(f"{name}: empty input, expected a CSV, npz or Parquet table")
    while block := stream.read(CHUNK):
        pieces = [header, block, stream.readline()]  # to the end of its last line; joined once
        if b'"' in block:
            while sum(p.count(b'"') for p in pieces[1:]) % 2 and (more := stream.readline()):  # a quoted cell goes on
                pieces.append(more)
        if not all(p.isspace() for p in pieces[1:] if p):
            data = b"".join(pieces)
            yield lambda data=data: from_csv(data, name)


def _parquet_end(stream, after: int) -> bool:
    """Whether a seekable file that begins as Parquet ends as one too; left after its first
    `after` bytes when it does not (a CSV whose first name starts PAR1), else at its start."""
    end = stream.seek(0, io.SEEK_END)
    stream.seek(max(0, end - len(columnar.PARQUET_MAGIC)))
    whole = end >= 2 * len(columnar.PARQUET_MAGIC) and stream.read() == columnar.PARQUET_MAGIC
    stream.seek(0 if whole else after)
    return whole


def _batches(name: str, stream) -> Iterator[Callable[[], Table]]:
    """A Parquet file's batches as parts."""
    with parquet_errors(name):
        for columns in columnar.parquet_batches(stream):
            check_header(list(columns), name)
            yield lambda columns=columns: Table(columns, name)


class _Writer:
    """Appends series tables, chunk after chunk, to the arrays of a table folder; checks
    what a chunk cannot see alone (a series that comes back, t across chunks)."""

    def __init__(self, folder: Path):
        self.folder, self.files, self.rows, self.digest = folder, {}, 0, hashlib.sha256()
        self.ids: list[str] = []
        self.lengths: list[int] = []
        self.first_row: dict[str, int] = {}
        self.names = self.t_kind = self.last_t = None
        self.integers = True  # every chunk's numeric t held integers: read back as integers
        self.columns: list[str] = []  # the table's columns, in its order
        self.others: list[_TextAppender] = []  # the columns seqtool does not read, kept as text
        self.t_text: _TextAppender | None = None

    def add(self, table: SeriesTable) -> None:
        ids, lengths = table.ids, table.lengths.tolist()
        if self.names is None:
            self.names = (table.x_names, table.y_names)
            self.t_kind = (
                None if "t" not in table.columns else ("number" if table.columns["t"].dtype.kind in "fi" else "date")
            )
            self.columns = list(table.columns)
            roles = {"series", "t", *table.x_names, *table.y_names}
            others = [n for n in self.columns if n not in roles]
            self.others = [_TextAppender(self.folder, f"other{i}", n) for i, n in enumerate(others)]
            if self.t_kind == "date":  # its text too: written back as it was (its offset, its form)
                self.t_text = _TextAppender(self.folder, "t", "t")
        for other in [*self.others, *([self.t_text] if self.t_text else [])]:
            other.append(table.columns[other.name])
        t = table.columns.get("t")
        if t is not None:
            t = self._times(t, table.source)
        if self.ids and ids[0] == self.ids[-1]:  # the last series goes on
            if t is not None and not t[0] > self.last_t:
                raise not_ordered(table.source, self.rows + 1, t[0], self.last_t)
            self.lengths[-1] += lengths[0]
            ids, lengths = ids[1:], lengths[1:]
        starts = self.rows + np.concatenate([[0], np.cumsum(table.lengths)])[-len(ids) - 1 : -1] if ids else []
        for sid, start in zip(ids, starts):
            if sid in self.first_row:
                raise not_contiguous(table.source, int(start) + 1, sid, self.first_row[sid] + 1)
            self.first_row[sid] = int(start)
        self.ids += ids
        self.lengths += lengths
        arrays = {"x": table.x, "y": table.y, "t": t}
        for key, a in arrays.items():
            if a is not None:
                a = np.ascontiguousarray(a)
                if key not in self.files:
                    self.files[key] = _NpyAppender(self.folder / f"{key}.npy", a.dtype, a.shape[1:])
                self.files[key].append(a)
                if key != "t":
                    self.digest.update(a.tobytes())
        self.last_t = t[-1] if t is not None else None
        self.rows += len(table.x)

    def _times(self, t: np.ndarray, source: str) -> np.ndarray:
        """t as stored: float64 (noting whether every chunk held integers), or dates as
        datetime64 in the unit of the first chunk's dates (a later date that unit cannot
        hold exactly is refused)."""
        kind = "number" if t.dtype.kind in "fi" else "date"
        if kind != self.t_kind:
            raise SeqtoolError(f"{source}: column 't' holds {kind}s from row {self.rows + 1}, {self.t_kind}s before")
        if kind == "number":
            self.integers = self.integers and t.dtype.kind == "i"
            if t.dtype.kind == "i" and len(t) and np.abs(t).max() > 2**53:
                raise SeqtoolError(
                    f"{source}: column 't' holds whole numbers beyond 2**53, which a folder's float64 t cannot "
                    "hold exactly; write them as dates, or train from the CSV"
                )
            return t.astype(np.float64)
        dates = dates_of(t)
        if "t" not in self.files:
            return dates
        stored = dates.astype(self.files["t"].dtype)
        if (stored != dates).any():
            raise SeqtoolError(
                f"{source}: column 't' is finer from row {self.rows + 1} than the first rows' "
                f"{np.datetime_data(stored.dtype)[0]} (convert keeps the unit of the first dates)"
            )
        return stored

    def close(self) -> dict:
        for f in [*self.files.values(), *self.others, *([self.t_text] if self.t_text else [])]:
            f.close()
        offsets = np.concatenate([[0], np.cumsum(self.lengths, dtype=np.int64)])
        _save(self.folder / "offsets.npy", offsets)
        _save(self.folder / "series.npy", np.array(self.ids, dtype=str))
        x_names, y_names = self.names
        self.digest.update(_described(x_names, y_names, offsets))
        t = "integer" if self.t_kind == "number" and self.integers else self.t_kind
        meta = {
            "format": FORMAT, "version": VERSION, "x_names": x_names, "y_names": y_names,
            "rows": self.rows, "series": len(self.ids), "t": t, "sha256": self.digest.hexdigest(),
            "columns": self.columns, "others": [o.name for o in self.others],
        }  # fmt: skip
        (self.folder / "meta.json").write_text(json.dumps(meta, indent=1) + "\n")
        return meta


def _described(x_names: list[str], y_names: list[str], offsets: np.ndarray) -> bytes:
    """What `sha256` covers after the values: the names, the counts, the offsets."""
    return json.dumps([x_names, y_names, int(offsets[-1]), len(offsets) - 1]).encode() + offsets.tobytes()


def check_inputs(folder: Folder, digest: bool = False) -> None:
    """Refuse a folder read in place whose inputs are not those convert wrote (x.npy edited
    by hand): a NaN, where the moments count no gap (it would end the run as "diverged"),
    found in one pass at memory speed; with `digest` (--resume), also their sha256,
    recomputed (about 0.6 GB/s), which must be meta.json's: a run never resumes on other data."""
    sha = hashlib.sha256()
    for first, block in folder.x.blocks():
        if not np.isfinite(block.sum()):  # (a sum that overflows is looked at closely)
            bad = np.flatnonzero(~np.isfinite(block).all(axis=1))
            if len(bad):
                value = block[bad[0]][~np.isfinite(block[bad[0]])][0]
                value = "NaN" if np.isnan(value) else value
                raise SeqtoolError(
                    f"{folder.source}: x.npy row {first + int(bad[0]) + 1} holds {value}, which convert did not write "
                    "(the moments count no gap there): the folder was changed by hand; convert the table again"
                )
        if digest:
            sha.update(block)
    sha.update(_described(folder.x_names, folder.y_names, folder.offsets))
    if digest and sha.hexdigest() != folder.meta.get("sha256"):
        raise SeqtoolError(
            f"{folder.source}: x.npy is not what convert wrote (its sha256 is not meta.json's): "
            "the folder was changed by hand; convert the table again"
        )
    if digest and not np.allclose(_moments(folder.path, folder.offsets), folder.moments, rtol=1e-9, atol=0):
        raise SeqtoolError(
            f"{folder.source}: moments.npy is not the moments of x.npy: the folder was changed by hand; "
            "convert the table again"
        )


def _written_t(values: np.ndarray, integers: bool) -> np.ndarray:
    """A folder's t as a table holds it: dates as ISO text, integers as integers."""
    if values.dtype.kind == "M":
        return np.datetime_as_string(values).astype(object)
    return values.astype(np.int64) if integers else values


class _TextAppender:
    """A column seqtool does not read, kept as the text it was read as: its cells' UTF-8
    end to end in `other{i}.txt`, where each ends in `other{i}.ends.npy` (int64 [rows])."""

    def __init__(self, folder: Path, stem: str, name: str):
        self.name, self.written = name, 0
        self.text = open(folder / f"{stem}.txt", "wb")  # noqa: SIM115 (open until close())
        self.ends = _NpyAppender(folder / f"{stem}.ends.npy", np.dtype(np.int64), ())

    def append(self, column: np.ndarray) -> None:
        cells = [c.encode() for c in cells_text(column)]
        self.text.write(b"".join(cells))
        self.ends.append(self.written + np.cumsum([len(c) for c in cells], dtype=np.int64))
        self.written += sum(len(c) for c in cells)

    def close(self) -> None:
        self.text.close()
        self.ends.close()


class _NpyAppender:
    """An .npy file written row block by row block: a header with room for any row count,
    rewritten with the true count at the end."""

    HEADER = 128

    def __init__(self, path: Path, dtype, tail: tuple):
        self.file, self.dtype, self.tail, self.rows = open(path, "wb"), dtype, tail, 0  # noqa: SIM115 (open until close())
        self.file.write(b"\0" * self.HEADER)

    def append(self, a: np.ndarray) -> None:
        if a.dtype != self.dtype or a.shape[1:] != self.tail:
            raise SeqtoolError(f"a later part of the table holds {a.dtype} values where the first held {self.dtype}")
        self.file.write(a.tobytes())
        self.rows += len(a)

    def close(self) -> None:
        text = repr(
            {
                "descr": np.lib.format.dtype_to_descr(self.dtype),
                "fortran_order": False,
                "shape": (self.rows, *self.tail),
            }
        )
        self.file.seek(0)
        self.file.write(
            b"\x93NUMPY\x01\x00"
            + (self.HEADER - 10).to_bytes(2, "little")
            + text.ljust(self.HEADER - 11).encode("latin1")
            + b"\n"
        )
        self.file.close()


def _write_moments(folder: Path, meta: dict) -> None:
    _save(folder / "moments.npy", _moments(folder, np.load(folder / "offsets.npy")))


def _save(path: Path, a: np.ndarray) -> None:
    """np.save through a buffer: a full disk is then a write's OSError with its reason, not
    numpy's "N requested and M written" (np.save writes a real file with tofile)."""
    buffer = io.BytesIO()
    np.lib.format.write_array(buffer, a, allow_pickle=False)
    path.write_bytes(buffer.getbuffer())


def _moments(folder: Path, offsets: np.ndarray) -> np.ndarray:
    """moments.npy's values: each column's count, mean, std and largest magnitude in each
    block, about 4M rows read at a time."""
    values = [_Array(folder / f"{k}.npy") for k in ("x", "y") if (folder / f"{k}.npy").exists()]
    starts = _blocks(offsets)
    out = np.empty((len(starts) - 1, sum(v.shape[1] for v in values), 4))
    step = max(1, (1 << 22) // BLOCK)  # blocks per pass: about 4M rows
    for b in range(0, len(starts) - 1, step):
        end = min(b + step, len(starts) - 1)
        first, stop = starts[b], starts[end]
        cuts = starts[b:end] - first
        a = np.concatenate([v.read(first, stop) for v in values], axis=1)
        out[b : b + len(cuts)] = _block_moments(a, cuts)
    return out


def _blocks(offsets: np.ndarray) -> np.ndarray:
    """The first row of every block (each series' rows in blocks of BLOCK), and the end."""
    lengths = np.diff(offsets)
    each = -(-lengths // BLOCK)
    within = np.arange(int(each.sum())) - np.repeat(np.cumsum(each) - each, each)
    return np.concatenate([np.repeat(offsets[:-1], each) + within * BLOCK, offsets[-1:]])


def _block_moments(a: np.ndarray, cuts: np.ndarray) -> np.ndarray:
    """[blocks, columns, 4] moments of the rows of `a` in blocks starting at `cuts`."""
    has = ~np.isnan(a)
    v = np.where(has, a, 0.0)
    count = np.add.reduceat(has, cuts, axis=0).astype(np.float64)
    mean = np.add.reduceat(v, cuts, axis=0) / np.maximum(count, 1)
    sizes = np.diff(np.append(cuts, len(a)))
    d = np.where(has, a - np.repeat(mean, sizes, axis=0), 0.0)
    std = np.sqrt(np.add.reduceat(d * d, cuts, axis=0) / np.maximum(count, 1))
    big = np.maximum.reduceat(np.abs(v), cuts, axis=0)
    return np.stack([count, mean, std, big], axis=-1)


# --- reading: a folder, whole or in place -------------------------------------------------


def _kept(meta: dict, folder: Path, roles: list[str]) -> dict[str, _Texts]:
    """A version 2 folder's other columns, by name (none in version 1), checked: the
    columns are the roles' (`roles`: the inputs and targets), t, maybe series, and these;
    and dates in t as written, where the folder has them (t.txt)."""
    if "columns" not in meta:
        return {}
    columns, others = [str(n) for n in meta["columns"]], [str(n) for n in meta["others"]]
    held = {*roles, *others, *(["t"] if meta["t"] else [])} | ({"series"} & set(columns))
    if sorted(columns) != sorted(held) or len(set(others)) != len(others):
        raise ValueError("meta.json's columns do not fit its x_names, y_names, t and others")
    kept = {name: _Texts(folder, f"other{i}", meta["rows"]) for i, name in enumerate(others)}
    if meta["t"] == "date" and (folder / "t.txt").exists():
        kept["t"] = _Texts(folder, "t", meta["rows"])
    return kept


def _with_kept(columns: dict, meta: dict, others: dict[str, _Texts], spans: list) -> dict:
    """The columns read, with the other columns' rows `spans`, in the table's own order (no
    `series` where it had none)."""
    columns = {**columns, **{name: text.read(spans) for name, text in others.items()}}
    return {name: columns[name] for name in meta["columns"]} if "columns" in meta else columns


class _Texts:
    """A column kept as text (`_TextAppender`), read by rows."""

    def __init__(self, folder: Path, stem: str, rows: int):
        self.ends = _Array(folder / f"{stem}.ends.npy")
        self.fd = os.open(folder / f"{stem}.txt", os.O_RDONLY)
        size = os.fstat(self.fd).st_size
        if (
            self.ends.shape != (rows,)
            or self.ends.dtype != np.int64
            or (rows and self.ends.read(rows - 1, rows)[0] != size)
        ):
            raise ValueError(f"{stem}.ends.npy does not fit meta.json and {stem}.txt")
        self.path = folder / f"{stem}.txt"

    def __del__(self):
        if getattr(self, "fd", None) is not None:
            os.close(self.fd)

    def read(self, spans: list[tuple[int, int]]) -> np.ndarray:
        """The cells of rows b:e of each span, end to end, as str."""
        cells: list[str] = []
        for b, e in spans:
            ends = self.ends.read(max(b - 1, 0), e)
            start = int(ends[0]) if b > 0 else 0
            ends = ends[1:] if b > 0 else ends
            data = os.pread(self.fd, int(ends[-1]) - start, start) if len(ends) else b""
            bounds = np.concatenate([[0], ends - start])
            if (np.diff(bounds) < 0).any() or bounds[-1] != len(data):
                raise SeqtoolError(f"{self.path}: a damaged table folder (its .ends.npy does not fit it)")
            try:
                cells += [data[a:b].decode() for a, b in zip(bounds[:-1].tolist(), bounds[1:].tolist())]
            except UnicodeDecodeError:
                raise SeqtoolError(f"{self.path}: a damaged table folder (not UTF-8)") from None
        out = np.empty(len(cells), dtype=object)
        out[:] = cells
        return out


class _Array:
    """An .npy file read by offset (os.pread), never mapped: pages a process maps stay in
    its resident memory, so what training reads of a big table would pile up there."""

    def __init__(self, path: Path):
        with open(path, "rb") as f:
            version = np.lib.format.read_magic(f)
            read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
            self.shape, fortran, self.dtype = read(f)
            self.offset = f.tell()
        if fortran or len(self.shape) not in (1, 2):
            raise ValueError(f"{path.name} is not an array of rows")
        self.path, self.fd = path, os.open(path, os.O_RDONLY)
        self.row = self.dtype.itemsize * (self.shape[1] if len(self.shape) == 2 else 1)

    def __len__(self) -> int:
        return self.shape[0]

    def __del__(self):
        if getattr(self, "fd", None) is not None:
            os.close(self.fd)

    def read(self, first: int, stop: int) -> np.ndarray:
        """Rows first:stop."""
        count = max(0, min(stop, len(self)) - first)
        data = os.pread(self.fd, count * self.row, self.offset + first * self.row)
        if len(data) != count * self.row:
            raise SeqtoolError(f"{self.path}: a damaged table folder (the file ends early)")
        return np.frombuffer(data, self.dtype).reshape((count, *self.shape[1:])).copy()

    def blocks(self, size: int = 64 << 20) -> Iterator[tuple[int, np.ndarray]]:
        """(first row, rows) over the whole array, about `size` bytes at a time, read into
        one buffer: a block is valid until the next is read."""
        rows = max(1, size // self.row)
        buffer = bytearray(rows * self.row)
        for first in range(0, len(self), rows):
            count = min(rows, len(self) - first)
            nbytes = count * self.row
            if os.preadv(self.fd, [memoryview(buffer)[:nbytes]], self.offset + first * self.row) < nbytes:
                raise SeqtoolError(f"{self.path}: a damaged table folder (the file ends early)")
            values = np.frombuffer(buffer, self.dtype, nbytes // self.dtype.itemsize)
            yield first, values.reshape(count, *self.shape[1:])

    def take(self, index: np.ndarray) -> np.ndarray:
        """Rows `index` [B, W] (each line of it rows close together, as windows and streams
        are): one read per line."""
        lo, hi = index.min(axis=1), index.max(axis=1) + 1
        return np.stack([self.read(a, b)[i - a] for a, b, i in zip(lo.tolist(), hi.tolist(), index)])


class Folder:
    """A table folder, opened: nothing is read until used."""

    def __init__(self, path: str | Path):
        self.path, self.source = Path(path), str(path)
        try:
            meta = json.loads((self.path / "meta.json").read_text())
        except (OSError, ValueError):
            raise SeqtoolError(
                f"{path}: a folder, but not a seqtool table folder (no readable meta.json; make one with seqtool convert)"  # noqa: E501 (one more line puts Folder over test_shape's 150)
            ) from None
        if not isinstance(meta, dict) or meta.get("format") != FORMAT:
            raise SeqtoolError(f"{path}: meta.json is not a seqtool table folder's")
        if meta.get("version") not in (1, VERSION):
            raise SeqtoolError(
                f"{path}: table folder version {meta.get('version')!r}; this seqtool reads 1 to {VERSION}"
            )
        try:
            self._open(meta)
        except (OSError, ValueError, KeyError, IndexError, TypeError) as e:
            why = f"meta.json has no {e}" if isinstance(e, KeyError) else _first_line(e)
            raise SeqtoolError(f"{path}: a damaged table folder ({why})") from None

    def _open(self, meta: dict) -> None:
        """The arrays, each checked against meta.json and the others (ValueError if not)."""
        names = lambda key: [str(n) for n in meta[key]] if isinstance(meta[key], list) else None  # noqa: E731
        self.meta, self.x_names, self.y_names = meta, names("x_names"), names("y_names")
        rows = meta["rows"]
        if (
            not self.x_names
            or self.y_names is None
            or not isinstance(rows, int)
            or meta["t"] not in (None, "number", "integer", "date")
        ):
            raise ValueError("meta.json's x_names, y_names, rows or t")
        self.x = _Array(self.path / "x.npy")
        self.y = _Array(self.path / "y.npy") if self.y_names else None
        self.t, self.integer_t = (_Array(self.path / "t.npy") if meta["t"] else None), meta["t"] == "integer"
        self.others = _kept(meta, self.path, self.x_names + self.y_names)
        self.offsets, self.moments = np.load(self.path / "offsets.npy"), np.load(self.path / "moments.npy")
        ids = np.load(self.path / "series.npy", mmap_mode="r")
        self.lengths = np.diff(self.offsets) if self.offsets.ndim == 1 else np.zeros(0, np.int64)
        width = len(self.x_names) + len(self.y_names)
        checks = {
            "x.npy": self.x.shape == (rows, len(self.x_names)) and self.x.dtype == np.float64,
            "y.npy": self.y is None or (self.y.shape == (rows, len(self.y_names)) and self.y.dtype == np.float64),
            "t.npy": self.t is None
            or (self.t.shape == (rows,) and self.t.dtype.kind == ("M" if meta["t"] == "date" else "f")),
            "offsets.npy": self.offsets.ndim == 1
            and self.offsets.dtype.kind == "i"
            and len(self.offsets) >= 2
            and self.offsets[0] == 0
            and self.offsets[-1] == rows
            and (self.lengths > 0).all(),
            "series.npy": ids.shape == (len(self.lengths),) and ids.dtype.kind == "U",
            "moments.npy": self.moments.shape == (int((-(-self.lengths // BLOCK)).sum()), width, 4),
        }
        bad = [name for name, fine in checks.items() if not fine]
        if bad:
            raise ValueError(f"{', '.join(bad)} do not fit meta.json and each other")

    def check_columns(self, x: str | None, y: str | None) -> None:
        """--x and --y must name the columns the folder holds (or be left out; --y "": none)."""
        for flag, given, held in (("x", x, self.x_names), ("y", y, self.y_names)):
            named = None if given is None else [n.strip() for n in given.split(",") if n.strip()]
            if named is not None and named != held and not (flag == "y" and named == []):
                raise SeqtoolError(
                    f"{self.source}: holds {flag} columns {','.join(held) or '(none)'}; --{flag} {given} names others (convert the CSV again with --{flag} {given})"  # noqa: E501 (one more line puts Folder over test_shape's 150)
                )

    def table(self, series: np.ndarray | None = None, first: int = 0, stop: int | None = None) -> SeriesTable:
        """Series `series` (all by default), rows first:stop of each, read into memory."""
        series = np.arange(len(self.lengths)) if series is None else series
        ends = np.minimum(
            self.offsets[series + 1], self.offsets[series] + (stop if stop is not None else self.lengths.max())
        )
        begins = np.minimum(self.offsets[series] + first, ends)
        spans = list(zip(begins.tolist(), ends.tolist()))
        ids = np.load(self.path / "series.npy")[series]
        columns = {"series": np.repeat(ids, ends - begins).astype(object)}
        for name, array in (("t", self.t), ("x", self.x), ("y", self.y)):
            if array is None:
                continue
            values = np.concatenate([array.read(b, e) for b, e in spans]) if spans else array.read(0, 0)
            if name == "t":
                columns["t"] = _written_t(values, self.integer_t)
            else:
                columns.update({n: values[:, j] for j, n in enumerate(self.x_names if name == "x" else self.y_names)})
        columns = _with_kept(columns, self.meta, self.others, spans)
        return SeriesTable(columns, self.x_names, self.y_names, (ends - begins).astype(np.int64), self.source)

    def in_place(self, cfg) -> bool:
        """Whether `train` reads it in place: a next-step table, no gap (the moments count
        every cell), the series as they are (`reshapes`)."""
        return not self.y_names and not cfg.reshapes() and self.moments[..., 0].sum() == np.prod(self.x.shape)

    def moments_of(self, series: np.ndarray, stop: int | None = None) -> tuple[np.ndarray, ...]:
        """count, mean, std, largest magnitude of each input column over the rows of
        `series` (up to row `stop` of each), combined from the blocks (Chan et al.); a
        block that `stop` cuts is read."""
        each = -(-self.lengths // BLOCK)
        first = np.cumsum(each) - each
        take = np.concatenate(
            [np.arange(f, f + (n if stop is None else stop // BLOCK)) for f, n in zip(first[series], each[series])]
        )
        parts = [self.moments[take, : self.x.shape[1]]]
        if stop is not None and stop % BLOCK:
            for s in series.tolist():
                begin = self.offsets[s] + (stop // BLOCK) * BLOCK
                end = min(self.offsets[s] + stop, self.offsets[s + 1])
                if end > begin:
                    parts.append(_block_moments(self.x.read(begin, end), np.zeros(1, np.int64)))
        m = np.concatenate(parts)
        count, mean, std, big = (m[..., k] for k in range(4))
        n = count.sum(axis=0)
        total = (count * mean).sum(axis=0) / np.maximum(n, 1)
        scale = np.maximum(big.max(axis=0), np.finfo(float).tiny)  # squares of values up to 1e150 stay finite
        var = (count * ((std / scale) ** 2 + ((mean - total) / scale) ** 2)).sum(axis=0) / np.maximum(n, 1)
        return n, total, scale * np.sqrt(var), big.max(axis=0)

    def split(self, config) -> tuple[np.ndarray, np.ndarray, SeriesTable | None, int]:
        """The training rows (first row and length of each training series) and the
        validation table, as `examples.split` splits: whole series held out, or one series'
        tail. Validation keeps at most VAL_ROWS rows; one series' tail is read with
        LEAD_WINDOWS windows before it (the lead-in, not scored). Returns (starts, lengths,
        validation, rows of its lead-in)."""
        n = len(self.lengths)
        if config.val <= 0:
            return self.offsets[:-1], self.lengths, None, 0
        if n >= 2:
            held = held_out(n, config.val, config.seed)
            train = np.setdiff1d(np.arange(n), held)
            order = np.random.default_rng(config.seed).permutation(held)
            room = np.cumsum(self.lengths[order]) <= VAL_ROWS
            chosen = np.sort(order[: max(1, int(room.sum()))])
            return self.offsets[train], self.lengths[train], self.table(chosen, 0, VAL_ROWS), 0
        length = int(self.lengths[0])
        cut = tail_start(length, config.val, self.source)
        lead = min(cut, LEAD_WINDOWS * (config.window or 50))
        val = self.table(np.zeros(1, np.int64), cut - lead, min(length, cut + VAL_ROWS))
        return self.offsets[:1], np.array([cut]), val, lead

    def scaling(self, starts: np.ndarray, lengths: np.ndarray) -> Scaling:
        """The standardisation of the training rows, from the blocks' moments."""
        index = np.searchsorted(self.offsets, starts)
        stop = int(lengths[0]) if len(index) == 1 and lengths[0] < self.lengths[index[0]] else None
        _, mean, std, big = self.moments_of(index, stop)
        mean, std = spread(mean, std, big, self.x_names, self.source)
        return Scaling(mean, std, mean.copy(), std.copy())
