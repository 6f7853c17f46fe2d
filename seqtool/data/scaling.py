"""The one transform between the table's scale and the model's (`Scaling`): the logarithm
and differencing (each optional), then standardisation; and the representable-range rules it enforces."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from seqtool.errors import RunFailed, SeqtoolError

MAX_MAGNITUDE = 1e150  # squared errors of values up to this stay finite in float64
MIN_SPREAD = 1e-150  # ... and those of a spread down to this stay above zero
CONSTANT = 2.0**-46  # a spread within ~64 rounding steps of the values is no spread at all
STATS = ("x_mean", "x_std", "y_mean", "y_std")
LEVEL_STEPS = 2  # the fewest steps a series' level is taken over


@dataclass(frozen=True)
class Differencing:
    """The series' own transform: its logarithm with `log` (a multiplicative trend or
    season made additive), then differencing at `lags` in turn: D = prod (1 - B^lag) = 1 -
    sum_k c_k B^k (`coefficients`). It needs the `order` = sum(lags) values before a step,
    so the first `order` steps of a series only feed it. Undone with the true past for a
    one-step forecast (`undo`), and with its own forecasts for a free run (`integrate`),
    then exp: monotone, so quantiles stay quantiles (a mean becomes a median)."""

    lags: tuple[int, ...] = ()
    log: bool = False

    def __str__(self) -> str:
        return ",".join(map(str, self.lags))

    @property
    def active(self) -> bool:
        """Whether it changes the series at all."""
        return bool(self.lags) or self.log

    @property
    def order(self) -> int:
        """Steps at the start of a series that only feed the differencing."""
        return sum(self.lags)

    def coefficients(self) -> np.ndarray:
        """c[0..order]: D x[t] = x[t] - sum_{k>=1} c[k] x[t-k] (c[0] unused, 0)."""
        poly = np.array([1.0])
        for lag in self.lags:
            step = np.zeros(lag + 1)
            step[0], step[lag] = 1.0, -1.0
            poly = np.convolve(poly, step)
        return np.concatenate([[0.0], -poly[1:]])

    def difference(self, x: np.ndarray, source: str = "the series") -> np.ndarray:
        """x [T, F] transformed at every step that has `order` steps before it: [T - order, F]."""
        return self._differenced(self._logged(x, source))

    def _differenced(self, x: np.ndarray) -> np.ndarray:
        c, n = self.coefficients(), len(x) - self.order
        d = x[self.order :].copy()
        for k in range(1, self.order + 1):
            if c[k]:
                d -= c[k] * x[self.order - k : self.order - k + n]
        return d

    def undo(self, d: np.ndarray, x: np.ndarray) -> np.ndarray:
        """One-step forecasts: d [T, F] forecasts of the transformed series at every step of
        x [T, F] (rows before `order` ignored), plus what the true past adds back, then exp."""
        if not self.active:
            return d
        v, out = self._logged(x), np.full_like(d, np.nan)
        out[self.order :] = d[self.order :] + v[self.order :] - self._differenced(v)
        return self._exp(out)

    def integrate(self, last: np.ndarray, d: np.ndarray) -> np.ndarray:
        """Free-running forecasts [B, n, F]: d [B, n, F] forecasts of the transformed series
        for the n steps after `last` [B, order, F], the last true values, each step's value
        built on the ones before (its own forecasts once past the known), then exp."""
        if not self.active:
            return d
        c, p = self.coefficients(), self.order
        buffer = np.concatenate([self._logged(last), np.zeros_like(d)], axis=1)
        for j in range(d.shape[1]):
            past = buffer[:, j : p + j][:, ::-1]  # x[t-1], x[t-2], ..., x[t-p]
            buffer[:, p + j] = d[:, j] + np.einsum("k,bkf->bf", c[1:], past)
        return self._exp(buffer[:, p:])

    def _logged(self, x: np.ndarray, source: str = "the series") -> np.ndarray:
        """x, or with `log` its logarithm; a value that is not positive is refused."""
        if not self.log:
            return x
        bad = x <= 0
        if bad.any():
            raise SeqtoolError(
                f"{source}: --log-values models the logarithm of the series, so every value must be positive; "
                f"got {x[bad].flat[0]:.6g}"
            )
        return np.log(x)

    def _exp(self, v: np.ndarray) -> np.ndarray:
        """exp of logged forecasts; one beyond MAX_MAGNITUDE is a failed run, not an output."""
        if not self.log:
            return v
        with np.errstate(over="ignore"):
            out = np.exp(v)
        far = out > MAX_MAGNITUDE
        if far.any():
            raise RunFailed(
                f"--log-values: {int(far.sum())} forecasts, taken back by exp, exceed {MAX_MAGNITUDE:g} "
                f"(the model's log forecasts grew past {np.log(MAX_MAGNITUDE):.0f}): a shorter --horizon or --steps?"
            )
        return out


@dataclass
class Scaling:
    """The transform between a table's scale and the model's, both ways: a next-step
    series logged (`--log-values`) and differenced at `lags` in turn (`--diff 1,12`: d = (1 -
    B^12)(1 - B) x), then each column standardised by the mean and std of the training
    split. Fitted by `train`, stored in the checkpoint (its `norm` section) and restored
    from it by every command that runs the model; nothing else scales values. The log and
    the differencing are `diff`; the statistics are those of the series they give."""

    x_mean: np.ndarray
    x_std: np.ndarray
    y_mean: np.ndarray
    y_std: np.ndarray
    diff: Differencing = Differencing()
    scale: str = "global"
    window: int = 0  # --scale window: the steps before a forecast its level is taken over
    lag: int = 0  # --scale naive: the lag of the naive forecast whose mean absolute error is the level

    @classmethod
    def fit(
        cls, xs: list[np.ndarray], ys: list[np.ndarray], next_step: bool,
        x_names: list[str] | None = None, y_names: list[str] | None = None, source: str = "table",
        diff: Differencing = Differencing(), scale: str = "global",
    ) -> Scaling:  # fmt: skip
        """Statistics of the training split (already transformed by `diff`). A column whose
        values or spread cannot be represented (see `_moments`) is refused, naming it. A
        next-step model's outputs are fed back as its inputs: one scale for both."""
        x_mean, x_std = _moments(np.concatenate(xs), x_names, source)
        if next_step:
            return cls(x_mean, x_std, x_mean.copy(), x_std.copy(), diff, scale)
        y_mean, y_std = _moments(np.concatenate(ys), y_names, source)
        return cls(x_mean, x_std, y_mean, y_std)

    def to_dict(self):
        import torch  # lazily: data/ loads without torch (gen, info, plot)

        d = {k: torch.as_tensor(getattr(self, k), dtype=torch.float64) for k in STATS}
        return {
            **d,
            **({"lags": list(self.diff.lags)} if self.diff.lags else {}),
            **({"log": True} if self.diff.log else {}),
            **({"scale": self.scale} if self.scale != "global" else {}),
            **({"window": self.window} if self.scale == "window" else {}),
            **({"lag": self.lag} if self.scale == "naive" else {}),
        }

    @classmethod
    def from_dict(cls, d) -> Scaling:
        return cls(
            **{k: np.asarray(d[k], dtype=np.float64) for k in STATS},
            diff=Differencing(tuple(d.get("lags", ())), d.get("log", False)),
            scale=d.get("scale", "global"),
            window=int(d.get("window", 0)),
            lag=int(d.get("lag", 0)),
        )

    def inputs(
        self, x: np.ndarray, names: list[str] | None = None, source: str = "table", dtype=np.float32
    ) -> np.ndarray:
        """Inputs [..., F] on the model's scale (float32 unless asked); a value too far from
        the training data to be represented is refused, naming its column. Columns past the
        F of the series (known inputs: time features) pass as they are."""
        width = len(self.x_mean)
        z = _standardise(x[..., :width], self.x_mean, self.x_std, names, source, dtype)
        return z if x.shape[-1] == width else np.concatenate([z, x[..., width:].astype(dtype)], axis=-1)

    def targets(self, y: np.ndarray, dtype=np.float32) -> np.ndarray:
        """Targets [..., H * G] on the model's scale (NaN stays NaN: no target)."""
        reps = y.shape[-1] // len(self.y_mean)
        return _standardise(y, np.tile(self.y_mean, reps), np.tile(self.y_std, reps), None, "targets", dtype)

    def outputs(self, out: np.ndarray) -> np.ndarray:
        """Model outputs [..., G] back on the table's scale, float64."""
        return np.asarray(out, dtype=np.float64) * self.y_std + self.y_mean

    def levelled(self, table, known: np.ndarray | None):
        """The table as the rest of the transform takes it, and its levels: with `scale`
        "series" (or "naive"), each series divided by its level over its first known[i]
        steps (all by default; `levels`), with "window" over the last `window` of them;
        else as it is, and None."""
        if self.scale == "global":
            return table, None
        known = table.lengths if known is None else known
        level = levels(table, known, self.window or None, f"--scale {self.scale}", self.lag)
        return divided(table, level), level


