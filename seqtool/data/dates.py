"""Columns of ISO dates: read as instants and as the clock they were written in, and
continued past their end by the table's own calendar, in the table's own format.

A date may carry a UTC offset (`2024-03-31T01:00+01:00`, `...Z`): its instant orders the
rows, its written clock (01:00) gives the calendar features, so an hour of day does not
shift at a daylight-saving change. A column that mixes dates with and without an offset is
refused. Past the end, dates whole months apart go on on the series' day of the month
(cut short by a month's end); dates evenly spaced, by that spacing; others by the
frequency pandas infers from the last dates (business days, weeks, ...), or where a gap
or a holiday hides it, by the calendar offset that explains most of their steps; else
the commonest spacing, else the last. pandas is imported only then.
"""

from __future__ import annotations

import re

import numpy as np

from seqtool.errors import SeqtoolError

OFFSET = re.compile(r"\s*(Z|[+-]\d\d(:?\d\d)?)$")
INFER_FROM = 50  # the last dates a frequency is inferred from (earlier ones may be irregular)
MOST = 0.75  # the share of those steps a calendar offset must explain where pandas finds none


def _offset(text: str) -> re.Match | None:
    """The UTC offset at the end of a date-time (not the day of a date: 2024-01-05)."""
    m = OFFSET.search(text)
    return m if m and m.start() >= 13 and text[10:11] in ("T", " ") else None


def split_dates(column: np.ndarray) -> tuple[np.ndarray, np.ndarray | None] | None:
    """A column of dates as its written clocks (datetime64) and each date's offset in
    minutes (None when no date has one); None when the column is not all dates."""
    if column.dtype.kind in "fiubM":
        return (column, None) if column.dtype.kind == "M" else None
    text = np.char.strip(np.asarray(column).astype(str))
    if not len(text) or not _iso_like(text).all():
        return None  # not YYYY-MM...: an id such as 0005 or 2020 is not a date
    maybe = (np.char.count(text, "+") > 0) | np.char.endswith(text, "Z") | (np.char.rfind(text, "-") > 7)
    suffixes = [_offset(s) for s in text.tolist()] if maybe.any() else [None] * len(text)
    has = np.array([m is not None for m in suffixes])
    clock_text = np.array([s[: m.start()] if m else s for s, m in zip(text.tolist(), suffixes)]) if has.any() else text
    try:
        clock = clock_text.astype("datetime64")
    except (ValueError, TypeError):
        return None
    if np.isnat(clock).any():
        return None
    if np.datetime_data(clock.dtype)[0] in ("Y", "M", "W"):  # 2010-01: a day, for arithmetic with days
        clock = clock.astype("datetime64[D]")
    if not has.any():
        return clock, None
    if not has.all():
        i, j = int(np.flatnonzero(has)[0]), int(np.flatnonzero(~has)[0])
        raise SeqtoolError(
            f"dates with and without a UTC offset (row {i + 1}: {str(text[i])!r}, row {j + 1}: "
            f"{str(text[j])!r}); write every date with its offset, or none"
        )
    return clock, np.array([_minutes(m.group(1)) for m in suffixes])


def _iso_like(text: np.ndarray) -> np.ndarray:
    return (np.char.str_len(text) >= 7) & (np.char.find(text, "-") == 4)


def not_a_date(column: np.ndarray) -> int | None:
    """The first row of a column that looks like ISO dates whose cell is not one (a month
    13, `2024-1-30`); None where the column does not look like dates at all."""
    text = np.char.strip(np.asarray(column).astype(str))
    if not len(text) or _iso_like(text).mean() < 0.5:
        return None
    for i, cell in enumerate(text.tolist()):
        m = _offset(cell)
        try:
            bad = np.isnat(np.datetime64(cell[: m.start()] if m else cell)) or not _iso_like(np.array([cell]))[0]
        except ValueError:
            bad = True
        if bad:
            return i
    return None


