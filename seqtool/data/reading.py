"""Reading any source as a table: a CSV or npz file, standard input, a table folder, or a
table already in memory; as series (`read_series`), checked by `tables.series_of`; and as
a forecast's history (`read_history`): gaps marked, known columns' future set apart."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from seqtool.data.covariates import history
from seqtool.data.folders import Folder, is_folder
from seqtool.data.gaps import marked
from seqtool.data.tables import SeriesTable, Table, ranges, read_table, series_of


def as_table(source: str | Path | Table | SeriesTable | None) -> Table:
    """A table from a path, stdin (None or '-'), a table folder (`seqtool convert`, read
    whole), or a table already in memory."""
    if isinstance(source, Table):
        return source
    if is_folder(source):
        source = Folder(source).table()
    if isinstance(source, SeriesTable):
        roles = {"x": source.x_names, "y": source.y_names}
        return Table(dict(source.columns), source.source, roles)
    return read_table(source)


def read_series(
    source: str | Path | Table | SeriesTable | None = None,
    x: str | Sequence[str] | None = None,
    y: str | Sequence[str] | None = None,
    missing_inputs: bool = False,
) -> SeriesTable:
    """Read a table (or take one) and check it as series, with inputs `x` and targets `y`.

    `x`/`y` name the columns (a list or "a,b"); by default `x` or `x0, x1, ...` are the
    inputs and `y` or `y0, y1, ...` the targets. No targets means next-step forecasting.
    `missing_inputs` accepts empty input cells, as in a rollout past the end of the data.
    The checks are `tables.series_of`'s.
    """
    return series_of(as_table(source), x, y, missing_inputs)


def read_history(
    source: str | Path | Table | SeriesTable | None,
    x: str | Sequence[str] | None = None,
    y: str | Sequence[str] | None = None,
    known: Sequence[str] = (),
    gaps: str = "fill",
) -> SeriesTable:
    """A table as training and forecasting take it: each series up to its last value, with
    `known` columns the rows after it as its given future (`covariates.history`), and its
    empty input cells before it as gaps (`gaps.marked`: filled, or refused with "refuse")."""
    table = read_series(source, x, y, missing_inputs=True)
    if not known:
        return marked(table, gaps)
    cut = history(table, tuple(known))
    return marked(cut, gaps, rows=ranges(table.offsets[:-1], cut.lengths))  # rows as read, for messages
