"""A trained model ready to forecast (`Forecaster`): its network, the transform between the
table's scale and the network's (`Scaling`), its columns, season and time features, and what
it can give beside point forecasts (`intervals`, `samples`)."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import torch

from seqtool.data.covariates import Covariates
from seqtool.data.examples import MAPPING, NEXT_STEP, known_inputs, predicted
from seqtool.data.gaps import count as gap_count
from seqtool.data.reading import as_table, read_history
from seqtool.data.scaling import Scaling, check_magnitude
from seqtool.data.statics import Statics
from seqtool.data.tables import SeriesTable, numbered, positions
from seqtool.data.timefeatures import TimeFeatures
from seqtool.errors import RunFailed, SeqtoolError
from seqtool.forecast.conformal import Calibration
from seqtool.limits import check_all, check_season
from seqtool.model.checkpoint import build_model, load_checkpoint
from seqtool.model.network import over_series
from seqtool.threads import use as use_threads
from seqtool.threads import work


class Forecaster:
    """A checkpoint ready to run: network, transform (differencing, standardisation),
    column names, season."""

    def __init__(self, path: str | Path, ckpt: dict | None = None):
        ckpt = load_checkpoint(path) if ckpt is None else ckpt  # `ckpt`: the file at `path`, loaded already
        self._setup(build_model(ckpt, name=str(path)), Scaling.from_dict(ckpt["norm"]), ckpt["data"], str(path))
        self.calibration = Calibration.from_dict(ckpt.get("calibration"))

    @classmethod
    def of(cls, net, scaling: Scaling, info: dict, name: str = "the model") -> Forecaster:
        """A network in memory (training's own, at the end of a run) as a Forecaster."""
        m = cls.__new__(cls)
        if hasattr(net.head, "lags"):  # as `build_model` gives a loaded one (`MembersHead.point`)
            net.head.lags = scaling.diff.lags
        m._setup(net.eval(), scaling, info, name)
        m.calibration = None
        return m

    def _setup(self, net, scaling: Scaling, info: dict, path: str) -> None:
        self.path, self.net, self.scaling = path, net, scaling
        self.x_names, self.y_names = list(info["x_names"]), list(info["y_names"])
        self.task, self.season = info["task"], info.get("season")
        self.time = TimeFeatures.from_dict(info.get("time"))
        self.covariates = Covariates.from_dict(info.get("known"))
        self.statics, self.gaps = Statics.from_dict(info.get("static")), bool(info.get("gaps", False))
        beside = (self.time, self.covariates, self.statics)
        self.reads_known = any(f is not None for f in beside) or self.gaps  # inputs beside the series
        self.yhat_names = numbered("yhat", len(predicted(self.task, self.x_names, self.y_names)))

    @property
    def intervals(self) -> bool:
        """Whether the model gives intervals: a distribution head (`--loss gaussian|studentt`)."""
        return self.net.head.probabilistic

    def interval_kind(self, intervals: str | None) -> str | None:
        """Where intervals come from: `intervals` ("model": the distribution head's;
        "conformal": the calibration's; "none"), by default the calibration's where there
        is one, else the head's, else none; asking for what the model lacks is refused."""
        if intervals == "conformal" and self.calibration is None:
            raise SeqtoolError(
                f"{self.path} is not calibrated: --intervals conformal needs "
                f"seqtool calibrate {self.path} DATA --horizon H -o CALIBRATED.pt"
            )
        if intervals == "model" and not self.intervals:
            raise SeqtoolError(
                f"{self.path} forecasts points: --intervals model needs a model of a distribution "
                "(train --loss gaussian or studentt); --intervals conformal, a calibrated one"
            )
        if intervals not in (None, "model", "conformal", "none"):
            raise SeqtoolError(f"--intervals is model, conformal or none, got {intervals!r}")
        if intervals is None:
            return "conformal" if self.calibration is not None else "model" if self.intervals else None
        return None if intervals == "none" else intervals

    @property
    def samples(self) -> bool:
        """Whether the model draws sample paths: a distribution head, as for intervals."""
        return self.net.head.probabilistic

    @property
    def horizon(self) -> int:
        """Steps the head forecasts from each position (`train --horizon`)."""
        return self.net.config.horizon

    def use_threads(self, threads: int | None, batch: int) -> None:
        """torch's threads for running `batch` series side by side (threads.py)."""
        use_threads(threads, work(self.net.config, batch))

    def read(self, data) -> SeriesTable:
        """Read a table with this model's columns (a table without them is refused), its
        gaps marked (`gaps`), its known columns' future set apart (`covariates.history`)."""
        table = as_table(data)
        _check_columns(self, table)
        has_truth = self.task == MAPPING and all(n in table.columns for n in self.y_names)
        known = self.covariates.names if self.covariates is not None else ()
        series = read_history(table, self.x_names, self.y_names if has_truth else [], known)
        if series.missing is not None and not self.gaps:
            warnings.warn(
                f"{series.source}: {gap_count(series)} empty input cell(s) read as the value before each; "
                f"{self.path} was trained without gaps, so it takes them for values (train on a table with "
                "gaps for a model that knows them)",
                stacklevel=2,
            )
        for name in series.x_names + series.y_names:  # the truth the metrics square
            check_magnitude(series.columns[name], name, series.source)
        _check_length(self, series)
        return series

    def view(self, table: SeriesTable):
        """What the network reads: the inputs differenced and standardised, and the time
        features ([rows', n_in] float32, each series without its first `order` steps), and
        the series' lengths."""
        x, order = table.x, self.scaling.diff.order
        if self.scaling.diff.active:
            step = positions(table.lengths)
            x = self.scaling.diff.difference(x, table.source)[step[order:] >= order]
        if self.reads_known:
            x = np.concatenate([x, self.known(table, table.lengths)], axis=1)
        z = self.scaling.inputs(x, self.x_names, table.source)
        return torch.from_numpy(z), table.lengths - order

    def known(self, table: SeriesTable, steps: np.ndarray) -> np.ndarray:
        """The known inputs (`examples.known_inputs`) the network reads at its first steps[i]
        - order rows of each series (past the end of the data where steps[i] is longer)."""
        order = self.scaling.diff.order
        diff = self.scaling.diff
        return known_inputs(table, steps - order, self.task, diff, self.time, self.covariates, self.gaps, self.statics)

    def fed_known(self, known):
        """Known inputs [rows, K] for steps that read the network's own forecasts: the gap
        mask's columns (the last F) 0, as a forecast is never a gap."""
        if self.gaps and known is not None:
            known = torch.cat([known[:, : -len(self.x_names)], torch.zeros_like(known[:, -len(self.x_names) :])], 1)
        return known

    def next_step(self, values):
        """The first step of a horizon model's outputs [..., H * G] (all of another's): [..., G]."""
        return values[..., : len(self.yhat_names)]

    def teacher_forced(self, x, lengths: np.ndarray, final_state: bool = False, raw: bool = False):
        """Point forecasts [rows, n_out] over series stored end to end (`over_series`),
        on the model's scale (with `raw`, the head's outputs), and with `final_state` the
        state after each series."""
        out, state = over_series(self.net, x, lengths, final_state)
        return (out if raw else self.net.head.point(out)), state

    def outputs(self, out, what: str, expected: np.ndarray | None = None) -> np.ndarray:
        """Outputs on the table's scale (differenced, for a model with --diff); outputs that
        are not finite numbers (in the rows `expected` to hold one: all by default) are a
        failed run."""
        values = self.scaling.outputs(out.double().numpy())
        bad = ~np.isfinite(values) if expected is None else ~np.isfinite(values) & expected[:, None]
        if bad.any():
            raise RunFailed(
                f"{self.path}: the model's {what} are not finite at {int(bad.any(axis=1).sum())} of "
                f"{len(values)} steps (inputs far outside what it was trained on?)"
            )
        return values

    def season_of(self, season: int | None, lengths: np.ndarray) -> int | None:
        """The season the naive forecasts use: the one asked for, else the model's (none for
        a table whose series are all too short for it)."""
        check_all(season=season)
        if season is None:
            return self.season if self.season is not None and self.season < int(lengths.max()) else None
        check_season(season, int(lengths.max()))
        return season


def _check_columns(m: Forecaster, table) -> None:
    """Refuse a table without the model's input columns or its time features' column."""
    missing = [n for n in m.x_names if n not in table.columns]
    if missing:
        raise SeqtoolError(
            f"{table.source}: the model {m.path} needs input column(s) "
            f"{', '.join(m.x_names)}; missing {', '.join(missing)} "
            f"(columns: {', '.join(table.columns)})"
        )
    if m.time is not None and m.time.column not in table.columns:
        raise SeqtoolError(
            f"{table.source}: the model {m.path} reads time features from column {m.time.column!r}; the table has none"
        )


def _check_length(m: Forecaster, series: SeriesTable) -> None:
    """Refuse a series too short for the model's differencing."""
    short = np.flatnonzero(series.lengths <= m.scaling.diff.order)
    if len(short):
        raise SeqtoolError(
            f"{series.source}: {series.named(short[0])} has {series.lengths[short[0]]} steps; "
            f"the model differences at lags {m.scaling.diff} (--diff), "
            f"so a series needs more than {m.scaling.diff.order}"
        )


def next_step_model(path: str | Path, ckpt: dict | None = None, advice: str = "use seqtool predict") -> Forecaster:
    """A model whose outputs can be fed back as its inputs; a mapping model is refused
    (with `advice` on what to do instead)."""
    m = Forecaster(path, ckpt)
    if m.task != NEXT_STEP:
        raise SeqtoolError(
            f"{m.path} maps inputs to targets ({', '.join(m.y_names)}), so its outputs cannot be "
            f"fed back as inputs; free running needs a next-step model (trained without a target "
            f"column): {advice}"
        )
    return m


def check_sampling(m: Forecaster, samples: int, paths, intervals: str | None = None) -> None:
    if paths is not None and not samples:
        raise SeqtoolError("--paths writes sample paths: give --samples N (N >= 1) too")
    if intervals == "model" and not samples and m.intervals:
        raise SeqtoolError("--intervals model: a free run's intervals come from sample paths; give --samples N too")
    if samples and m.horizon > 1:
        raise SeqtoolError(
            f"{m.path} forecasts each of its {m.horizon} steps on its own (train --horizon), not as a path: "
            "sample paths need a model trained one step ahead"
        )
    if samples and not m.samples:
        raise SeqtoolError(
            f"{m.path} forecasts points (trained with --loss mse): "
            "sample paths need a model of a distribution (train --loss gaussian or studentt)"
        )
