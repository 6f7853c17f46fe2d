"""`seqtool gradnorm`: how the gradient of the loss flows back through time.

For a batch of sequences, the network is unrolled step by step in float64 over the same
weights as the trained (or fresh) model, and ||dL/dh_t|| is read off every hidden state
h_t of every layer. That is the total derivative through the recurrence (every path from
h_t to the loss: through later steps and through the layers above), not only the direct
path from the output at step t. float64 matters: over 100 steps a tanh RNN's gradient
falls below 1e-38, where float32 reports a plain 0.

Also reported: the norm of the gradient of every parameter and their global norm (the
`grad_norm` that `train --log` records, for the same loss), the ratio
||dL/dh_1|| / ||dL/dh_T||, and the largest singular value of each recurrent weight
matrix (above 1, explosions can happen; below 1, gradients vanish).
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from seqtool import outputs
from seqtool.config import CELLS, GRAD_LOSSES, GRAD_TASKS, ModelConfig
from seqtool.data.examples import NEXT_STEP, inputs_and_targets, predicted, task_of
from seqtool.data.generators import KINDS
from seqtool.data.reading import read_series
from seqtool.data.scaling import Scaling
from seqtool.data.tables import TABLE_FORMATS, SeriesTable, Table, write_table
from seqtool.errors import SeqtoolError
from seqtool.forecast.forecaster import Forecaster
from seqtool.limits import check_all, fits_in_memory
from seqtool.model.network import SeqModel, set_forget_bias
from seqtool.threads import use as use_threads
from seqtool.threads import work


@dataclass
class Report:
    """The gradnorm of one cell: the per-step table rows and the summary numbers."""

    cell: str
    grad: np.ndarray  # [layers, T, batch]: ||dL/dh_t|| per sequence
    params: dict[str, float]
    sigma: dict[str, float]
    extra: dict = field(default_factory=dict)

    @property
    def last(self) -> int:
        """The last step t (from 1) whose state the loss reaches: T, or before it where the
        last steps have no target (a next-step model's last step predicts nothing)."""
        reached = np.flatnonzero(self.grad[-1].mean(axis=1) > 0)
        return int(reached[-1]) + 1 if len(reached) else self.grad.shape[1]

    @property
    def ratio(self) -> float:
        """||dL/dh_1|| / ||dL/dh_last|| for the top layer, means over the batch."""
        mean = self.grad[-1].mean(axis=1)
        return float(mean[0] / mean[self.last - 1]) if mean[self.last - 1] > 0 else math.inf

    def verdict(self) -> str:
        r = self.ratio
        return "vanishing" if r < 1e-2 else "exploding" if r > 1e2 else "neither vanishing nor exploding"


def gradnorm(
    model: str | Path | None = None,
    data=None,
    *,
    cells: tuple[str, ...] = tuple(CELLS),
    hidden: int = ModelConfig.hidden,
    layers: int = ModelConfig.layers,
    init_scale: float | None = None,
    forget_bias: float = 1.0,
    seed: int = 0,
    task: str = "adding",
    length: int = 100,
    batch: int = 64,
    loss: str = "last",
    summary: str | Path | None = None,
    output: str | Path | None = None,
    quiet: bool = False,
    threads: int | None = None,
) -> tuple[Table, list[Report]]:
    """`seqtool gradnorm`: ||dL/dh_t|| for t = 1..T for a checkpoint, or for fresh models
    of each of `cells`, on a table or on a generated `task` of `length` steps; the table
    goes to `output` (a file, '-' for stdout, None: returned only).

    A fresh LSTM starts with forget-gate bias `forget_bias` (1, as `train` uses; PyTorch's
    own init gives 0)."""
    if loss not in GRAD_LOSSES:
        raise SeqtoolError(f"--loss must be last or all, got {loss!r}")
    if model is None and (not cells or any(c not in CELLS for c in cells)):
        raise SeqtoolError(f"--cell takes {', '.join(CELLS)} (comma-separated), got {','.join(cells)!r}")
    check_all(
        grad_batch=batch, grad_length=length, hidden=hidden, layers=layers,
        init_scale=init_scale, forget_bias=forget_bias, seed=seed, threads=threads,
    )  # fmt: skip
    outputs.check([(output, TABLE_FORMATS, "table"), (summary, None, "summary")], inputs=[model, data])
    if model is None:
        _fits(batch, length, layers, hidden, "fresh models")
    data = _data(data, task, length, batch, seed)
    if model is not None:
        reports = [_of_checkpoint(model, data, batch, loss, threads)]
    else:
        fresh = dict(
            hidden=hidden, layers=layers, init_scale=init_scale, forget_bias=forget_bias, seed=seed, threads=threads
        )
        reports = _of_fresh_models(cells, data, batch, loss, **fresh)
    out = _table(reports)
    _report(reports, summary, quiet)
    if output is not None:
        write_table(out, output)
    return out, reports


def _of_checkpoint(path, data, batch: int, loss: str, threads: int | None) -> Report:
    m = Forecaster(path)
    table, _ = m.scaling.levelled(m.read(data), None)
    xs, ys = inputs_and_targets(table, m.task, m.scaling.diff, m.time, m.horizon, m.covariates, m.gaps, m.statics)
    x, y = _tensors(table, xs, ys, m.scaling, batch)
    return _measure(m.net, x, y, loss, threads)


def _of_fresh_models(
    cells, data, batch: int, loss: str, *, hidden, layers, init_scale, forget_bias, seed, threads
) -> list[Report]:
    """A fresh model of each cell, all from the same seed, standardised on the data itself."""

    table = read_series(data)
    kind = task_of(table)
    xs, ys = inputs_and_targets(table, kind)
    scaling = Scaling.fit(xs, ys, kind == NEXT_STEP, table.x_names, table.y_names, table.source)
    x, y = _tensors(table, xs, ys, scaling, batch)
    n_out = len(predicted(kind, table.x_names, table.y_names))
    reports = []
    for cell in cells:
        torch.manual_seed(seed)
        net = SeqModel(ModelConfig(len(table.x_names), n_out, cell, hidden, layers))
        if cell == "lstm" and forget_bias != 1.0:
            set_forget_bias(net.rnn, forget_bias)
        if init_scale is not None:
            scale_recurrent(net, init_scale)
        reports.append(_measure(net, x, y, loss, threads))
    return reports


def scale_recurrent(net, radius: float) -> None:
    """Rescale each recurrent matrix (each gate's h x h block) to spectral radius `radius`."""
    check_all(init_scale=radius)
    h = net.config.width
    with torch.no_grad():
        for name, w in net.rnn.named_parameters():
            if name.startswith("weight_hh"):
                for k in range(0, w.shape[0], h):
                    block = w[k : k + h]
                    rho = torch.linalg.eigvals(block.double()).abs().max()
                    block.mul_(radius / float(rho))


def unrolled(net, x):
    """The network unrolled step by step in float64, with the same weights as `net`.

    Returns the outputs [B, T, n_out]; hs[layer][t], the hidden state h_t of each layer
    at each step, as graph tensors whose .grad, after backward, is dL/dh_t; and the
    parameters as float64 leaves, named as in `net`, whose .grad is dL/dparameter.
    """
    cfg = net.config
    p = {n: w.detach().double().requires_grad_() for n, w in net.named_parameters()}
    batch, steps, _ = x.shape
    hs: list[list] = [[] for _ in range(cfg.layers)]
    layer_in = [x[:, t] for t in range(steps)]
    for layer in range(cfg.layers):
        w_ih, w_hh = p[f"rnn.weight_ih_l{layer}"], p[f"rnn.weight_hh_l{layer}"]
        b = p[f"rnn.bias_ih_l{layer}"], p[f"rnn.bias_hh_l{layer}"]
        h = torch.zeros(batch, cfg.width, dtype=torch.float64)
        c = torch.zeros_like(h)
        if "start" in p:  # a learned start (SeqModel.initial)
            h, c = h + p["start"][0, layer, 0], c + p["start"][-1, layer, 0]
        for t in range(steps):
            gi = layer_in[t] @ w_ih.T + b[0]
            gh = h @ w_hh.T + b[1]
            if cfg.cell == "rnn":
                h = torch.tanh(gi + gh)
            elif cfg.cell == "lstm":
                i, f, g, o = (gi + gh).chunk(4, dim=1)
                c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
                h = torch.sigmoid(o) * torch.tanh(c)
            else:
                ir, iz, in_ = gi.chunk(3, dim=1)
                hr, hz, hn = gh.chunk(3, dim=1)
                r, z = torch.sigmoid(ir + hr), torch.sigmoid(iz + hz)
                h = (1 - z) * torch.tanh(in_ + r * hn) + z * h
            h.retain_grad()
            hs[layer].append(h)
        layer_in = hs[layer]
    top = torch.stack(hs[-1], dim=1)
    out = torch.func.functional_call(net.head, {"weight": p["head.weight"], "bias": p["head.bias"]}, (top,))
    return out, hs, p


def _measure(net, x, y, loss: str, threads: int | None) -> Report:
    cfg = net.config
    _fits(x.shape[0], x.shape[1], cfg.layers, cfg.width, cfg.cell)
    use_threads(threads, work(cfg, x.shape[0]))
    net = net.eval()
    out, hs, params = unrolled(net, x)
    mask = ~torch.isnan(y)
    if loss == "last":  # the last step of each sequence that has a target
        steps = torch.arange(y.shape[1]).expand(y.shape[0], -1)
        has = mask.any(dim=2)
        last = torch.where(has, steps, -1).max(dim=1).values
        mask = mask & (steps == last[:, None])[..., None]
    value, _ = net.head.loss(out, y, mask)
    value.backward()
    grad = np.array([[h.grad.norm(dim=1).numpy() for h in layer] for layer in hs])
    norms = {n: float(w.grad.norm()) for n, w in params.items()}
    sigma = {}
    h = net.config.width
    for n, w in net.rnn.named_parameters():
        if n.startswith("weight_hh"):
            sigma[n] = float(torch.linalg.matrix_norm(w.detach().double(), ord=2))
            if w.shape[0] > h:
                for k, gate in enumerate(CELLS[net.config.cell].gates):
                    sigma[f"{n}[{gate}]"] = float(
                        torch.linalg.matrix_norm(w.detach().double()[k * h : (k + 1) * h], ord=2)
                    )
    return Report(net.config.cell, grad, norms, sigma, {"loss": float(value.detach())})


def _fits(batch: int, steps: int, layers: int, hidden: int, what: str) -> None:
    """The float64 graph of the unrolled network, forward and backward, must fit in memory."""
    fits_in_memory(8.0 * 28 * batch * steps * layers * hidden, f"gradnorm of {what} over {batch} x {steps} steps")


def _data(data, task: str, length: int, batch: int, seed: int):
    """The given table, or a generated one: `batch` sequences of `length` steps."""
    if data is not None:
        return data
    if task not in GRAD_TASKS:
        raise SeqtoolError(f"--task must be one of {', '.join(GRAD_TASKS)}, got {task!r}")
    return KINDS[task](n_series=batch, length=length, seed=seed)


def _tensors(table: SeriesTable, xs: list, ys: list, scaling: Scaling, batch: int):
    """Standardised [B, T, F] inputs and [B, T, G] targets of the first `batch` series, cut
    to their common length."""
    xs, ys = xs[:batch], ys[:batch]
    steps = min(len(a) for a in xs)
    if steps < 2:
        raise SeqtoolError(f"{table.source}: series too short to follow a gradient through time")
    x = scaling.inputs(np.stack([a[:steps] for a in xs]), table.x_names, table.source, np.float64)
    y = scaling.targets(np.stack([a[:steps] for a in ys]), np.float64)
    return torch.from_numpy(x), torch.from_numpy(y)


def _table(reports: list[Report]) -> Table:
    """cell, layer, t (1..T), grad_norm (mean over the batch), its 10th and 90th percentiles."""
    cols: dict[str, list] = {k: [] for k in ("cell", "layer", "t", "grad_norm", "grad_norm_lo", "grad_norm_hi")}
    for r in reports:
        layers, steps, _ = r.grad.shape
        for layer in range(layers):
            g = r.grad[layer]
            cols["cell"] += [r.cell] * steps
            cols["layer"] += [str(layer)] * steps
            cols["t"] += list(range(1, steps + 1))
            cols["grad_norm"] += g.mean(axis=1).tolist()
            cols["grad_norm_lo"] += np.percentile(g, 10, axis=1).tolist()
            cols["grad_norm_hi"] += np.percentile(g, 90, axis=1).tolist()
    return Table(
        {k: np.array(v) if k in ("cell", "layer") else np.array(v, dtype=float) for k, v in cols.items()}, "gradnorm"
    )


def _report(reports: list[Report], path, quiet: bool) -> None:
    if path is not None:
        doc = {
            r.cell: {
                "ratio_first_to_last": r.ratio,
                "verdict": r.verdict(),
                "grad_norm_first": float(r.grad[-1, 0].mean()),
                "grad_norm_last": float(r.grad[-1, r.last - 1].mean()),
                "param_grad_norm": math.sqrt(sum(v * v for v in r.params.values())),
                "param_grad_norms": r.params,
                "largest_singular_value": r.sigma,
                "loss": r.extra["loss"],
            }
            for r in reports
        }
        outputs.write_json(path, doc)
    if quiet:
        return
    for r in reports:
        top = max((v for k, v in r.sigma.items() if "[" not in k), default=float("nan"))
        print(
            f"seqtool: gradnorm {r.cell}: gradient at t=1 is {r.ratio:.2g} of that at t={r.last}: "
            f"{r.verdict()} (largest singular value of W_hh {top:.3g})",
            file=sys.stderr,
        )