def _minutes(offset: str) -> int:
    if offset == "Z":
        return 0
    digits = offset[1:].replace(":", "").ljust(4, "0")
    return (1 if offset[0] == "+" else -1) * (int(digits[:2]) * 60 + int(digits[2:]))


def dates_of(column: np.ndarray) -> np.ndarray | None:
    """A column of ISO dates (or date-times) as the instants they name (datetime64, UTC for
    dates with an offset); None for numbers or other text."""
    split = split_dates(column)
    if split is None:
        return None
    clock, offsets = split
    return clock if offsets is None else clock - offsets.astype("timedelta64[m]")


def is_dates(column: np.ndarray) -> bool:
    """Whether a column holds dates; one that mixes dates with and without an offset is not
    (it is carried as text; only `t` is refused for it, by `tables.times_of`)."""
    try:
        return split_dates(column) is not None
    except SeqtoolError:
        return False


def clock_of(column: np.ndarray) -> np.ndarray | None:
    """A column of dates as written, without its offsets: the local clock that calendar
    features read. None for numbers or other text."""
    split = split_dates(column)
    return None if split is None else split[0]


def lengthened(column: np.ndarray, n: int) -> np.ndarray:
    """A time column of a series (numbers, or dates as text) cut or continued to n values:
    numbers by their last spacing (by 1 after a single one; integers stay integers), dates
    by their calendar (`continued`), written as the column is."""
    if n <= len(column):
        return column[:n]
    extra = np.arange(1, n - len(column) + 1)
    if column.dtype.kind not in "fi":
        return np.concatenate([np.asarray(column).astype(str).astype(object), continued(column, len(extra))])
    step = column[-1] - column[-2] if len(column) >= 2 else 1
    return np.concatenate([column, column[-1] + step * extra])


def continued(column: np.ndarray, extra: int) -> np.ndarray:
    """The `extra` dates after a column of dates (text), written as its last date is."""
    if extra <= 0:
        return np.zeros(0, dtype=object)
    clock, offsets = split_dates(column)
    more = next_clock(clock, offsets, extra)
    last = str(np.asarray(column)[-1]).strip()
    m = _offset(last) if offsets is not None else None
    body, suffix = (last[: m.start()], last[m.start() :]) if m else (last, "")
    unit = "ns" if len(body) > 26 else "us"
    more = np.asarray(more).astype(f"datetime64[{unit}]")
    after = np.concatenate([np.asarray(clock[-1:]).astype(more.dtype), more])
    if np.isnat(after).any() or (after[1:] <= after[:-1]).any() or _year(after[-1]) > 9999:
        raise SeqtoolError(
            f"the dates after {last} would run past 9999-12-31 (or, written to the nanosecond, past "
            "2262-04-11): ask for fewer steps past the end"
        )
    iso = np.datetime_as_string(more)  # YYYY-MM-DDTHH:MM:SS.fff...
    if len(body) <= 10:
        written = [s[: len(body)] for s in iso.tolist()]
    else:
        written = [s[:10] + body[10] + s[11 : len(body)] for s in iso.tolist()]
    return np.array([w + suffix for w in written], dtype=object)


def _year(date: np.datetime64) -> int:
    return int(np.asarray(date).astype("datetime64[Y]").astype(np.int64)) + 1970


def next_clock(clock: np.ndarray, offsets: np.ndarray | None, extra: int) -> np.ndarray:
    """The written clocks of the `extra` dates after a series' dates (datetime64; `offsets`
    in minutes, or None): by their calendar (`_after`); dates with offsets by their clock's
    frequency, else (hours across a daylight-saving change) as instants, with the last offset."""
    if offsets is None:
        return _after(clock, extra)
    more = _by_frequency(clock, extra)
    if more is None:
        more = _after(clock - offsets.astype("timedelta64[m]"), extra) + np.timedelta64(int(offsets[-1]), "m")
    return more


