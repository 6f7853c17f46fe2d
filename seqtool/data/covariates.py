"""Covariates known in advance (`train --known COLS`): columns such as a price, a promotion
or a planned capacity, fed to the network at every step beside the series and never
forecast. Like time features, the input at step s carries the values of step s + 1, the
step its output forecasts, standardised by their training mean and spread. Their values
past a series' end are the table's own rows after its last value (`history`): rows whose
series columns are empty and whose known columns are given. numpy only.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, replace

import numpy as np

from seqtool.data.scaling import check_magnitude
from seqtool.data.tables import SeriesTable, Table, positions, ranges
from seqtool.errors import SeqtoolError

FAR = 10.0  # known values past the end this many spreads from their training mean are warned of


@dataclass(frozen=True)
class Covariates:
    """The known columns and the mean and spread that standardise each."""

    names: tuple[str, ...]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    horizon: int = 1  # steps ahead read at each step: a horizon model's (`train --horizon`)

    @classmethod
    def fit(cls, table: SeriesTable, names: tuple[str, ...], horizon: int = 1) -> Covariates:
        """The covariates `names` of a table read by `history` (their values all given)."""
        values = np.stack([_numbers(table.columns[n], n, table.source) for n in names], axis=1)
        std = np.where(values.std(axis=0) > 0, values.std(axis=0), 1.0)
        return cls(tuple(names), tuple(values.mean(axis=0).tolist()), tuple(std.tolist()), horizon)

    @property
    def width(self) -> int:
        return len(self.names) * self.horizon

    def to_dict(self) -> dict:
        d = {"columns": list(self.names), "mean": list(self.mean), "std": list(self.std)}
        return {**d, "horizon": self.horizon} if self.horizon > 1 else d

    @classmethod
    def from_dict(cls, d: dict | None) -> Covariates | None:
        if d is None:
            return None
        mean, std = tuple(float(v) for v in d["mean"]), tuple(float(v) for v in d["std"])
        return cls(tuple(d["columns"]), mean, std, int(d.get("horizon", 1)))

    def reads(self, steps: np.ndarray | int) -> np.ndarray | int:
        """The steps whose known values a free run of `steps` reads: a horizon-H model's
        blocks of H forecasts read H steps each (whole blocks)."""
        return self.horizon * -(-steps // self.horizon)

    def ahead(self, table: SeriesTable, steps: np.ndarray, shift: int) -> np.ndarray:
        """Standardised values of steps s + shift .. s + shift + horizon - 1 (step by step),
        s = 0 .. steps[i] - 1 of each series, end to end [sum(steps), width]: past a
        series' end from its given rows (`table.ahead`), NaN beyond them (`reach` refuses
        forecasts that would need them)."""
        rows = np.stack([_numbers(table.columns[n], n, table.source) for n in self.names], axis=1)
        k = len(self.names)
        out = np.full((int(np.sum(steps)), self.width), np.nan)
        starts = np.cumsum(steps) - steps
        given = self.given(table)
        for i, (begin, n) in enumerate(zip(table.offsets[:-1].tolist(), np.asarray(steps).tolist())):
            own = (np.concatenate([rows[begin : begin + table.lengths[i]], given[i]]) - self.mean) / self.std
            for j in range(self.horizon):
                take = min(n, max(len(own) - shift - j, 0))
                out[starts[i] : starts[i] + take, j * k : (j + 1) * k] = own[shift + j : shift + j + take]
        return out

    def given(self, table: SeriesTable) -> list[np.ndarray]:
        """Each series' known values in its rows past the end, [rows, K] each (none for a
        table without): the columns parsed once, whole."""
        if table.ahead is None:
            return [np.zeros((0, len(self.names)))] * len(table.lengths)
        counts = [len(a) for a in table.ahead[self.names[0]]]
        whole = [_numbers(np.concatenate(table.ahead[n]), n, table.source) for n in self.names]
        return np.split(np.stack(whole, axis=1), np.cumsum(counts)[:-1])


def given_rows(table: SeriesTable) -> np.ndarray:
    """Each series' rows with their known values given: its own and those after it (`ahead`)."""
    return table.lengths + (np.array([len(a) for a in table.ahead[table.x_names[0]]]) if table.ahead else 0)


