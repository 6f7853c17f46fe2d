"""Gaps (`train --gaps fill`, the default): empty input cells within a series. The network
reads the last value before a gap (`tables.carried`) and, beside it, a mask that says the
value was missing; no loss and no metric scores a missing step. Carrying forward reads
nothing after the gap, so a backtest's forecast from an origin never sees a later value
(an interpolation would). A gap at a series' start reads the first value after it, so
nothing is learned or scored from the steps before that one (`SeriesTable.lead`). numpy
only.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from seqtool.data.tables import SeriesTable
from seqtool.errors import SeqtoolError


def marked(table: SeriesTable, mode: str = "fill", rows: np.ndarray | None = None) -> SeriesTable:
    """The table with its empty input cells as gaps (`SeriesTable.missing`; None where there
    are none). Refused in one line: with `refuse`, any empty cell; a series with no value;
    a gap longer than half its series. `rows`: each row's index in the table as read (for
    the messages), where this one was cut from it."""
    empty = np.isnan(np.stack([table.columns[n] for n in table.x_names], axis=1))
    if not empty.any():
        return replace(table, missing=None)
    rows = np.arange(len(empty)) if rows is None else rows
    if mode == "refuse":
        row, col = divmod(int(np.flatnonzero(empty)[0]), empty.shape[1])
        raise SeqtoolError(
            f"{table.source}: row {rows[row] + 1}, column {table.x_names[col]!r}: an empty cell is not a number "
            "(--gaps fill fills gaps)"
        )
    _refuse_long(table, empty, rows)
    return replace(table, missing=empty)


def _refuse_long(table: SeriesTable, empty: np.ndarray, rows: np.ndarray) -> None:
    """Refuse a run of empty cells in one column, within one series, longer than half of it."""
    first, last = np.zeros((2, len(empty)), dtype=bool)
    first[table.offsets[:-1]] = last[table.offsets[1:] - 1] = True
    owner = np.repeat(np.arange(len(table.lengths)), table.lengths)
    for j, name in enumerate(table.x_names):
        e = empty[:, j]
        begin = np.flatnonzero(e & (first | ~np.r_[False, e[:-1]]))
        end = np.flatnonzero(e & (last | ~np.r_[e[1:], False])) + 1
        long = np.flatnonzero(2 * (end - begin) > table.lengths[owner[begin]])
        if len(long):
            b, stop = int(begin[long[0]]), int(end[long[0]])
            i = int(owner[b])
            where = f"{table.source}: {table.named(i)}, column {name!r}"
            if stop - b == table.lengths[i]:
                raise SeqtoolError(f"{where}: no value (rows {rows[b] + 1} to {rows[stop - 1] + 1} are empty)")
            raise SeqtoolError(
                f"{where}: a gap of {stop - b} steps (rows {rows[b] + 1} to {rows[stop - 1] + 1}) in a series of "
                f"{int(table.lengths[i])}: more than half of it is no series to learn from or forecast; a gap may "
                "be at most half its series"
            )


def count(table: SeriesTable) -> int:
    """The table's gaps: empty input cells."""
    return 0 if table.missing is None else int(table.missing.sum())


def mask(table: SeriesTable, steps: np.ndarray, coefficients: np.ndarray) -> np.ndarray:
    """The gap mask the network reads [sum(steps), F] at the first steps[i] of its rows of
    each series (after the differencing's first `order` = len(coefficients) - 1): 1 where
    its input read a gap (with differencing, where any value it was made of did), 0 past
    the table's rows (a forecast's own values, never a gap)."""
    order, width = len(coefficients) - 1, len(table.x_names)
    gap = np.zeros((int(table.lengths.sum()), width), dtype=bool) if table.missing is None else table.missing
    used = [k for k in range(order + 1) if k == 0 or coefficients[k] != 0]
    out = np.zeros((int(np.sum(steps)), width), dtype=np.float64)
    starts = np.cumsum(steps) - steps
    for i, (begin, n) in enumerate(zip(table.offsets[:-1].tolist(), np.asarray(steps).tolist())):
        own = gap[begin : begin + int(table.lengths[i])]
        take = min(n, max(len(own) - order, 0))
        hit = np.zeros((take, width), dtype=bool)
        for k in used:
            hit |= own[order - k : order - k + take]
        out[starts[i] : starts[i] + take] = hit
    return out
