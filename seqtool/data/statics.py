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

from dataclasses import dataclass

import numpy as np

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
    def fit(cls, table: SeriesTable, names: tuple[str, ...]) -> Statics:
        """The attributes `names` of a table's series: numbers where every cell is one."""
        columns = []
        for name in names:
            values = values_of(table, name)
            numbers = _as_numbers(values)
            if numbers is not None:
                check_magnitude(numbers, name, table.source)
                std = float(numbers.std())
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

    def per_series(self, table: SeriesTable) -> np.ndarray:
        """What the network reads of each series' attributes [N, width]."""
        parts = [c.encoded(_typed(values_of(table, c.name), c, table.source)) for c in self.columns]
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
    column = np.asarray(table.columns[name]).astype(str)
    first = column[table.offsets[:-1]]
    changed = np.flatnonzero(column != np.repeat(first, table.lengths))
    if len(changed):
        r = int(changed[0])
        i = int(np.searchsorted(table.offsets, r, side="right") - 1)
        raise SeqtoolError(
            f"{table.source}: row {r + 1}, column {name!r}: {str(column[r])!r} where series {table.ids[i]!r} has "
            f"{str(first[i])!r}; a static column holds one value per series"
        )
    empty = np.flatnonzero(np.char.strip(first) == "")
    if len(empty):
        raise SeqtoolError(f"{table.source}: column {name!r}: series {table.ids[int(empty[0])]!r} has no value")
    return np.char.strip(first)


def _as_numbers(values: np.ndarray) -> np.ndarray | None:
    """The values as finite numbers, or None where one is not."""
    try:
        numbers = values.astype(np.float64)
    except ValueError:
        return None
    return numbers if np.isfinite(numbers).all() else None


def _typed(values: np.ndarray, column: Static, source: str) -> np.ndarray:
    """A model's numeric attribute as numbers (one line where a series' is not one)."""
    if column.categories:
        return values
    numbers = _as_numbers(values)
    if numbers is None:
        bad = next(v for v in values.tolist() if _as_numbers(np.array([v])) is None)
        raise SeqtoolError(f"{source}: column {column.name!r}: {bad!r} is not a number; the model read numbers there")
    check_magnitude(numbers, column.name, source)
    return numbers