def _by_frequency(clock: np.ndarray, extra: int) -> np.ndarray | None:
    """The next `extra` dates by the frequency pandas infers from the last dates, or by the
    calendar offset, else the commonest spacing, that explains most of their steps (a
    month missing, a holiday); None where none does."""
    recent = clock[-INFER_FROM:]
    if len(recent) < 3:
        return None
    import pandas as pd  # lazily: only a calendar that goes on needs it

    index = pd.DatetimeIndex(recent)
    freq = pd.DatetimeIndex(recent, freq="infer").freq or _most_steps(index, calendar=True) or _most_steps(index)
    if freq is None:
        return None
    return pd.date_range(pd.Timestamp(clock[-1]) + freq, periods=extra, freq=freq).to_numpy()  # the next, on it


def _most_steps(index, calendar: bool = False):
    """The calendar offset (with `calendar`; else the commonest spacing) that takes the most
    of these dates to the next, if it takes at least MOST of them."""
    import pandas as pd

    o = pd.offsets
    if calendar:
        candidates = [
            o.BusinessDay(), o.MonthEnd(), o.MonthBegin(), *(o.Week(weekday=d) for d in range(7)),
            *(q(startingMonth=m) for q in (o.QuarterEnd, o.QuarterBegin) for m in (1, 2, 3)),
            o.YearEnd(), o.YearBegin(),
        ]  # fmt: skip
    else:
        spacings = pd.Series(index[1:] - index[:-1]).mode()
        candidates = [pd.tseries.frequencies.to_offset(t) for t in spacings if t > pd.Timedelta(0)]
    best, share = None, MOST
    for offset in candidates:
        hit = float(np.mean(np.asarray(index[:-1] + offset == index[1:])))
        if hit > share or (best is None and hit >= share):
            best, share = offset, hit
    return best


def _after(clock: np.ndarray, extra: int) -> np.ndarray:
    """The next `extra` dates of a calendar: by whole months on the series' day of the
    month where its last dates are whole months apart (month-ends, quarters and years
    too), else by their spacing where it is even, else by `_by_frequency`, else by the last
    spacing (a day after one date)."""
    steps = np.arange(1, extra + 1)
    if len(clock) < 2:
        return clock[-1] + np.timedelta64(1, "D") * steps
    monthly = _monthly(clock[-12:])
    if monthly is not None:
        months, into = monthly
        last = clock[-1]
        starts = last.astype("datetime64[M]") + months * steps
        last_day = (starts + 1).astype(last.dtype) - np.timedelta64(1, "D")
        return np.minimum(starts.astype(last.dtype) + into, last_day + into % np.timedelta64(1, "D"))
    recent = np.diff(clock[-INFER_FROM:])
    if len(recent) >= 2 and (recent == recent[-1]).all():  # days, hours, ...: no calendar needed
        return clock[-1] + recent[-1] * steps
    more = _by_frequency(clock, extra)
    if more is not None:
        return more
    last, before = clock[-1], clock[-2]
    return last + (last - before) * steps


def _monthly(recent: np.ndarray):
    """For dates whole months apart at one time of day: the months between them and how far
    into its month the series' dates fall (the latest day seen: a series of the 30th that
    met February's 29th goes on on the 30th); else None."""
    months = recent.astype("datetime64[M]")
    gaps = np.diff(months.astype(np.int64))
    into = recent - months.astype(recent.dtype)
    clock = into % np.timedelta64(1, "D")
    if len(gaps) == 0 or gaps[0] < 1 or (gaps != gaps[0]).any() or (clock != clock[-1]).any():
        return None
    days = into - clock
    late = days.max()
    if (days != late).any() and not all(_month_end(d) for d, n in zip(recent, days) if n != late):
        return None  # not the same day, nor that day cut short by a month's end
    return int(gaps[0]), late + clock[-1]


def _month_end(date) -> bool:
    day = date.astype("datetime64[D]")
    return (day + 1).astype("datetime64[M]") != day.astype("datetime64[M]")
