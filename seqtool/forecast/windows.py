"""What a `--scale window` model reads before a forecast: the last `window` steps before
its origin (and the differencing's order before them), from a zero state, divided by
their own level, as it read each training window. Each origin's steps become a series of
their own (`pieces`), so the engines run them as any other table. It was trained on the
forecast from a window's last step only (its H-step head's), so it forecasts no further
(`check_reach`)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from seqtool.data.tables import SeriesTable, ranges
from seqtool.errors import SeqtoolError
from seqtool.limits import fits_in_memory


def reads_windows(m) -> bool:
    return m.scaling.scale == "window"


def check_reach(m, steps: int, what: str, fix: str) -> None:
    """Refuse, in one line, more free steps than a --scale window model forecasts from its
    window, saying which option asks for fewer (`fix`, {h}: the model's horizon)."""
    if reads_windows(m) and steps > m.horizon:
        raise SeqtoolError(
            f"{m.path} forecasts at most {m.horizon} step(s) from the window before them (--scale window, "
            f"trained with --horizon {m.horizon}), and {what} asks for {steps}: {fix.format(h=m.horizon)} "
            "(or train for more with train --horizon)"
        )


def first_read(m, origin: np.ndarray) -> np.ndarray:
    """The first step of its series a forecast from `origin` reads (0 near a series' start)."""
    return np.maximum(origin - m.scaling.window - m.scaling.diff.order, 0)


def pieces(table: SeriesTable, series: np.ndarray, first: np.ndarray, stop: np.ndarray) -> SeriesTable:
    """Steps first[p]..stop[p] - 1 of series series[p], for every p, each a series of its own
    (a piece that ends where its series does keeps the rows given after it: `ahead`)."""
    count = (stop - first).astype(np.int64)
    fits_in_memory(float(count.sum()) * (len(table.columns) + 4) * 8 * 3, f"{len(count):,} windows to forecast from")
    out = table.taken(ranges(table.offsets[series] + first, count), count)
    if table.ahead is None:
        return out
    ends = stop == table.lengths[series]
    ahead = {
        n: [rows[s] if e else rows[s][:0] for s, e in zip(series.tolist(), ends)] for n, rows in table.ahead.items()
    }
    return replace(out, ahead=ahead)


def unread(values: np.ndarray, skipped: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Forecasts [..., rows, F] of series of `lengths` rows, end to end, each preceded by
    `skipped` rows of none (NaN): those before the window a forecast read."""
    out = np.full(values.shape[:-2] + (int((skipped + lengths).sum()), values.shape[-1]), np.nan)
    out[..., ranges(np.cumsum(skipped + lengths) - lengths, lengths), :] = values
    return out
