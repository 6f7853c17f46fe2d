"""Tables through pyarrow: large CSVs parsed by its C++ reader, and Parquet in and out.

A cell becomes a Python string only when a column is used as text (`ArrowColumns`): the
columns used as numbers are parsed by arrow (fast_float, correctly rounded as Python's
`float()` is), so reading a million rows takes a fraction of a second. Whatever arrow does
not take (a value only Python's parser reads, an empty cell where a number must be) is
left to `tables.Table.numbers`, which names its row.
"""

from __future__ import annotations

from collections.abc import Iterator, MutableMapping
from typing import BinaryIO

import numpy as np

PARQUET_MAGIC = b"PAR1"
BATCH_ROWS = 1 << 20  # rows of a Parquet file converted at a time
NUMPY_TYPES = {"double": "f8", "float": "f4", "halffloat": "f2", "int64": "i8", "int32": "i4", "int16": "i2",
               "int8": "i1", "uint64": "u8", "uint32": "u4", "uint16": "u2", "uint8": "u1"}  # fmt: skip


class ArrowColumns(MutableMapping):
    """A table's columns as arrow arrays of text, each made a numpy array of str on first use."""

    def __init__(self, arrays: dict, rows: int):
        self.rows = rows
        self._arrow = dict(arrays)  # name -> pa.ChunkedArray of strings, or a numpy array already
        self._done: dict[str, np.ndarray] = {}

    def __getitem__(self, name: str) -> np.ndarray:
        if name not in self._done:
            column = self._arrow[name]
            self._done[name] = column if isinstance(column, np.ndarray) else _text(column)
        return self._done[name]

    def __setitem__(self, name: str, column: np.ndarray) -> None:
        self._arrow[name] = self._done[name] = column

    def __delitem__(self, name: str) -> None:
        del self._arrow[name]
        self._done.pop(name, None)

    def __contains__(self, name: object) -> bool:
        return name in self._arrow

    def __iter__(self) -> Iterator[str]:
        return iter(self._arrow)

    def __len__(self) -> int:
        return len(self._arrow)

    def numbers(self, name: str, missing_ok: bool) -> np.ndarray | None:
        """Column `name` as float64 parsed by arrow (an empty cell NaN where `missing_ok`);
        None where arrow cannot parse every cell (the caller's parser then names the row)."""
        column = self._arrow[name]
        if isinstance(column, np.ndarray):
            return None
        import pyarrow as pa
        import pyarrow.compute as pc

        if not pa.types.is_string(column.type) and not pa.types.is_large_string(column.type):
            return None
        lengths = pc.utf8_length(column)
        filled = _numpy(lengths) > 0  # (no pyarrow scalars here: making one imports pandas)
        if not filled.all():
            if not missing_ok:
                return None
            column = pc.filter(column, pc.cast(lengths, pa.bool_()))
        try:
            values = _numpy(pc.cast(column, pa.float64())).astype(np.float64, copy=False)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            return None
        if not _pythons_nan(column, values):
            return None
        if filled.all():
            return values
        out = np.full(len(filled), np.nan)
        out[filled] = values
        return out

    def integers(self, name: str) -> np.ndarray | None:
        """Column `name` as int64 where arrow reads every cell as an integer, else None."""
        column = self._arrow[name]
        if isinstance(column, np.ndarray):
            return None
        import pyarrow as pa
        import pyarrow.compute as pc

        try:
            return _numpy(pc.cast(column, pa.int64()))
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            return None


def _pythons_nan(column, values: np.ndarray) -> bool:
    """Whether every cell arrow read as NaN is one that Python's float reads so (arrow also
    takes `nan(123)`); only the NaN cells are looked at."""
    rows = np.flatnonzero(np.isnan(values))
    if not len(rows):
        return True
    for text in column.take(rows).to_pylist():
        try:
            float(text)
        except ValueError:
            return False
    return True


def _numpy(values) -> np.ndarray:
    """An arrow array of fixed-width numbers as numpy, a null NaN, read from its buffers
    (pyarrow's own `to_numpy` imports pandas: 0.3 s of every command's start)."""
    import pyarrow as pa

    values = values.combine_chunks() if isinstance(values, pa.ChunkedArray) else values
    dtype = np.dtype(NUMPY_TYPES[str(values.type)])
    stop = values.offset + len(values)
    validity, data = values.buffers()[:2]
    out = np.frombuffer(data, dtype=dtype, count=stop)[values.offset :].copy() if len(values) else np.empty(0, dtype)
    if values.null_count:
        valid = np.unpackbits(np.frombuffer(validity, np.uint8), bitorder="little")[values.offset : stop]
        out = out.astype(np.float64)
        out[valid == 0] = np.nan
    return out


def _text(column) -> np.ndarray:
    """Arrow strings as a numpy array of str; few distinct values (ids) made once each."""
    import pyarrow as pa
    import pyarrow.compute as pc

    column = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    codes = pc.dictionary_encode(column)
    if len(codes.dictionary) * 4 < len(column):
        text = np.array(codes.dictionary.to_pylist() + [""], dtype=object)
        return text[np.where(np.isnan(index := _numpy(codes.indices)), -1, index).astype(np.int64)]
    out = np.empty(len(column), dtype=object)
    out[:] = ["" if v is None else v for v in column.to_pylist()] if column.null_count else column.to_pylist()
    return out


