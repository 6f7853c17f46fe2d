"""`seqtool profile`: each series' own seasonal profile, as a column known in advance.

A network reads a window of recent steps; a series of many years holds more about its
season than any window shows. The profile at step t is the mean change x[r] - x[r-1] over
the steps r of the same phase (r = t modulo the season) in the series' past, divided by
its mean absolute change there: the season's shape, in units that make a series times
1000 the same series. Only steps at least `lag` before t are read, and only the series'
own values, so a forecast `lag` steps ahead (or fewer) from any origin reads no value
after the origin: the column can be given to `train --known` and read by backtests from
the table itself. `ahead` rows past each series' end carry it on for `rollout --horizon`.
The phase is a row's position in its series, so gaps must be empty cells, not missing rows.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from seqtool import outputs
from seqtool.data.reading import read_series
from seqtool.data.tables import TABLE_FORMATS, SeriesTable, extended, write_table
from seqtool.errors import SeqtoolError
from seqtool.limits import check_all, fits_in_memory

SUFFIX = "_profile"
HUGE = 2.0**960  # beyond this, a series' changes summed over a billion steps could overflow


def profile(
    data=None,
    *,
    season: int,
    lag: int,
    ahead: int | None = None,
    x: str | Sequence[str] | None = None,
    output: str | Path | None = None,
) -> SeriesTable:
    """`seqtool profile`: the table with a column `NAME_profile` beside each input column
    NAME (`seasonal_profile`) and `ahead` (default `lag`) rows past each series' end, where
    the inputs are empty, `t` goes on and the profile is given; written to `output` (a
    file, '-' for standard output; None: returned only)."""
    ahead = lag if ahead is None else ahead
    check_all(season=season, profile_lag=lag, profile_ahead=ahead)
    outputs.check([(output, TABLE_FORMATS, "table")], inputs=[data])
    table = read_series(data, x, [], missing_inputs=True)  # every other column is carried as it is
    names = [f"{name}{SUFFIX}" for name in table.x_names]
    taken = [n for n in names if n in table.columns]
    if taken:
        raise SeqtoolError(f"{table.source}: column {taken[0]!r} is there already: profile a table once")
    total = table.lengths + ahead
    width = sum(_cell_bytes(col) for col in table.columns.values()) + 8 * len(names)
    fits_in_memory(float(total.sum()) * width * 3, f"{int(total.sum()):,} rows")
    new = {}
    for j, name in enumerate(names):
        parts = [seasonal_profile(x_i, season, lag, int(n)) for x_i, n in zip(table.split(table.x[:, j]), total)]
        new[name] = np.concatenate(parts) if parts else np.zeros(0)
    result = extended(table, total, new)
    if output is not None:
        write_table(result, output)
    return result


def seasonal_profile(x: np.ndarray, season: int, lag: int, total: int) -> np.ndarray:
    """The profile [total] of one series `x` (NaN: a gap) at its steps 0..total-1: at step
    t, over the changes d[r] = x[r] - x[r-1] known at r <= min(t - lag, len(x) - 1), the
    mean of those with r = t (mod season) over the mean of all |d[r]|; 0 where there is
    no such change or every change is 0."""
    x = np.asarray(x, dtype=np.float64)
    top = np.nanmax(np.abs(x), initial=0.0)
    if top > HUGE:  # changes and their sums could overflow: scaled by a power of two, which is exact
        x = np.ldexp(x, -int(np.frexp(top)[1]))
    d = np.diff(x)  # d[r - 1] is the change into step r
    known = ~np.isnan(d)
    d0 = np.where(known, d, 0.0)
    spread = np.concatenate([[0.0], np.cumsum(np.abs(d0))])  # over changes into steps 1..r
    count = np.concatenate([[0], np.cumsum(known)])
    phase_sum, phase_count = np.zeros(len(d) + 1), np.zeros(len(d) + 1, dtype=np.int64)
    for p in range(min(season, len(d))):  # running sums over steps p + 1, p + 1 + season, ...
        phase_sum[p + 1 :: season] = np.cumsum(d0[p::season])
        phase_count[p + 1 :: season] = np.cumsum(known[p::season])
    t = np.arange(total)
    last = np.minimum(t - lag, len(d))  # the last step whose change may be read
    same = last - np.mod(last - t, season)  # the last such step of t's phase
    out = np.zeros(total)
    ok = (last >= 1) & (same >= 1)
    u, r = last[ok], same[ok]
    mean_abs = np.divide(spread[u], count[u], out=np.zeros(len(u)), where=count[u] > 0)
    mean_same = np.divide(phase_sum[r], phase_count[r], out=np.zeros(len(r)), where=phase_count[r] > 0)
    out[ok] = np.divide(mean_same, mean_abs, out=np.zeros(len(u)), where=mean_abs > 0)
    return out


def _cell_bytes(column: np.ndarray) -> int:
    """The bytes a cell of `column` takes once lengthened: text is padded to its longest cell."""
    if column.dtype.kind in "fiub":
        return 8
    if column.dtype.kind == "U":
        return column.dtype.itemsize
    return 4 * max((len(str(v)) for v in column.tolist()), default=1)
