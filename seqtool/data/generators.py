"""The generators behind `seqtool gen`: the classic recurrent-network experiments.

Each returns a `SeriesTable` and depends on numpy only. The same seed gives the same
table. `COMMANDS` declares what `seqtool gen KIND` shows of each: its summary, its
example, and the parameters that are options, with their help lines; the option's type
and default are the function's own, so the command line cannot drift from the library.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from seqtool.data.tables import SeriesTable
from seqtool.errors import SeqtoolError
from seqtool.limits import LIMITS, check_all


def _check(n_series: int, length: int, length_key: str = "length", **options) -> None:
    """Every parameter within its bounds (limits.py), and the table within 1e8 rows."""
    check_all(n_series=n_series, **{length_key: length}, **options)
    check_all(rows=n_series * length)


def sine(n_series: int = 256, length: int = 50, seed: int = 0, span: float = 10.0, noise: float = 0.0) -> SeriesTable:
    """x = sin(t) over a span of `span`, from a start drawn uniformly in [0, 2*pi).

    No target column: the task is next-step forecasting. A random start (not the
    textbook's 0, 1 or 2) makes a model learn the wave instead of memorising windows.
    """
    _check(n_series, length, span=span, noise=noise, seed=seed)
    rng = np.random.default_rng(seed)
    t = rng.uniform(0, 2 * np.pi, (n_series, 1)) + np.linspace(0, span, length)
    x = np.sin(t) + noise * rng.standard_normal(t.shape)
    return SeriesTable.from_arrays(list(x), t=list(t), source="sine")


def multisine(
    n_series: int = 256,
    length: int = 100,
    seed: int = 0,
    span: float = 20.0,
    freqs: str = "1,2.3,3.7",
    noise: float = 0.0,
) -> SeriesTable:
    """x = a sum of sines of the given angular frequencies, with amplitude 1/k for the k-th,
    random phases per series, plus Gaussian noise of std `noise`."""
    _check(n_series, length, span=span, noise=noise, seed=seed)
    try:
        omegas = np.array([float(f) for f in freqs.split(",")])
    except ValueError:
        raise SeqtoolError(f"--freqs must be numbers separated by commas, got {freqs!r}") from None
    if len(omegas) > 100:
        raise SeqtoolError(f"--freqs takes at most 100 frequencies, got {len(omegas)}")
    for omega in omegas.tolist():
        check_all(freq=omega)
    rng = np.random.default_rng(seed)
    t = rng.uniform(0, 2 * np.pi, (n_series, 1)) + np.linspace(0, span, length)
    phases = rng.uniform(0, 2 * np.pi, (n_series, 1, len(omegas)))
    amplitudes = 1.0 / np.arange(1, len(omegas) + 1)
    x = (amplitudes * np.sin(omegas * t[..., None] + phases)).sum(-1)
    x += noise * rng.standard_normal(t.shape)
    return SeriesTable.from_arrays(list(x), t=list(t), source="multisine")


def sincos(n_series: int = 64, length: int = 300, seed: int = 0, per_span: int = 30) -> SeriesTable:
    """Input x = sin(t), target y = cos(t): `per_span` points per span of pi, from a random start.

    sin alone does not tell cos (sin is 0 at 0 and at pi): the model needs memory of the
    direction of change. Long series are meant for stateful training (carried state).
    """
    _check(n_series, length, per_span=per_span, seed=seed)
    rng = np.random.default_rng(seed)
    t = rng.uniform(0, 2 * np.pi, (n_series, 1)) + np.arange(length) * (np.pi / per_span)
    return SeriesTable.from_arrays(list(np.sin(t)), y=list(np.cos(t)), t=list(t), source="sincos")


def integral(
    n_series: int = 32, length: int = 2000, seed: int = 0, jump_prob: float = 0.1, gain: float = 0.1
) -> SeriesTable:
    """A saturating integrator. Input u is piecewise constant: at each step it jumps, with
    probability `jump_prob`, to a new value uniform in [0, 1). Target
    y[k] = clip(y[k-1] + gain * (u[k] - 0.5), 0, 1), with y[-1] = 0."""
    _check(n_series, length, gain=gain, jump_prob=jump_prob, seed=seed)
    rng = np.random.default_rng(seed)
    jumps = rng.random((n_series, length)) < jump_prob
    jumps[:, 0] = True
    values = rng.random((n_series, length))
    # u[k] = value at the last jump at or before k
    last_jump = np.maximum.accumulate(np.where(jumps, np.arange(length), 0), axis=1)
    u = np.take_along_axis(values, last_jump, axis=1)
    y = np.empty_like(u)
    level = np.zeros(n_series)
    for k in range(length):
        level = np.clip(level + gain * (u[:, k] - 0.5), 0.0, 1.0)
        y[:, k] = level
    return SeriesTable.from_arrays(list(u), y=list(y), source="integral")


def adding(n_series: int = 1000, length: int = 100, seed: int = 0) -> SeriesTable:
    """The adding problem (Hochreiter & Schmidhuber 1997). Inputs x0: uniform [0, 1);
    x1: a marker, 1 at one step in the first half and one in the second. Target y: the
    sum of the two marked values, at the last step only (empty elsewhere)."""
    _check(n_series, length, "adding_length", seed=seed)
    rng = np.random.default_rng(seed)
    values = rng.random((n_series, length))
    half = length // 2
    rows = np.arange(n_series)
    first = rng.integers(0, half, n_series)
    second = rng.integers(half, length, n_series)
    markers = np.zeros((n_series, length))
    markers[rows, first] = markers[rows, second] = 1.0
    y = np.full((n_series, length), np.nan)
    y[:, -1] = values[rows, first] + values[rows, second]
    x = np.stack([values, markers], axis=-1)
    return SeriesTable.from_arrays(list(x), ("x0", "x1"), y=list(y), source="adding")


def lorenz(
    n_series: int = 1, length: int = 1000, seed: int = 0, dt: float = 0.02,
    sigma: float = 10.0, rho: float = 28.0, beta: float = 8.0 / 3.0,
) -> SeriesTable:  # fmt: skip
    """The Lorenz system (chaotic, three inputs x0, x1, x2), sampled every `dt` after a
    burn-in onto the attractor; integrated with RK4 at steps of at most 0.01."""
    _check(n_series, length, lorenz_dt=dt, seed=seed)
    rng = np.random.default_rng(seed)
    sub = max(1, int(np.ceil(dt / 0.01)))
    h = dt / sub

    def f(s: np.ndarray) -> np.ndarray:
        x, y, z = s[:, 0], s[:, 1], s[:, 2]
        return np.stack([sigma * (y - x), x * (rho - z) - y, x * y - beta * z], axis=1)

    def advance(s: np.ndarray) -> np.ndarray:
        for _ in range(sub):
            k1 = f(s)
            k2 = f(s + h / 2 * k1)
            k3 = f(s + h / 2 * k2)
            k4 = f(s + h * k3)
            s = s + h / 6 * (k1 + 2 * k2 + 2 * k3 + k4)
        return s

    state = rng.uniform([-15, -15, 5], [15, 15, 40], (n_series, 3))
    for _ in range(int(np.ceil(10.0 / dt))):  # 10 time units onto the attractor
        state = advance(state)
    out = np.empty((n_series, length, 3))
    for k in range(length):
        out[:, k] = state
        state = advance(state)
    t = [np.arange(length) * dt] * n_series
    return SeriesTable.from_arrays(list(out), ("x0", "x1", "x2"), t=t, source="lorenz")


def mackey_glass(
    n_series: int = 1, length: int = 1000, seed: int = 0, tau: float = 17.0, dt: float = 1.0,
    beta: float = 0.2, gamma: float = 0.1, power: float = 10.0,
) -> SeriesTable:  # fmt: skip
    """The Mackey-Glass delay equation dx/dt = beta x(t-tau) / (1 + x(t-tau)^power) - gamma x,
    chaotic for tau = 17; Euler steps of 0.1, sampled every `dt` after a burn-in of 500."""
    _check(n_series, length, tau=tau, mg_dt=dt, seed=seed)
    rng = np.random.default_rng(seed)
    h = 0.1
    sub = max(1, round(dt / h))
    delay = max(1, round(tau / h))
    burn = round(500 / h)
    total = burn + length * sub
    x = np.empty((n_series, delay + total + 1))
    x[:, : delay + 1] = rng.uniform(0.5, 1.5, (n_series, 1))
    for k in range(delay, delay + total):
        lagged = x[:, k - delay]
        x[:, k + 1] = x[:, k] + h * (beta * lagged / (1 + lagged**power) - gamma * x[:, k])
    samples = x[:, delay + burn :: sub][:, :length]
    t = [np.arange(length) * (sub * h)] * n_series
    return SeriesTable.from_arrays(list(samples), t=t, source="mackey-glass")


def trend(
    n_series: int = 1, length: int = 240, seed: int = 0, period: int = 12,
    slope: float = 0.05, amplitude: float = 1.0, noise: float = 0.1,
) -> SeriesTable:  # fmt: skip
    """A monthly-like series: x_t = slope t + amplitude sin(2 pi t / period + phase) + noise e_t,
    t = 0, 1, 2, ..., the phase uniform in [0, 2*pi) per series, e_t white Gaussian.

    No target column: next-step forecasting. The trend carries the series past its early
    range (by default the last 24 steps lie above all of the first half), so a model
    standardised on early data must extrapolate; the season moves x by more per step than
    the noise does, so repeating the last value is a poor forecast next to knowing the season.
    """
    _check(n_series, length, period=period, slope=slope, amplitude=amplitude, noise=noise, seed=seed)
    rng = np.random.default_rng(seed)
    phases = rng.uniform(0, 2 * np.pi, (n_series, 1))
    t = np.arange(length, dtype=np.float64)
    x = slope * t + amplitude * np.sin(2 * np.pi * t / period + phases)
    x += noise * rng.standard_normal(x.shape)
    return SeriesTable.from_arrays(list(x), t=[t] * n_series, source="trend")


def panel(
    n_series: int = 64, length: int = 120, seed: int = 0, period: int = 12, short: float = 0.25, noise: float = 0.05,
) -> SeriesTable:  # fmt: skip
    """Many series as forecasters bring them, ending at the same step: each of its own scale
    (10^U(1, 4.5): tens to tens of thousands), growth (-0.5% to +1.5% a step), season of
    `period` steps (0 to 30% of the level, its own phase) and noise (a factor exp(noise e),
    so values stay positive); a share `short` of them began later (a third of `length` to
    all of it). x_t = scale exp(growth t) (1 + season sin(2 pi t / period + phase)) exp(noise e_t).

    No target column: next-step forecasting of every series by one model, where one scale
    for all (the standardisation of the table) fits none of them."""
    _check(n_series, length, "panel_length", period=period, short=short, panel_noise=noise, seed=seed)
    rng = np.random.default_rng(seed)
    scale = 10 ** rng.uniform(1, 4.5, n_series)
    growth = rng.uniform(-0.005, 0.015, n_series)
    season = rng.uniform(0, 0.3, n_series)
    phase = rng.uniform(0, 2 * np.pi, n_series)
    later = rng.random(n_series) < short
    lengths = np.where(later, rng.integers(length // 3, length + 1, n_series), length)
    xs, ts = [], []
    for i, n in enumerate(lengths.tolist()):
        t = np.arange(length - n, length, dtype=np.float64)
        level = scale[i] * np.exp(growth[i] * t) * (1 + season[i] * np.sin(2 * np.pi * t / period + phase[i]))
        xs.append(level * np.exp(noise * rng.standard_normal(n)))
        ts.append(t)
    return SeriesTable.from_arrays(xs, t=ts, source="panel")


# --- what `seqtool gen KIND` shows ---------------------------------------------------


@dataclass(frozen=True)
class Option:
    """A generator parameter that is a command-line option, --NAME (underscores as dashes)."""

    name: str
    help: str  # "{span}" stands for the bounds of `key` in limits.py
    key: str = ""  # the LIMITS entry; "" for `name`
    short: str | None = None  # a one-letter flag, e.g. "-n"


N_SERIES = Option(
    "n_series", f"Number of series, {{span}}; at most {int(LIMITS['rows'].hi):,} rows in all.", short="-n"
)
LENGTH = Option("length", "Steps per series, {span}.", short="-l")
SEED = Option("seed", "Random seed, {span}: the same seed, the same result.")
SPAN = Option("span", "Length of the time span each series covers, {span}.")
NOISE = Option("noise", "Std of Gaussian noise added to x, {span}.")


@dataclass(frozen=True)
class Kind:
    """`seqtool gen NAME`: the generator, the command's one-line summary and example, and
    its options in the order `--help` lists them. Other parameters are library-only."""

    name: str
    function: Callable[..., SeriesTable]
    summary: str
    example: str
    options: tuple[Option, ...]
    pipeline: str = ""  # the commands that train a model of this kind and judge it on a fresh seed (README: accuracy)

    def parameters(self) -> list[tuple[Option, Any, Any]]:
        """Each option with the type and the default it has in the function's signature."""
        signature = inspect.signature(self.function, eval_str=True).parameters
        return [(o, signature[o.name].annotation, signature[o.name].default) for o in self.options]


COMMANDS: dict[str, Kind] = {
    kind.name: kind
    for kind in (
        Kind("sine", sine, "Next-step forecasting: x = sin(t) from a random start (no target column).",
             "seqtool gen sine --n-series 4 --seed 1 | head",
             (N_SERIES, LENGTH, SEED, SPAN, NOISE),
             "seqtool gen sine | seqtool train -o sine.pt; "
             "seqtool gen sine --seed 1 | seqtool rollout sine.pt --warmup 10"),
        Kind("multisine", multisine,
             "Harder forecasting: a sum of sines (amplitude 1/k) with random phases, optional noise.",
             "seqtool gen multisine --freqs 1,3 --noise 0.05 -o ms.csv",
             (N_SERIES, LENGTH, SEED, SPAN,
              Option("freqs", "Angular frequencies, comma-separated, each in {span}.", "freq"), NOISE),
             "seqtool gen multisine | seqtool train -o ms.pt; "
             "seqtool gen multisine --seed 1 | seqtool predict ms.pt --warmup 5"),
        Kind("sincos", sincos, "Sequence mapping: input x = sin(t), target y = cos(t); needs memory.",
             "seqtool gen sincos --length 600 -o sincos.csv",
             (N_SERIES, LENGTH, SEED, Option("per_span", "Points per span of pi, {span}.")),
             "seqtool gen sincos | seqtool train -o sincos.pt; "
             "seqtool gen sincos --seed 1 | seqtool predict sincos.pt --warmup 5"),
        Kind("integral", integral, "A saturating integrator: y_k = clip(y_k-1 + gain*(x_k - 0.5), 0, 1).",
             "seqtool gen integral --length 100000 -o integral.npz",
             (N_SERIES, LENGTH, SEED, Option("jump_prob", "Chance per step that u jumps, {span}."),
              Option("gain", "Integration gain, {span}.")),
             "seqtool gen integral | seqtool train --stateful -o int.pt; "
             "seqtool gen integral -n 1 --length 1500 --seed 1 | seqtool predict int.pt"),
        Kind("adding", adding, "The adding problem: sum the two marked values; target at the last step only.",
             "seqtool gen adding --length 200 -o adding200.npz",
             (N_SERIES, replace(LENGTH, key="adding_length"), SEED),
             "seqtool gen adding | seqtool train -o add.pt; seqtool gen adding --seed 1 | seqtool predict add.pt"),
        Kind("lorenz", lorenz, "Chaos, multivariate: the Lorenz system as inputs x0, x1, x2.",
             "seqtool gen lorenz --length 5000 -o lorenz.npz",
             (N_SERIES, LENGTH, SEED, Option("dt", "Time between samples, {span}.", "lorenz_dt")),
             "seqtool gen lorenz | seqtool train -o lorenz.pt; "
             "seqtool gen lorenz --seed 1 | seqtool rollout lorenz.pt --warmup 100 --steps 100"),
        Kind("mackey-glass", mackey_glass, "Chaos, univariate: the Mackey-Glass delay equation.",
             "seqtool gen mackey-glass --tau 30 -o mg.csv",
             (N_SERIES, LENGTH, SEED, Option("tau", "Delay; chaotic from about 17, {span}."),
              Option("dt", "Time between samples, {span}.", "mg_dt")),
             "seqtool gen mackey-glass | seqtool train -o mg.pt; "
             "seqtool gen mackey-glass --seed 1 | seqtool rollout mg.pt --warmup 100 --steps 50"),
        Kind("trend", trend, "A monthly-like series: linear trend, season and noise; forecasting must extrapolate.",
             "seqtool gen trend --slope 0.1 --noise 0.2 -o trend.csv",
             (N_SERIES, LENGTH, SEED, Option("period", "Steps per season, {span}."),
              Option("slope", "Trend per step, {span}."), Option("amplitude", "Amplitude of the season, {span}."),
              NOISE),
             "seqtool gen trend | seqtool train --diff 1 -o trend.pt; "
             "seqtool gen trend --seed 1 | seqtool backtest trend.pt --horizon 12"),
        Kind("panel", panel, "Many series of different scales, trends and seasons, some shorter: a panel.",
             "seqtool gen panel -n 200 --seed 1 -o panel.csv",
             (N_SERIES, replace(LENGTH, key="panel_length"), SEED, Option("period", "Steps per season, {span}."),
              Option("short", "Share of the series that began later, {span}."),
              Option("noise", "Noise as a factor exp(noise e) of each value, {span}.", "panel_noise")),
             "seqtool gen panel | seqtool train --log-values --diff 1 -o panel.pt; "
             "seqtool gen panel --seed 1 | seqtool backtest panel.pt --horizon 12 --start 0.8"),
    )
}  # fmt: skip
KINDS: dict[str, Callable[..., SeriesTable]] = {name: kind.function for name, kind in COMMANDS.items()}


def generate(kind: str, **options) -> SeriesTable:
    """`seqtool gen KIND` as a function: `generate("sine", n_series=4, seed=1)`."""
    if kind not in KINDS:
        raise SeqtoolError(f"unknown kind {kind!r}; choose from {', '.join(KINDS)}")
    return KINDS[kind](**options)