def _moments(values: np.ndarray, names: list[str] | None, source: str) -> tuple[np.ndarray, np.ndarray]:
    """Mean and std per column, ignoring NaN (no target).

    A column is constant when its spread is within rounding of its magnitude (relative,
    so 1e-300 * sin t and 1 + 1e-13 sin t are not constant); a constant column is scaled by
    its own magnitude. Values beyond 1e150, or a spread below 1e-150, are refused: their
    squared errors would overflow or vanish in float64.
    """
    means, stds, bigs = [], [], []
    for j in range(values.shape[1]):
        name = names[j] if names else f"column {j}"
        v = values[:, j]
        v = v[~np.isnan(v)]
        if v.size == 0:
            means.append(0.0)
            stds.append(1.0)
            bigs.append(0.0)
            continue
        bigs.append(check_magnitude(v, name, source))
        mean = float(np.mean(v))
        d = v - mean
        reach = float(np.max(np.abs(d)))
        means.append(mean)
        stds.append(reach * float(np.sqrt(np.mean((d / reach) ** 2))) if reach > 0 else 0.0)
    return spread(np.array(means), np.array(stds), np.array(bigs), names, source)


def spread(
    mean: np.ndarray, std: np.ndarray, big: np.ndarray, names: list[str] | None, source: str
) -> tuple[np.ndarray, np.ndarray]:
    """Each column's mean and std as the model scales by them, from its mean, std and
    largest magnitude: a constant column (its spread within rounding of its magnitude)
    scaled by its own magnitude; a spread below MIN_SPREAD or values beyond MAX_MAGNITUDE
    refused, naming the column."""
    mean, std = np.array(mean, dtype=np.float64), np.array(std, dtype=np.float64)
    for j in range(len(mean)):
        name = names[j] if names else f"column {j}"
        if big[j] > MAX_MAGNITUDE:
            check_magnitude(np.array([big[j]]), name, source)
        if std[j] <= CONSTANT * big[j]:
            std[j] = abs(mean[j]) if mean[j] != 0 else 1.0
        elif std[j] < MIN_SPREAD:
            raise SeqtoolError(
                f"{source}: column {name!r} varies by only {std[j]:.3g}; seqtool needs a spread of at "
                f"least {MIN_SPREAD:g} (squared errors must not vanish): rescale it"
            )
    return mean, std


