"""The network: a recurrent cell (tanh RNN, LSTM or GRU), stacked, with a linear head."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import torch
from torch import nn
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence, pad_packed_sequence

from seqtool.config import CELLS, ModelConfig
from seqtool.data.examples import length_groups

BUDGET = 1 << 25  # hidden units x steps x series in one inference call: 128 MB of float32


def point_error(err: torch.Tensor, power: int) -> torch.Tensor:
    """Each error's part of a point loss: squared (power 2: the forecast is a mean) or
    absolute (power 1: a median, robust to outliers; what MASE and sMAPE score)."""
    return err.pow(2) if power == 2 else err.abs()


class PointHead(nn.Linear):
    """The output layer of a point forecast: hidden state -> n_out values, the forecast
    itself on the standardised scale, trained by the mean squared error (`power` 2).

    A head owns what its output means: `loss` (masked: NaN in y is no target) and `point`
    (the point forecast it implies). Training, gradnorm and inference go through these two,
    so a head that outputs a distribution's parameters fits in the same place;
    `probabilistic` says whether it also has `quantile` and `sample`.
    """

    probabilistic = False
    power = 2

    def loss(self, out: torch.Tensor, y: torch.Tensor, mask: torch.Tensor | None = None):
        """The mean squared (or absolute) error over the steps that have a target (or `mask`), and their count."""
        if mask is None:
            mask = ~torch.isnan(y)
        count = mask.sum()
        err = torch.where(mask, out - torch.nan_to_num(y), 0.0)
        return point_error(err, self.power).sum() / count.clamp(min=1), count

    def point(self, out: torch.Tensor) -> torch.Tensor:
        return out


class MedianHead(PointHead):
    """A point forecast trained by the mean absolute error: the median of each next value,
    robust to outliers (`--loss mae`)."""

    power = 1


class GaussianHead(nn.Linear):
    """A Gaussian of each output's next value: its mean and its scale (softplus, so > 0),
    trained by the negative log-likelihood on the standardised scale (NaN: no target).
    `point` is the mean; `quantile` and `sample` are the distribution's."""

    probabilistic = True
    PARAMS = 2
    MIN_SCALE = 1e-4  # of the standardised scale: a floor, so that the likelihood stays finite

    def __init__(self, hidden: int, n_out: int):
        super().__init__(hidden, self.PARAMS * n_out)
        self.n_out = n_out

    def parts(self, out: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """The distribution's parameters from the layer's outputs [..., PARAMS * n_out]."""
        loc, raw = out.split(self.n_out, dim=-1)[:2]
        return loc, nn.functional.softplus(raw) + self.MIN_SCALE

    def distribution(self, out: torch.Tensor):
        return torch.distributions.Normal(*self.parts(out))

    def loss(self, out: torch.Tensor, y: torch.Tensor, mask: torch.Tensor | None = None):
        """The mean negative log-likelihood over the steps that have a target, and their count."""
        if mask is None:
            mask = ~torch.isnan(y)
        count = mask.sum()
        nll = -self.distribution(out).log_prob(torch.nan_to_num(y))
        return torch.where(mask, nll, 0.0).sum() / count.clamp(min=1), count

    def point(self, out: torch.Tensor) -> torch.Tensor:
        return self.parts(out)[0]

    def quantile(self, out: torch.Tensor, q: float) -> torch.Tensor:
        loc, scale = self.parts(out)
        return loc + scale * torch.distributions.Normal(0.0, 1.0).icdf(torch.tensor(q, dtype=out.dtype))

    def sample(self, out: torch.Tensor) -> torch.Tensor:
        """One draw of each next value (torch's global generator: `--seed` sets it)."""
        return self.distribution(out).sample()


class StudentTHead(GaussianHead):
    """A Student-t of each output's next value: location, scale and degrees of freedom
    (2 + softplus: more than 2, so the mean and variance exist), for heavy tails."""

    PARAMS = 3

    def parts(self, out: torch.Tensor) -> tuple[torch.Tensor, ...]:
        loc, raw, raw_df = out.split(self.n_out, dim=-1)
        return loc, nn.functional.softplus(raw) + self.MIN_SCALE, 2.0 + nn.functional.softplus(raw_df)

    def distribution(self, out: torch.Tensor):
        loc, scale, df = self.parts(out)
        return torch.distributions.StudentT(df, loc, scale)

    def quantile(self, out: torch.Tensor, q: float) -> torch.Tensor:
        loc, scale, df = self.parts(out)
        return loc + scale * t_quantile(df, q)


def t_quantile(df: torch.Tensor, q: float) -> torch.Tensor:
    """The standard Student-t's quantile q at `df` degrees of freedom (torch has no icdf of
    it), for any number of rows: exact on a grid of 4096 df from 2 to 10^5 (`_t_quantiles`),
    interpolated in log df between (beyond 10^5 it is the normal's, within 1e-5)."""
    grid = torch.logspace(math.log10(2.0), 5.0, 4096, dtype=torch.float64)
    at = torch.log(df.double().clamp(2.0, 1e5))
    logs = torch.log(grid)
    i = torch.searchsorted(logs, at).clamp(1, len(grid) - 1)
    w = (at - logs[i - 1]) / (logs[i] - logs[i - 1])
    values = _t_quantiles(grid, q)
    return (values[i - 1] + w * (values[i] - values[i - 1])).to(df.dtype)


def _t_quantiles(d: torch.Tensor, q: float) -> torch.Tensor:
    """The quantile q of the standard Student-t at each of `d`: bisection on `t_cdf`."""
    lo, hi = torch.full_like(d, -1e3), torch.full_like(d, 1e3)
    for _ in range(60):
        mid = (lo + hi) / 2
        below = t_cdf(mid, d) < q
        lo, hi = torch.where(below, mid, lo), torch.where(below, hi, mid)
    return (lo + hi) / 2


def t_cdf(x: torch.Tensor, df: torch.Tensor) -> torch.Tensor:
    """The standard Student-t's CDF at x with df degrees of freedom, elementwise (torch has
    none): 1/2 + the density's integral from 0, by 64-point Gauss-Legendre on u = atan(t)
    (a smooth integrand on a finite range)."""
    nodes, weights = (torch.from_numpy(a).to(x.dtype) for a in np.polynomial.legendre.leggauss(64))
    d = df[..., None]
    log_norm = torch.lgamma((d + 1) / 2) - torch.lgamma(d / 2) - 0.5 * torch.log(d * math.pi)
    u = torch.atan(x)[..., None] * (nodes + 1) / 2  # [..., 64] points on [0, atan x]
    t = torch.tan(u)
    density = torch.exp(log_norm - (d + 1) / 2 * torch.log1p(t * t / d)) / torch.cos(u) ** 2
    return 0.5 + (density * weights).sum(-1) * torch.atan(x) / 2


class MembersHead(nn.Linear):
    """The point heads of an ensemble's K members side by side: member k reads its own
    units of the state (`SeqModel` keeps the members apart) and gives its own n_out values.
    Trained by the sum of the members' mean squared (`power` 2) or absolute (1) errors, so
    each member's gradient is the one it would have alone, whatever the optimizer; `point`
    is their median: of their paths where the outputs are `steps` > 1 steps of differences
    at `lags` (set from the checkpoint's --diff)."""

    probabilistic = False

    def __init__(self, hidden: int, n_out: int, members: int, power: int = 2, steps: int = 1):
        super().__init__(hidden, members * n_out)
        self.members, self.n_out, self.power, self.steps = members, n_out, power, steps
        self.lags: tuple[int, ...] = ()

    def each(self, out: torch.Tensor) -> torch.Tensor:
        """The members' outputs [..., K, n_out]."""
        return out.unflatten(-1, (self.members, self.n_out))

    def loss(self, out: torch.Tensor, y: torch.Tensor, mask: torch.Tensor | None = None):
        """The sum of the members' mean squared (or absolute) errors over the steps that have a
        target, and their count."""
        if mask is None:
            mask = ~torch.isnan(y)
        err = torch.where(mask[..., None, :], self.each(out) - torch.nan_to_num(y)[..., None, :], 0.0)
        count = mask.sum()
        return point_error(err, self.power).sum() / count.clamp(min=1), count

    def forward(self, state: torch.Tensor) -> torch.Tensor:
        """Each member's head on its own units only: K small products, not one K times as
        wide (the weights between members are zero)."""
        k, n = self.members, self.n_out
        own = self.weight.view(k, n, k, -1).diagonal(dim1=0, dim2=2).permute(2, 0, 1)  # [K, n_out, hidden]
        out = torch.einsum("...kh,koh->...ko", state.unflatten(-1, (k, -1)), own)
        return out.flatten(-2) + self.bias

    def point(self, out: torch.Tensor) -> torch.Tensor:
        """The members' median (the mean of the middle two for an even K). Of H-step
        forecasts of differences, the median of the members' paths (each member's
        differences integrated over the H steps), given back as the differences of that
        path: the median of the forecasts of the series, not a sum of medians of steps.
        Integration is linear and the scaling positive, so it is taken on the network's scale."""
        each = self.each(out)
        if not self.lags or self.steps == 1:
            return _middle(each, -2)
        paths = _integrated(each.unflatten(-1, (self.steps, -1)).double(), self.lags)  # [..., K, H, F]; sums in float64
        return _differenced(_middle(paths, -3), self.lags).flatten(-2).to(out.dtype)


def _middle(x: torch.Tensor, dim: int) -> torch.Tensor:
    """The median along `dim` (the mean of the middle two for an even count)."""
    ranked, k = x.sort(dim=dim).values, x.shape[dim]
    return (ranked.select(dim, (k - 1) // 2) + ranked.select(dim, k // 2)) / 2


def _integrated(d: torch.Tensor, lags: tuple[int, ...]) -> torch.Tensor:
    """Steps of differences at `lags` in turn [..., H, F] as the path they make from a zero
    past: each lag undone, the last first (a running sum of every lag-th step)."""
    for lag in reversed(lags):
        h = d.shape[-2]
        padded = nn.functional.pad(d, (0, 0, 0, -h % lag))
        d = padded.unflatten(-2, (-1, lag)).cumsum(-3).flatten(-3, -2)[..., :h, :]
    return d


def _differenced(path: torch.Tensor, lags: tuple[int, ...]) -> torch.Tensor:
    """`_integrated` undone: a path [..., H, F] from a zero past as its differences at `lags`."""
    for lag in lags:
        path = torch.cat([path[..., :lag, :], path[..., lag:, :] - path[..., :-lag, :]], -2)
    return path


HEADS = {"mse": PointHead, "mae": MedianHead, "gaussian": GaussianHead, "studentt": StudentTHead}


class SeqModel(nn.Module):
    """Maps inputs [batch, steps, n_in] to the head's outputs [batch, steps, n_out],
    carrying a state: h for rnn and gru, (h, c) for lstm."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        one = replace(config, members=1)
        members = [SeqModel(one).state_dict() for _ in range(config.members)] if config.members > 1 else []
        cell = CELLS[config.cell]
        extra = {"nonlinearity": "tanh"} if config.cell == "rnn" else {}
        self.rnn = getattr(nn, cell.module)(
            config.n_in,
            config.width,
            num_layers=config.layers,
            dropout=config.dropout if config.layers > 1 else 0.0,
            batch_first=True,
            **extra,
        )
        n_out = config.n_out * config.horizon
        if config.members > 1:
            self.head = MembersHead(config.width, n_out, config.members, HEADS[config.loss].power, config.horizon)
        else:
            self.head = HEADS[config.loss](config.hidden, n_out)
        shape = (2 if config.cell == "lstm" else 1, config.layers, 1, config.width)
        self.start = nn.Parameter(torch.zeros(shape)) if config.learned_start else None
        if config.cell == "lstm":
            set_forget_bias(self.rnn, 1.0)
        if config.members > 1:
            self._keep_apart(members)

    def _keep_apart(self, members: list[dict]) -> None:
        """An ensemble: K networks as one, each member's units reading only its own (and
        the input). Each starts as a network of its own would (`members`: the first is the
        one network of the same seed); the weights between them start at zero and stay
        zero, as `_recur` and the head read only each member's own block (no gradient
        reaches the rest). Their weights lie side by side in one checkpoint, whose check
        refuses weights between members (`apart`)."""
        like = self.state_dict()
        self.load_state_dict(joined_weights(members, self.config, like))
        ones = {name: torch.ones_like(w) for name, w in members[0].items()}
        masks = joined_weights([ones] * self.config.members, self.config, like)  # 1 where a member's weight is
        for name, mask in masks.items():
            if not bool(mask.all()):  # not the first layer's input weights or the biases: each row a member's
                self.register_buffer(_mask_name(name), mask, persistent=False)

    def initial(self, n: int):
        """The state n series start from, in the module's layout: the learned start where
        the model has one (stateful training, where a zero state only ever meets the
        start of a series), else zero."""
        cfg = self.config
        if self.start is None:
            s = self.head.weight.new_zeros(2 if cfg.cell == "lstm" else 1, cfg.layers, n, cfg.width)
        else:
            s = self.start.expand(-1, -1, n, -1).contiguous()
        return (s[0], s[1]) if cfg.cell == "lstm" else s[0]

    def forward(self, x: torch.Tensor, state=None, lengths: np.ndarray | None = None):
        """Outputs [batch, steps, n_out] and the state after the last step. With `lengths`
        (sorted longest first), series i ends after lengths[i] steps: the state is taken
        there (the steps past its end, padding, are skipped). No state: the series' start."""
        if state is None and self.start is not None:
            state = self.initial(x.shape[0])
        if lengths is None or (lengths == x.shape[1]).all():
            out, state = self._recur(x, state)
            return self.head(out), state
        packed = pack_padded_sequence(x, torch.as_tensor(lengths), batch_first=True)
        out, state = self._recur(packed, state)
        out, _ = pad_packed_sequence(out, batch_first=True, total_length=x.shape[1])
        return self.head(out), state

    def apart(self, name: str) -> torch.Tensor | None:
        """An ensemble's mask of weight `name`: 1 within a member, 0 between members (which
        must stay 0); None where every weight is some member's."""
        return getattr(self, _mask_name(name), None)

    @property
    def _names(self) -> list[str]:
        kinds = ("weight_ih", "weight_hh", "bias_ih", "bias_hh")
        return [f"{kind}_l{i}" for i in range(self.config.layers) for kind in kinds]

    def _each(self, name: str) -> tuple[torch.Tensor, ...]:
        """Each member's part of the recurrent weight `name` (`member_index`'s layout), taken
        in one differentiable step for all members."""
        k, h = self.config.members, self.config.hidden
        w = getattr(self.rnn, name)
        gates = w.shape[0] // (k * h)
        if w.dim() == 1:  # a bias: each gate's rows, member after member
            return w.view(gates, k, h).transpose(0, 1).reshape(k, -1).unbind()
        if name == "weight_ih_l0":  # reads the input, which every member shares
            return w.view(gates, k, h, -1).transpose(0, 1).reshape(k, gates * h, -1).unbind()
        own = w.view(gates, k, h, k, h).diagonal(dim1=1, dim2=3)  # [gates, h, h, K]: each member's own block
        return own.permute(3, 0, 1, 2).reshape(k, gates * h, h).unbind()

    def _recur(self, x, state):
        """The recurrence over x (a tensor or a packed sequence). An ensemble runs member
        after member, each on its own weights and units: K fused recurrences of `hidden`
        units cost about K times one, where one of K x `hidden` units costs about K^2 times."""
        cfg = self.config
        if cfg.members == 1:
            return self.rnn(x, state)
        packed = isinstance(x, PackedSequence)
        if state is None:
            state = self.initial(int(x.batch_sizes[0]) if packed else x.shape[0])
        self.rnn.check_forward_args(x.data if packed else x, state, x.batch_sizes if packed else None)
        if packed and x.sorted_indices is not None:
            state = self.rnn.permute_hidden(state, x.sorted_indices)
        recur, h, dropout = getattr(torch, CELLS[cfg.cell].fused), cfg.hidden, self.rnn.dropout
        members = zip(*(self._each(name) for name in self._names))
        outs, states = [], []
        for k, own in enumerate(members):
            part = map_state(lambda s: s[..., k * h : (k + 1) * h].contiguous(), state)  # noqa: B023 (called at once)
            if packed:
                out, *new = recur(x.data, x.batch_sizes, part, own, True, cfg.layers, dropout, self.training, False)
            else:
                out, *new = recur(x, part, own, True, cfg.layers, dropout, self.training, False, True)
            outs.append(out)
            states.append(new)
        state = tuple(torch.cat(s, -1) for s in zip(*states))
        state = state if cfg.cell == "lstm" else state[0]
        out = torch.cat(outs, -1)
        if packed:
            state = self.rnn.permute_hidden(state, x.unsorted_indices) if x.unsorted_indices is not None else state
            return PackedSequence(out, x.batch_sizes, x.sorted_indices, x.unsorted_indices), state
        return out, state


def _mask_name(parameter: str) -> str:
    return "members_" + parameter.replace(".", "_")


def member_index(name: str, shape: tuple, config: ModelConfig, k: int) -> tuple:
    """The index of member k's part of the ensemble's weight `name` (of `shape`): its units'
    rows in each gate, its own columns of the state, its head's rows."""
    h, width = config.hidden, config.width
    units = torch.arange(k * h, (k + 1) * h)
    rows = slice(None)
    if name.startswith("rnn."):
        rows = torch.cat([g * width + units for g in range(shape[0] // width)])
    elif name.startswith("head."):
        per = shape[0] // config.members
        rows = torch.arange(k * per, (k + 1) * per)
    if name == "start":
        return (slice(None), slice(None), slice(None), units)
    reads_state = name.startswith("rnn.weight_hh") or (name.startswith("rnn.weight_ih") and not name.endswith("l0"))
    if reads_state or name == "head.weight":
        return (rows[:, None], units[None, :])
    return (rows,)


def member_weights(weights: dict, config: ModelConfig, k: int) -> dict:
    """Member k of an ensemble's weights, as the weights of a network of its own."""
    return {name: w[member_index(name, tuple(w.shape), config, k)].clone() for name, w in weights.items()}


def joined_weights(members: list[dict], config: ModelConfig, like: dict | None = None) -> dict:
    """The weights of an ensemble (`config.members` = len(members)) made of these networks'
    weights: each in its own place, zero between them (shaped `like` an ensemble's)."""
    like = SeqModel(config).state_dict() if like is None else like
    joined = {name: torch.zeros_like(w) for name, w in like.items()}
    for k, weights in enumerate(members):
        for name, w in weights.items():
            joined[name][member_index(name, tuple(joined[name].shape), config, k)] = w
    return joined


def over_series(model: SeqModel, x: torch.Tensor, lengths: np.ndarray, final_state: bool = False):
    """The model over series stored end to end (x [rows, n_in]; series i is the next
    lengths[i] rows), each from its start (`SeqModel.initial`), without gradients.

    Returns outputs [rows, n_out] and, with `final_state`, the state after each series'
    last step in the module's layout ([layers, series, hidden]; a pair for an LSTM). Series
    run in groups of similar length (`length_groups`) and a series too long for one call
    in consecutive chunks with its state carried, so memory follows the rows, not the
    longest series times the number of series.
    """
    cfg = model.config
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    out = torch.empty(x.shape[0], model.head.out_features, dtype=x.dtype, device=x.device)
    shape = (cfg.layers, len(lengths), cfg.width)
    final = None
    if final_state:
        final = tuple(x.new_zeros(shape) for _ in range(2)) if cfg.cell == "lstm" else x.new_zeros(shape)
    cells = max(1024, BUDGET // cfg.width)
    with torch.no_grad():
        for group in length_groups(lengths, cells):
            lens = lengths[group]
            chunk = int(lens[0]) if len(group) > 1 else min(int(lens[0]), cells)
            state = None
            for t0 in range(0, int(lens[0]), chunk):
                pos = t0 + np.arange(min(chunk, int(lens[0]) - t0))
                inside = torch.from_numpy(pos[None, :] < lens[:, None]).to(x.device)
                rows = torch.from_numpy(offsets[group][:, None] + np.minimum(pos[None, :], lens[:, None] - 1)).to(
                    x.device
                )
                o, state = model(torch.where(inside[..., None], x[rows], 0.0), state, np.clip(lens - t0, 1, len(pos)))
                out[rows[inside]] = o[inside]
            if final_state:
                index = torch.from_numpy(group).to(x.device)
                if cfg.cell == "lstm":
                    for whole, part in zip(final, state):
                        whole[:, index] = part
                else:
                    final[:, index] = state
    return out, final


def set_forget_bias(lstm: nn.LSTM, value: float) -> None:
    """Forget-gate bias `value` (Gers et al. 2000; Jozefowicz et al. 2015; Keras' default).

    PyTorch starts it at about 0, so the memory halves at every step at initialisation.
    The gates are stacked (input, forget, cell, output); the bias is b_ih + b_hh.
    """
    hidden = lstm.hidden_size
    with torch.no_grad():
        for name, bias in lstm.named_parameters():
            if name.startswith("bias_ih"):
                bias[hidden : 2 * hidden] = value
            elif name.startswith("bias_hh"):
                bias[hidden : 2 * hidden] = 0.0


def map_state(fn, state):
    """`fn` applied to a cell's state: h, or each of an LSTM's (h, c); None stays None."""
    if state is None:
        return None
    return tuple(fn(s) for s in state) if isinstance(state, tuple) else fn(state)


def parts(state) -> tuple:
    """The tensors of a cell's state: (h,), or an LSTM's (h, c)."""
    return state if isinstance(state, tuple) else (state,)


def detach(state):
    """Cut the gradient at a chunk boundary but keep the values (truncated BPTT)."""
    return map_state(torch.Tensor.detach, state)


class Stepper:
    """The model one step at a time: torch's cell functions over the model's own weights.

    For free-running generation, where each step waits for the one before: without the
    module machinery a step costs a fraction of a one-step call of the fused module.
    """

    BLOCK = 4096  # rows stepped at a time

    def __init__(self, model: SeqModel):
        cfg = model.config
        self.lstm = cfg.cell == "lstm"
        self.cell = getattr(torch, CELLS[cfg.cell].step)
        names = ("weight_ih", "weight_hh", "bias_ih", "bias_hh")
        self.weights = [tuple(getattr(model.rnn, f"{n}_l{i}") for n in names) for i in range(cfg.layers)]
        self.head = model.head

    def split(self, state) -> list:
        """The module's state ([layers, B, H] tensors) as one state per layer."""
        if self.lstm:
            h, c = state
            return [(h[i], c[i]) for i in range(len(self.weights))]
        return [state[i] for i in range(len(self.weights))]

    def __call__(self, x: torch.Tensor, states: list, draw: bool = False, raw: bool = False):
        """x [B, n_in] -> the point forecast [B, n_out] (with `draw`, a draw from the head's
        distribution; with `raw`, the head's outputs) and the new per-layer states. A batch
        of more than BLOCK rows steps BLOCK rows at a time: on the CPU, where forecasts run,
        a step of 100,000 rows at once leaves the cache and costs twice as much per row."""
        if len(x) <= self.BLOCK:
            out, new = self._step(x, states)
        else:
            blocks = [
                self._step(x[i : i + self.BLOCK], [map_state(lambda s: s[i : i + self.BLOCK], st) for st in states])  # noqa: B023 (called at once)
                for i in range(0, len(x), self.BLOCK)
            ]
            out = torch.cat([o for o, _ in blocks])
            new = [_joined([b[layer] for _, b in blocks]) for layer in range(len(states))]
        return (out if raw else self.head.sample(out) if draw else self.head.point(out)), new

    def _step(self, x: torch.Tensor, states: list) -> tuple[torch.Tensor, list]:
        new = []
        for weights, state in zip(self.weights, states):
            state = self.cell(x, state, *weights)
            x = state[0] if self.lstm else state
            new.append(state)
        return nn.functional.linear(x, self.head.weight, self.head.bias), new


def _joined(states: list):
    """One layer's states of consecutive blocks of rows as one state."""
    if isinstance(states[0], tuple):
        return tuple(torch.cat(s) for s in zip(*states))
    return torch.cat(states)
