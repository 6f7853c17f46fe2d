"""The bounds of every numeric option, in one table: the library checks them before any
work, and `--help` shows them. Plain Python, so the CLI can import it at start-up.

A bound keeps a value where seqtool can do what it is asked in reasonable time and
memory (a Lorenz sample may not take a million integration steps; a seed must fit the
random generators); `fits_in_memory` refuses a request that would not fit at all.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass

from seqtool.errors import SeqtoolError
from seqtool.resources import available_memory, cores


@dataclass(frozen=True)
class Limit:
    option: str  # as typed on the command line, without the dashes
    lo: float
    hi: float
    integer: bool = True
    lo_open: bool = False  # lo itself is excluded
    hi_open: bool = False

    def interval(self) -> str:
        """[1, 4096], (0, 1e+06], [0, 1): what --help and the error messages show."""
        lo, hi = (f"{int(v)}" if self.integer else f"{v:g}" for v in (self.lo, self.hi))
        return f"{'(' if self.lo_open else '['}{lo}, {hi}{')' if self.hi_open else ']'}"

    def holds(self, value) -> bool:
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            return False
        if self.integer and not isinstance(value, numbers.Integral):
            return False
        if not math.isfinite(value):
            return False
        above = value > self.lo if self.lo_open else value >= self.lo
        below = value < self.hi if self.hi_open else value <= self.hi
        return above and below


def _int(option: str, lo: int, hi: int) -> Limit:
    return Limit(option, lo, hi)


def _real(option: str, lo: float, hi: float, lo_open: bool = False, hi_open: bool = False) -> Limit:
    return Limit(option, lo, hi, integer=False, lo_open=lo_open, hi_open=hi_open)


BILLION = 1_000_000_000


LIMITS: dict[str, Limit] = {
    # shared
    "seed": _int("seed", 0, 2**32 - 1),  # numpy's and torch's generators take it as it is
    "threads": _int("threads", 1, cores()),
    "nproc": _int("nproc", 1, 1024),  # processes on one machine (more than its cores only slow it)
    "season": _int("season", 1, 1_000_000),  # as long as a --window may be, and a checkpoint may store
    # train (and gradnorm's fresh models)
    "hidden": _int("hidden", 1, 4096),
    "layers": _int("layers", 1, 16),
    "dropout": _real("dropout", 0, 1, hi_open=True),
    "lr": _real("lr", 0, 1e6, lo_open=True),
    "batch": _int("batch", 1, 1_000_000),
    "window": _int("window", 1, 1_000_000),
    "stride": _int("stride", 1, BILLION),
    "steps": _int("steps", 1, BILLION),
    "epochs": _real("epochs", 0, 1e6, lo_open=True),
    "clip": _real("clip", 0, 1e12),
    "val": _real("val", 0, 1, hi_open=True),
    "patience": _int("patience", 0, BILLION),
    "burn_in": _int("burn-in", 0, 1_000_000),
    "train_horizon": _int("horizon", 1, 10_000),
    "ensemble": _int("ensemble", 1, 64),
    # predict, rollout
    "warmup": _int("warmup", 0, BILLION),
    "rollout_warmup": _int("warmup", 1, BILLION),
    "free_steps": _int("steps", 0, BILLION),
    "horizon": _int("horizon", 0, BILLION),
    "backtest_horizon": _int("horizon", 1, 1_000_000),
    # profile
    "profile_lag": _int("lag", 1, 1_000_000),
    "profile_ahead": _int("ahead", 0, 1_000_000),
    "level": _real("level", 0, 100, lo_open=True, hi_open=True),
    "samples": _int("samples", 0, 100_000),
    # gradnorm
    "init_scale": _real("init-scale", 0, 1000, lo_open=True),
    "forget_bias": _real("forget-bias", -100, 100),
    "grad_length": _int("length", 2, 100_000),
    "grad_batch": _int("batch", 1, 100_000),
    # plot
    "dpi": _int("dpi", 10, 1000),
    "pixels": _int("size", 50, 10_000),
    # gen
    "n_series": _int("n-series", 1, 10_000_000),
    "length": _int("length", 1, BILLION),
    "adding_length": _int("length", 2, BILLION),
    "rows": _int("n-series x --length", 1, 100_000_000),
    "span": _real("span", 0, 1e6, lo_open=True),
    "noise": _real("noise", 0, 1e6),
    "freq": _real("freqs", -1e6, 1e6),
    "per_span": _int("per-span", 1, 1_000_000),
    "jump_prob": _real("jump-prob", 0, 1),
    "gain": _real("gain", 0, 1000, lo_open=True),
    "lorenz_dt": _real("dt", 0.001, 1),  # at most 100 RK4 steps a sample, 10,000 to reach the attractor
    "tau": _real("tau", 0, 1000, lo_open=True),
    "mg_dt": _real("dt", 0.1, 10),  # at most 100 Euler steps a sample
    "period": _int("period", 2, 1_000_000),
    "slope": _real("slope", -1e6, 1e6),
    "amplitude": _real("amplitude", 0, 1e6),
    "panel_length": _int("length", 6, BILLION),  # its shortest series: a third, at least 2 steps
    "short": _real("short", 0, 1),
    "panel_noise": _real("noise", 0, 1),  # of the log: a factor exp(noise e)
}


def interval(key: str) -> str:
    """The bounds of an option for --help, escaped for rich markup."""
    return LIMITS[key].interval().replace("[", "\\[")


def check(key: str, value) -> None:
    """Refuse a value outside the bounds of option `key`: one line, exit 2."""
    limit = LIMITS[key]
    if not limit.holds(value):
        what = "a whole number" if limit.integer else "a number"
        raise SeqtoolError(f"--{limit.option} must be {what} in {limit.interval()}, got {value!r}")


def check_season(season: int | None, longest: int, source: str | None = None) -> None:
    """Refuse a season as long as the longest series: no seasonal naive forecast exists."""
    if season is not None and season >= longest:
        raise SeqtoolError(
            f"{source + ': ' if source else ''}--season {season} is as long as the longest series ({longest} steps): "
            "no seasonal naive forecast can be made; give a shorter --season"
        )


def check_all(**values) -> None:
    """`check` for several options; None means "not given" and is skipped."""
    for key, value in values.items():
        if value is not None:
            check(key, value)


def fits_in_memory(nbytes: float, what: str) -> None:
    """Refuse, before any work, a request whose estimated memory exceeds what is available."""
    free = available_memory()
    if nbytes > free:
        raise SeqtoolError(f"{what} needs about {_gb(nbytes)} of memory and {_gb(free)} is available; ask for less")


def _gb(nbytes: float) -> str:
    return f"{nbytes / 2**30:.3g} GB" if nbytes < 2**70 else "more than a zettabyte"