def check_magnitude(values: np.ndarray, name: str, source: str) -> float:
    """The largest magnitude in `values` (NaN ignored); beyond 1e150 refused, naming the column."""
    big = float(np.max(np.abs(values[~np.isnan(values)]), initial=0.0))
    if big > MAX_MAGNITUDE:
        raise SeqtoolError(
            f"{source}: column {name!r} holds {big:.3g}; seqtool models values up to "
            f"{MAX_MAGNITUDE:g} in magnitude (their squared errors must be finite): rescale it"
        )
    return big


def _standardise(v: np.ndarray, mean: np.ndarray, std: np.ndarray, names, source: str, dtype) -> np.ndarray:
    with np.errstate(over="ignore", invalid="ignore"):
        z = ((v - mean) / std).astype(dtype)
    bad = np.isinf(z) | (np.isnan(z) & ~np.isnan(v))
    if bad.any():
        row, col = (int(i[0]) for i in np.nonzero(bad.reshape(-1, bad.shape[-1])))
        value = v.reshape(-1, v.shape[-1])[row, col]
        name = names[col] if names else f"column {col}"
        raise SeqtoolError(
            f"{source}: column {name!r}: {value:.3g} is {abs(value - mean[col]) / std[col]:.3g} "
            f"standard deviations from the training data; the model cannot represent it"
        )
    return z


def levels(
    table, known: np.ndarray, last: int | None = None, option: str = "--scale series", lag: int = 0
) -> np.ndarray:
    """Each series' level [N, F] for --scale series: the mean absolute value of each input
    column over its first known[i] steps (the steps a forecast may read; with `last`, the
    last `last` of them: --scale window); with `lag` (--scale naive), the mean absolute
    change over `lag` steps there (1 where a series has no more steps than `lag`); 1 where
    that is 0 (or known[i] is 0: a series not forecast). Dividing by it keeps signs (so
    --log-values still applies) and makes a series times 1000 the same series to the
    network. One step is refused (too few to scale by)."""
    short = np.flatnonzero((known > 0) & (known < LEVEL_STEPS))
    if len(short):
        i = int(short[0])
        raise SeqtoolError(
            f"{table.source}: {table.named(i)} has {int(known[i])} step(s) to take its level from; "
            f"{option} takes each level over at least {LEVEL_STEPS} steps: give it more (a longer --warmup, "
            "a later --start) or leave the series out"
        )
    level = magnitudes(table, known, last, lag)
    return np.where(level > 0, level, 1.0)