def reach(covariates: Covariates | None, table: SeriesTable, total: np.ndarray, what: str) -> None:
    """Refuse, in one line, forecasts of `total` rows of each series beyond the rows its
    known columns are given for (none for a model without covariates)."""
    if covariates is None:
        return
    given = given_rows(table)
    needed = table.lengths + covariates.reads(np.maximum(total - table.lengths, 0))
    h = covariates.horizon
    short = np.flatnonzero(given < needed)
    if len(short):
        i = int(short[0])
        also = f" (a model of --horizon {h} reads them {h} steps at a time)" if h > 1 else ""
        raise SeqtoolError(
            f"{table.source}: {what} needs the known column(s) {', '.join(map(repr, covariates.names))} for "
            f"{int(needed[i] - table.lengths[i])} step(s) past the end of {table.named(i)}{also}, and they "
            f"are given for {int(given[i] - table.lengths[i])} (rows after its last value, its series columns empty, "
            "up to the first with a known cell empty)"
        )
    _far(covariates, table, total)


def _far(covariates: Covariates, table: SeriesTable, total: np.ndarray) -> None:
    """A warning where a forecast reads a known value FAR spreads or more from its training
    mean: the network never saw one like it."""
    used = [g[: max(int(n - m), 0)] for g, n, m in zip(covariates.given(table), total, table.lengths)]
    values = np.concatenate(used) if used else np.zeros((0, len(covariates.names)))
    z = np.abs(values - np.array(covariates.mean)) / np.array(covariates.std)
    if len(z) and z.max() >= FAR:
        r, j = np.unravel_index(int(np.argmax(z)), z.shape)
        warnings.warn(
            f"{table.source}: known column {covariates.names[j]!r} reaches {values[r, j]:g} past the end, "
            f"{z[r, j]:.3g} spreads from its training mean {covariates.mean[j]:g}: the forecasts there extrapolate",
            stacklevel=2,
        )


def history(table: SeriesTable, names: tuple[str, ...]) -> SeriesTable:
    """A table read with empty series cells allowed, cut to each series' history: the rows
    up to its last value. The rows after it, up to the first with a known cell empty, go to
    `ahead`, every column of them: a forecast's future as given (its known values, its `t`,
    its other cells). A known cell empty within the history, and a known value that is not
    finite or beyond 1e150, are refused in one line (an empty series cell there is a gap:
    `gaps.marked`)."""
    missing = [n for n in names if n not in table.columns]
    if missing:
        raise SeqtoolError(f"{table.source}: no known column {missing[0]!r} (columns: {', '.join(table.columns)})")
    both = [n for n in names if n in table.x_names + table.y_names]
    if both:
        raise SeqtoolError(
            f"{table.source}: --known {both[0]}: the model forecasts {both[0]!r}; a known column is an input "
            "given for every step, never a series the model forecasts"
        )
    known = np.stack([_numbers(table.columns[n], n, table.source) for n in names], axis=1)
    some = ~np.isnan(table.x).all(axis=1)  # a row with a value: the history goes on to it
    step = positions(table.lengths)
    last = np.full(len(table.lengths), -1)
    np.maximum.at(last, np.repeat(np.arange(len(table.lengths)), table.lengths), np.where(some, step, -1))
    length = last + 1
    if (length == 0).any():
        i = int(np.flatnonzero(length == 0)[0])
        raise SeqtoolError(f"{table.source}: {table.named(i)} has no value in {', '.join(table.x_names)}")
    inside = step < np.repeat(length, table.lengths)
    _refuse_empty(table, inside, names, known, "no value within the history: a known column needs one at every step")
    kept = ranges(table.offsets[:-1], length)
    given = []  # per series, its rows after the history up to the first with a known cell empty
    for begin, end in zip((table.offsets[:-1] + length).tolist(), table.offsets[1:].tolist()):
        empty = np.flatnonzero(np.isnan(known[begin:end]).any(axis=1))
        given.append(empty[0] if len(empty) else end - begin)
    after = ranges(table.offsets[:-1] + length, np.array(given, dtype=np.int64))
    ahead = {n: np.split(c[after], np.cumsum(given)[:-1]) for n, c in table.columns.items()}
    columns = {n: c[kept] for n, c in table.columns.items()}
    return replace(table, columns=columns, lengths=length.astype(np.int64), ahead=ahead)


def _refuse_empty(table: SeriesTable, where: np.ndarray, names, values: np.ndarray, what: str) -> None:
    bad = np.flatnonzero(where[:, None] & np.isnan(values))
    if len(bad):
        r, j = divmod(int(bad[0]), values.shape[1])
        raise SeqtoolError(f"{table.source}: row {r + 1}, column {list(names)[j]!r}: {what}")


def _numbers(column: np.ndarray, name: str, source: str) -> np.ndarray:
    """A known column as numbers, NaN where empty; inf or beyond 1e150 refused (as a series')."""
    values = Table({name: column}, source).numbers(name, missing_ok=True)
    check_magnitude(values, name, source)
    return values