def from_csv(data: bytes, header: list[str], delimiter: str) -> ArrowColumns | None:
    """A CSV without quotes, header given, parsed by arrow with every cell as text; None for
    anything arrow reads otherwise than the csv module would (a bad line, bytes that are not
    UTF-8): the csv module then reads it and names the line of any error."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.csv as pcsv

    start = 3 if data.startswith(b"\xef\xbb\xbf") else 0
    try:
        table = pcsv.read_csv(
            pa.BufferReader(pa.py_buffer(data)[start:]),
            read_options=pcsv.ReadOptions(skip_rows=1, column_names=header),
            parse_options=pcsv.ParseOptions(delimiter=delimiter, quote_char=False, ignore_empty_lines=True),
            convert_options=pcsv.ConvertOptions(
                column_types={n: pa.string() for n in header}, strings_can_be_null=False, check_utf8=True
            ),
        )
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return None
    if table.num_rows == 0:
        return None
    spaced = b" " in data  # one memchr; the csv module's skipinitialspace, where a cell may start with one
    arrays = {n: pc.utf8_ltrim(table[n], " ") if spaced else table[n] for n in header}
    return ArrowColumns(arrays, table.num_rows)


def is_parquet(data: bytes) -> bool:
    """A Parquet file begins and ends with its magic (a CSV whose first name starts PAR1 does not)."""
    return data.startswith(PARQUET_MAGIC) and data.endswith(PARQUET_MAGIC)


def from_parquet(data: bytes | BinaryIO) -> ArrowColumns:
    """A whole Parquet file (bytes or a seekable file) as columns."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    source = pa.BufferReader(data) if isinstance(data, bytes) else data
    return of_arrow(pq.read_table(source))


def parquet_batches(stream: BinaryIO) -> Iterator[ArrowColumns]:
    """A Parquet file BATCH_ROWS rows at a time, for a table bigger than memory."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    for batch in pq.ParquetFile(stream).iter_batches(batch_size=BATCH_ROWS):
        yield of_arrow(pa.Table.from_batches([batch]))


def of_arrow(table) -> ArrowColumns:
    """Typed arrow columns as a table's: floats and booleans as float64 (a null NaN), whole
    numbers as int64 (with a null, or beyond int64, as text and float64 on use), text as
    text (a null empty), dates and times as ISO text; the `series` id always as text. Other
    types are refused (ValueError, the caller's one line)."""
    import pyarrow as pa

    arrays: dict = {}
    names = [str(n).strip() for n in table.column_names]  # stripped, as a CSV's header
    twice = next((n for i, n in enumerate(names) if n in names[:i]), None)
    if twice is not None:
        raise ValueError(f"column name {twice!r} appears twice")
    for name, column in zip(names, table.columns):
        kind = column.type
        if pa.types.is_dictionary(kind):
            column, kind = column.cast(kind.value_type), kind.value_type
        whole = pa.types.is_integer(kind) and not (column.null_count or name == "series" or kind == pa.uint64())
        if whole:
            arrays[name] = _numpy(column).astype(np.int64)
        elif (pa.types.is_floating(kind) or pa.types.is_boolean(kind)) and name != "series":
            arrays[name] = _numpy(column.cast(pa.float64()))
        elif pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_boolean(kind):
            arrays[name] = column.cast(pa.string())
        elif pa.types.is_string(kind) or pa.types.is_large_string(kind):
            arrays[name] = column
        elif pa.types.is_null(kind):  # all empty (pandas' column of None)
            arrays[name] = np.full(table.num_rows, "", dtype=object)
        elif pa.types.is_timestamp(kind) or pa.types.is_date(kind):
            arrays[name] = _iso(column)
        else:
            raise ValueError(f"column {name!r} holds {kind}, not numbers, text or dates")
    return ArrowColumns(arrays, table.num_rows)


def _iso(column) -> np.ndarray:
    """Dates and times as ISO text, as precise as the values: a date alone where every time
    is midnight, seconds and their fraction where any has them; a time zone as its offset
    (a null empty)."""
    import pandas as pd

    values = pd.Series(column.to_pandas())
    if not isinstance(values.dtype, pd.DatetimeTZDtype):
        values = pd.to_datetime(values)
    seen = values.dropna()
    if (seen == seen.dt.normalize()).all() and not isinstance(values.dtype, pd.DatetimeTZDtype):
        return values.dt.strftime("%Y-%m-%d").fillna("").to_numpy(dtype=object)
    spec = "minutes"
    for part, finer in (("second", "seconds"), ("microsecond", "microseconds"), ("nanosecond", "nanoseconds")):
        if (getattr(seen.dt, part) != 0).any():
            spec = finer
    return values.map(lambda v: "" if v is pd.NaT or v != v else v.isoformat(timespec=spec)).to_numpy(dtype=object)


def write_parquet(columns: dict[str, np.ndarray], stream: BinaryIO) -> None:
    """Columns as a Parquet file: floats as double (NaN as null), integers as int64, text as string."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    arrays = {}
    for name, col in columns.items():
        if col.dtype.kind == "f":
            arrays[name] = pa.array(col, from_pandas=True)
        elif col.dtype.kind in "iub":
            arrays[name] = pa.array(col.astype(np.int64))
        else:
            arrays[name] = pa.array(col.astype(str).tolist() if col.dtype.kind != "O" else col, type=pa.string())
    pq.write_table(pa.table(arrays), stream)