def magnitudes(table, known: np.ndarray, last: int | None = None, lag: int = 0) -> np.ndarray:
    """The mean absolute value [N, F] of each series' first known[i] steps (with `last`,
    of the last `last` of those), 0 for none; with `lag`, of their changes over `lag`
    steps (over one step where a series has no more than `lag` of them): the mean absolute
    error of the (seasonal) naive forecast, MASE's scale."""
    out = np.zeros((len(known), len(table.x_names)))
    skip = np.zeros_like(known) if last is None else np.maximum(known - last, 0)
    some, count = known > 0, known - skip
    firsts = np.cumsum(count[some]) - count[some]  # of each series among the rows read
    rows = np.repeat(table.offsets[:-1][some] + skip[some] - firsts, count[some]) + np.arange(int(count.sum()))
    if not len(firsts):
        return out
    values, n = table.x[rows], count[some]
    if lag:
        step = np.where(n > lag, lag, 1)
        back = np.repeat(step, n)
        after = np.arange(len(rows)) - np.repeat(firsts, n) >= back  # a step with one `back` steps before it
        values = np.where(after[:, None], values - table.x[np.where(after, rows - back, rows)], 0.0)
        n = np.maximum(n - step, 1)
    out[some] = np.add.reduceat(np.abs(values), firsts, axis=0) / n[:, None]
    return out


def divided(table, level: np.ndarray):
    """The table with each series' inputs divided by its level [N, F]. A value that the
    division takes past MAX_MAGNITUDE (a level far below the values after it) is refused,
    naming its series."""
    with np.errstate(over="ignore", invalid="ignore"):
        x = table.x / np.repeat(level, table.lengths, axis=0)
    far = np.flatnonzero((np.abs(x) > MAX_MAGNITUDE).any(axis=1))
    if len(far):
        i = int(np.searchsorted(table.offsets, far[0], side="right")) - 1
        raise SeqtoolError(
            f"{table.source}: {table.named(i)} reaches {np.abs(table.x[far[0]]).max():.3g}, more than "
            f"{MAX_MAGNITUDE:g} times its level ({level[i].max():.3g}, taken over the steps before its forecast): "
            "forecast it from more steps, or leave it out"
        )
    return table.with_x(x)


def times(values: np.ndarray, level: np.ndarray | None, lengths: np.ndarray) -> np.ndarray:
    """Forecasts [..., rows, F] of series of these lengths, end to end, multiplied back by
    their series' level (as they are for None)."""
    return values if level is None else values * np.repeat(level, lengths, axis=0)


@dataclass
class WindowLevels:
    """--scale window in training: rows stored on their series' scale (divided by the series'
    level), each window moved to its own level, the mean |x| of its steps, and scored as one
    forecast, from its last step (the steps before have no target): what a forecast reads
    and is scaled by. `relative` [rows, F] is each row's |x| over its series' level.
    Dividing the series commutes with differencing; after the log it is a shift, which
    differencing removes (then there is nothing to move, but still one forecast a window)."""

    relative: object  # float32 tensor [rows, F]
    stats: tuple  # x_mean, x_std, y_mean, y_std: float32 tensors [F], where `relative` is
    scaling: Scaling

    @classmethod
    def of(cls, relative: np.ndarray, scaling: Scaling) -> WindowLevels:
        import torch  # lazily: data/ loads without torch (gen, info, plot)

        stats = tuple(torch.as_tensor(getattr(scaling, k), dtype=torch.float32) for k in STATS)
        return cls(torch.from_numpy(relative.astype(np.float32)), stats, scaling)

    def to(self, device) -> WindowLevels:
        return WindowLevels(self.relative.to(device), tuple(t.to(device) for t in self.stats), self.scaling)

    def moved(self, x, y, index):
        """Inputs [B, W, F(+)] and targets [B, W, H * F] (the last step's only) of the windows
        of rows `index` [B, W], each on its own level (a window of zeros keeps its series')."""
        import torch  # lazily: data/ loads without torch (gen, info, plot)

        last, width = y[:, -1:], self.relative.shape[-1]
        if not (self.scaling.diff.log and self.scaling.diff.order):  # differenced logs have no level
            r = self.relative[index].mean(dim=1, keepdim=True)
            r = torch.where(r > 0, r, torch.ones_like(r))
            x_mean, x_std, y_mean, y_std = self.stats
            reps = y.shape[-1] // width
            x = torch.cat([self._move(x[..., :width], r, x_mean, x_std), x[..., width:]], dim=-1)
            last = self._move(last, r.repeat(1, 1, reps), y_mean.repeat(reps), y_std.repeat(reps))
        before = torch.full_like(last, float("nan")).expand(-1, x.shape[1] - 1, -1)
        return x, torch.cat([before, last], dim=1)

    def _move(self, z, r, mean, std):
        """Standardised values `z` of windows at level r (1: their series') at their own."""
        v = z * std + mean
        return ((v - r.log() if self.scaling.diff.log else v / r) - mean) / std
