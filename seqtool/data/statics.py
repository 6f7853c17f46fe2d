"""Per-series attributes (`train --static COLS`): columns constant within each series, such
as a product group, a region or a store's size, fed to the network at every step beside
the series.

A column whose cells are all numbers is standardised by its mean and spread over the
training series. Any other is a category: one input per category seen in training, 1 for
the series' own (so the network's input weights hold an embedding of each category). A
category not seen in training reads the categories' shares among the training series:
the mean of their embeddings, one shared entry for every unseen category. numpy only.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

from seqtool.data.covariates import FAR  # far from training: warned of as a known value is
from seqtool.data.scaling import check_magnitude
from seqtool.data.tables import SeriesTable
from seqtool.errors import SeqtoolError

MAX_CATEGORIES = 1000  # of one column: each is an input at every step


@dataclass(frozen=True)
class Static:
    """One attribute: a number (mean, std) or a category (`categories`, their `shares`)."""

    name: str
    mean: float = 0.0
    std: float = 1.0
    categories: tuple[str, ...] = ()
    shares: tuple[float, ...] = ()

    @property
    def width(self) -> int:
        return len(self.categories) or 1

    def encoded(self, values: np.ndarray) -> np.ndarray:
        """Each series' value [N] as the network reads it [N, width]."""
        if not self.categories:
            return ((values.astype(np.float64) - self.mean) / self.std)[:, None]
        out = np.tile(np.array(self.shares), (len(values), 1))  # unseen: the shared entry
        index = {c: k for k, c in enumerate(self.categories)}
        for i, v in enumerate(values.tolist()):
            if v in index:
                out[i] = 0.0
                out[i, index[v]] = 1.0
        return out

    def to_dict(self) -> dict:
        if self.categories:
            return {"column": self.name, "categories": list(self.categories), "shares": list(self.shares)}
        return {"column": self.name, "mean": self.mean, "std": self.std}


@dataclass(frozen=True)
class Statics:
    """The attributes a model reads, in order."""

    columns: tuple[Static, ...]

    @classmethod
    def fit(cls, table: SeriesTable, names: tuple[str, ...], training: np.ndarray | None = None) -> Statics:
        """The attributes `names` of a table's series: numbers where every cell is one; the
        statistics and the categories seen are those of the `training` series (all by
        default), so that a category only a validation series has reads the unseen entry."""
        columns = []
        for name in names:
            values = values_of(table, name)
            numbers = _as_numbers(values, name, table.source)
            values = values if training is None else values[training]
            numbers = numbers if numbers is None or training is None else numbers[training]
            if numbers is not None:
                check_magnitude(numbers, name, table.source)
                std = float(numbers.std())
                if std == 0 and len(numbers) > 1:
                    warnings.warn(
                        f"{table.source}: --static {name}: {numbers[0]:g} for every training series, so the "
                        "network learns nothing from it (and a series with another value reads an untrained input)",
                        stacklevel=2,
                    )
                columns.append(Static(name, float(numbers.mean()), std if std > 0 else 1.0))
                continue
            kinds, counts = np.unique(values, return_counts=True)
            if len(kinds) > MAX_CATEGORIES:
                raise SeqtoolError(
                    f"{table.source}: --static {name}: {len(kinds)} categories; at most {MAX_CATEGORIES} (each is "
                    "an input at every step): give a coarser column"
                )
            shares = tuple((counts / counts.sum()).tolist())
            columns.append(Static(name, categories=tuple(kinds.tolist()), shares=shares))
        return cls(tuple(columns))

    @property
    def width(self) -> int:
        return sum(c.width for c in self.columns)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns)

    def per_series(self, table: SeriesTable) -> np.ndarray:
        """What the network reads of each series' attributes [N, width]; a warning names a
        category the model never saw (it reads the shared entry)."""
        parts = []
        for c in self.columns:
            values = _typed(values_of(table, c.name), c, table.source)
            unseen = [v for v in values.tolist() if c.categories and v not in c.categories]
            if unseen:
                warnings.warn(
                    f"{table.source}: column {c.name!r}: {len(unseen)} series of a category the model never saw "
                    f"(e.g. {unseen[0]!r}) read the categories' mean",
                    stacklevel=2,
                )
            encoded = c.encoded(values)
            far = np.flatnonzero(np.abs(encoded[:, 0]) >= FAR) if not c.categories else []
            if len(far):
                i = int(far[0])
                warnings.warn(
                    f"{table.source}: column {c.name!r}: {table.named(i)} has {values[i]:g}, "
                    f"{abs(encoded[i, 0]):.3g} spreads from the training series' mean {c.mean:g}: its forecasts "
                    "extrapolate",
                    stacklevel=2,
                )
            parts.append(encoded)
        return np.concatenate(parts, axis=1)

    def ahead(self, table: SeriesTable, steps: np.ndarray, shift: int = 0) -> np.ndarray:
        """The attributes at each of the first steps[i] rows of each series, end to end
        [sum(steps), width]: the same at every step, past the end too (`shift` unused)."""
        return np.repeat(self.per_series(table), np.asarray(steps, dtype=np.int64), axis=0)

    def to_dict(self) -> list[dict]:
        return [c.to_dict() for c in self.columns]

    @classmethod
    def from_dict(cls, d: list | None) -> Statics | None:
        if d is None:
            return None
        return cls(
            tuple(
                Static(c["column"], categories=tuple(c["categories"]), shares=tuple(float(v) for v in c["shares"]))
                if "categories" in c
                else Static(c["column"], float(c["mean"]), float(c["std"]))
                for c in d
            )
        )


