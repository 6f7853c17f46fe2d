"""Known inputs computed from time (`train --time-features`): a sine/cosine pair per cycle
of the calendar (dates) or per `--period` (a numeric `t`), fed beside the series at every
step and past its end, where they are known in advance. numpy only.

The input at step s of a next-step model carries the features of step s + 1, the step its
output forecasts (of step s for a mapping model). Cycles of dates, chosen from the median
spacing of the rows: hour of day (spacing up to 12 hours), day of week (up to 3.5 days),
day of year (under 28 days), else month of year; each `--period P` adds a cycle of P days.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from seqtool.data.dates import clock_of, dates_of, is_dates, lengthened, next_clock, split_dates
from seqtool.errors import SeqtoolError

DAY = np.timedelta64(1, "D")
NAMES = {
    ("days", 1.0): "hour of day",
    ("days", 7.0): "day of week",
    ("days", 365.25): "day of year",
    ("months", 12.0): "month",
}


@dataclass(frozen=True)
class TimeFeatures:
    """The time column and its cycles: (unit, period) with unit "days" or "months" for a
    column of dates, "t" for a numeric t."""

    column: str
    cycles: tuple[tuple[str, float], ...]

    @classmethod
    def choose(cls, table, periods: tuple[float, ...] = ()) -> TimeFeatures:
        """The features of a table: from `t`, or else its first column of dates."""
        column = "t" if "t" in table.columns else next((n for n in table.columns if is_dates(table.columns[n])), None)
        if column is None:
            raise SeqtoolError(
                f"{table.source}: --time-features needs a time column: 't', or a column of dates "
                f"(columns: {', '.join(table.columns)})"
            )
        if dates_of(table.columns[column]) is None:
            if not periods:
                raise SeqtoolError(
                    f"{table.source}: column {column!r} holds numbers, not dates: "
                    "name its cycles with --period P (12 for months in a year)"
                )
            return cls(column, tuple(("t", float(p)) for p in periods))
        days = _spacing_in_days(table, column)
        calendar = [
            c
            for c, keep in (
                (("days", 1.0), days <= 0.5),
                (("days", 7.0), days <= 3.5),
                (("days", 365.25), days < 28),
                (("months", 12.0), days >= 28),
            )
            if keep
        ]
        return cls(column, tuple(calendar + [("days", float(p)) for p in periods]))

    @property
    def width(self) -> int:
        return 2 * len(self.cycles)

    def describe(self) -> str:
        return ", ".join(NAMES.get(c, f"period {c[1]:g} {c[0]}") for c in self.cycles) + f" (from {self.column})"

    def to_dict(self) -> dict:
        return {"column": self.column, "cycles": [[unit, period] for unit, period in self.cycles]}

    @classmethod
    def from_dict(cls, d: dict | None) -> TimeFeatures | None:
        return None if d is None else cls(d["column"], tuple((u, float(p)) for u, p in d["cycles"]))

    def of(self, times: np.ndarray) -> np.ndarray:
        """Features [rows, width] of time values (numbers, or datetime64)."""
        out = []
        for unit, period in self.cycles:
            if unit == "t":
                phase = np.asarray(times, dtype=np.float64) / period
            elif unit == "months":
                months = times.astype("datetime64[M]").astype(np.int64)
                phase = (months % 12) / period
            else:
                phase = (times - np.datetime64("1970-01-01")) / DAY / period
            out += [np.sin(2 * np.pi * phase), np.cos(2 * np.pi * phase)]
        return np.stack(out, axis=1)

    def ahead(self, table, steps: np.ndarray, shift: int) -> np.ndarray:
        """The features of steps s + shift, s = 0 .. steps[i] - 1 of each series, end to end
        [sum(steps), width]: past a series' end, the time of its rows given there (`table.ahead`),
        then going on (`dates.lengthened`, `dates.next_clock`)."""
        series = table.split(table.columns[self.column])
        if table.ahead is not None:  # the rows given past the end
            series = [np.concatenate([p, g]) for p, g in zip(series, table.ahead[self.column])]
        wanted = [int(n) + shift for n in steps]
        if self.cycles[0][0] == "t":
            times = [lengthened(self.times(c), n) for c, n in zip(series, wanted)]
        else:
            times = self._dates(series, wanted)
        parts = [self.of(t[shift:n]) for t, n in zip(times, wanted)]
        return np.concatenate(parts) if parts else np.zeros((0, self.width))

    def _dates(self, series: list[np.ndarray], wanted: list[int]) -> list[np.ndarray]:
        """Each series' written clocks, cut or continued to `wanted` dates: the column parsed
        once, whole, so that a table of many short series reads fast."""
        split = split_dates(np.concatenate(series)) if series else (np.zeros(0, "datetime64[s]"), None)
        if split is None:
            self.times(np.concatenate(series))  # refused: numbers where dates are needed
        clock, offsets = split
        bounds = np.cumsum([len(c) for c in series])[:-1]
        out = []
        for c, o, n in zip(
            np.split(clock, bounds), np.split(offsets, bounds) if offsets is not None else [None] * len(series), wanted
        ):
            out.append(c[:n] if n <= len(c) else np.concatenate([c, next_clock(c, o, n - len(c))]))
        return out

    def times(self, column: np.ndarray) -> np.ndarray:
        """The time column as numbers, or as datetime64 when it holds dates (their written
        clock: a date's UTC offset does not move its hour of day)."""
        dates = clock_of(column)
        if (dates is None) != (self.cycles[0][0] == "t"):
            raise SeqtoolError(
                f"column {self.column!r}: the model's time features need "
                f"{'numbers' if self.cycles[0][0] == 't' else 'dates'} there"
            )
        return np.asarray(column, dtype=np.float64) if dates is None else dates


def _spacing_in_days(table, column: str) -> float:
    dates = clock_of(table.columns[column])
    steps = [np.diff(part) / DAY for part in table.split(dates) if len(part) > 1]
    return float(np.median(np.concatenate(steps))) if steps else 1.0