def values_of(table: SeriesTable, name: str) -> np.ndarray:
    """Each series' value of attribute `name` [N], as written: one line where a series has
    none, or where it changes within a series."""
    if name not in table.columns:
        raise SeqtoolError(f"{table.source}: no static column {name!r} (columns: {', '.join(table.columns)})")
    if name in table.x_names + table.y_names or name in ("series", "t"):
        raise SeqtoolError(f"{table.source}: --static {name}: {name!r} is a series column, not an attribute of one")
    column = np.char.strip(np.asarray(table.columns[name]).astype(str))
    column = np.where(np.char.lower(column) == "nan", "", column)  # an npz's empty cell
    owner = np.repeat(np.arange(len(table.lengths)), table.lengths)
    empty = np.flatnonzero(column == "")
    if len(empty):
        r = int(empty[0])
        raise SeqtoolError(
            f"{table.source}: row {r + 1}, column {name!r}: empty; a static column gives "
            f"{table.named(owner[r])} its value on every row"
        )
    first = column[table.offsets[:-1]]
    numbers = _as_numbers(column, name, table.source, finite=False)  # '11' and '11.0' are one number
    read = column if numbers is None else numbers
    changed = np.flatnonzero(read != read[table.offsets[:-1]][owner])
    if len(changed):
        r = int(changed[0])
        raise SeqtoolError(
            f"{table.source}: row {r + 1}, column {name!r}: {str(column[r])!r} where {table.named(owner[r])} "
            f"has {str(first[owner[r]])!r}; a static column holds one value per series"
        )
    return first


def _as_numbers(values: np.ndarray, name: str, source: str, finite: bool = True) -> np.ndarray | None:
    """The values as numbers, or None where one is not a number; with `finite`, inf is
    refused in one line (it is a number, not a category)."""
    try:
        numbers = values.astype(np.float64)
    except ValueError:
        return None
    if finite and not np.isfinite(numbers).all():
        bad = values[~np.isfinite(numbers)][0]
        raise SeqtoolError(f"{source}: column {name!r}: {str(bad)!r} is not a finite number")
    return numbers


def _typed(values: np.ndarray, column: Static, source: str) -> np.ndarray:
    """A model's numeric attribute as numbers (one line where a series' is not one)."""
    if column.categories:
        return values
    numbers = _as_numbers(values, column.name, source)
    if numbers is None:
        bad = next(v for v in values.tolist() if _as_numbers(np.array([v]), column.name, source) is None)
        raise SeqtoolError(f"{source}: column {column.name!r}: {bad!r} is not a number; the model read numbers there")
    check_magnitude(numbers, column.name, source)
    return numbers
