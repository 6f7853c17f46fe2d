"""Speed: seqtool against the tutorial loop, raw PyTorch, and a one-series-at-a-time rollout.

Every ratio compares two things measured in this run, on this machine, interleaved
(A B A B) where a run is short enough to repeat. The baselines are written plainly here.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from .common import BIN, Row, peak_rss_mb

# --- baselines, written as people write them --------------------------------------------


def tutorial_loop(steps: int = 6000, seed: int = 0):
    """The loop copied from blog posts: a 1-layer tanh RNN, hidden 16, batch 1, one 50-point
    sine window per step (start drawn from {0, 1, 2}), Adam lr 0.01."""
    import torch
    from torch import nn

    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    rnn, head = nn.RNN(1, 16, batch_first=True), nn.Linear(16, 1)
    opt = torch.optim.Adam([*rnn.parameters(), *head.parameters()], lr=0.01)
    for _ in range(steps):
        start = rng.integers(0, 3)
        x = torch.tensor(np.sin(np.linspace(start, start + 10, 50)), dtype=torch.float32).view(1, 50, 1)
        out, _ = rnn(x[:, :-1])
        loss = nn.functional.mse_loss(head(out), x[:, 1:])
        opt.zero_grad()
        loss.backward()
        opt.step()
    return rnn, head


def raw_loop(cell: str, windows, steps: int, hidden: int = 64, batch: int = 256) -> float:
    """A minimal hand-written loop, same model and batch as seqtool's: seconds per step."""
    import torch
    from torch import nn

    torch.manual_seed(0)
    kind = {"rnn": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}[cell]
    net, head = kind(1, hidden, batch_first=True), nn.Linear(hidden, 1)
    opt = torch.optim.Adam([*net.parameters(), *head.parameters()], lr=1e-3)
    start = time.perf_counter()
    for _step in range(steps):
        idx = torch.randint(0, len(windows), (batch,))
        w = windows[idx]
        out, _ = net(w[:, :-1])
        loss = nn.functional.mse_loss(head(out), w[:, 1:])
        opt.zero_grad()
        loss.backward()
        opt.step()
    return (time.perf_counter() - start) / steps


def cell_rollout(model_path: Path, series: list[np.ndarray], warmup: int) -> list[np.ndarray]:
    """Free-running with an nn.LSTMCell, one series at a time, as tutorials write it."""
    import torch
    from torch import nn

    ckpt = torch.load(model_path, weights_only=True)
    w, cfg = ckpt["weights"], ckpt["model"]
    mean, std = float(ckpt["norm"]["x_mean"][0]), float(ckpt["norm"]["x_std"][0])
    cell, head = nn.LSTMCell(1, cfg["hidden"]), nn.Linear(cfg["hidden"], 1)
    for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
        getattr(cell, name).data.copy_(w[f"rnn.{name}_l0"])
    head.weight.data.copy_(w["head.weight"])
    head.bias.data.copy_(w["head.bias"])
    results = []
    with torch.no_grad():
        for x in series:
            z = torch.tensor((x - mean) / std, dtype=torch.float32)
            state, preds = None, []
            for t in range(warmup):
                state = cell(z[t].view(1, 1), state)
            pred = head(state[0])
            for _ in range(warmup, len(x)):
                preds.append(float(pred) * std + mean)
                state = cell(pred, state)
                pred = head(state[0])
            results.append(np.array(preds))
    return results


# --- the benchmarks -----------------------------------------------------------------------


def _tutorial_checkpoint(rnn, head, path: Path) -> None:
    """The tutorial's model as a seqtool checkpoint (raw scale: mean 0, std 1), so both
    tools are scored by the same predict/rollout code."""
    import torch

    from seqtool.model.checkpoint import save_checkpoint

    one, zero = torch.ones(1, dtype=torch.float64), torch.zeros(1, dtype=torch.float64)
    weights = {f"rnn.{k}": v for k, v in rnn.state_dict().items()} | {
        f"head.{k}": v for k, v in head.state_dict().items()
    }
    save_checkpoint({
        "model": {"n_in": 1, "n_out": 1, "cell": "rnn", "hidden": 16, "layers": 1, "dropout": 0.0},
        "data": {"x_names": ["x"], "y_names": [], "task": "next-step"},
        "norm": {"x_mean": zero, "x_std": one, "y_mean": zero, "y_std": one},
        "weights": weights,
    }, path)  # fmt: skip


def _scores(path: Path, fresh) -> tuple[float, float]:
    from seqtool.forecast.predict import predict
    from seqtool.forecast.rollout import rollout

    tf = predict(path, fresh, warmup=5, quiet=True)[1]["mse"]
    free = rollout(path, fresh, warmup=10, quiet=True)[1]["mse"]
    return tf, free


def time_to_accuracy(d: Path) -> list[Row]:
    from seqtool.config import TrainConfig
    from seqtool.data.generators import sine
    from seqtool.training.run import train

    fresh = sine(seed=1)
    data = sine(seed=0)
    # the smallest budget that reaches both targets
    chosen = None
    for steps in (500, 750, 1000, 1250, 1500, 2000):
        train(data, d / "s.pt", TrainConfig(steps=steps), quiet=True)
        tf, free = _scores(d / "s.pt", fresh)
        if tf <= 1e-5 and free <= 1e-4:
            chosen = (steps, tf, free)
            break
    walls: dict[str, list[float]] = {"tutorial": [], "seqtool": []}
    for _ in range(2):  # interleaved: A B A B
        start = time.perf_counter()
        rnn, head = tutorial_loop()
        walls["tutorial"].append(time.perf_counter() - start)
        start = time.perf_counter()
        train(data, d / "s.pt", TrainConfig(steps=chosen[0] if chosen else 2000), quiet=True)
        walls["seqtool"].append(time.perf_counter() - start)
    tut_s, seq_s = (statistics.median(walls[k]) for k in ("tutorial", "seqtool"))
    _tutorial_checkpoint(rnn, head, d / "tutorial.pt")
    tut_tf, tut_free = _scores(d / "tutorial.pt", fresh)
    # equal wall time: seqtool given the tutorial's wall time, in steps
    per_step = seq_s / (chosen[0] if chosen else 2000)
    equal_steps = int(tut_s / per_step)
    train(data, d / "eq.pt", TrainConfig(steps=equal_steps), quiet=True)
    eq_tf, eq_free = _scores(d / "eq.pt", fresh)
    steps, tf, free = chosen if chosen else (2000, *_scores(d / "s.pt", fresh))
    ratio = seq_s / tut_s
    return [
        Row("time to accuracy: seqtool / tutorial loop", ratio, "x", "<= 0.33", chosen is not None and ratio <= 1 / 3,
            f"seqtool reaches TF {tf:.2g}, free {free:.2g} with {steps} steps in {seq_s:.1f} s; the tutorial's "
            f"6000 steps take {tut_s:.1f} s and end at TF {tut_tf:.2g}, free {tut_free:.2g}"),
        Row("equal wall time: seqtool free-running MSE", eq_free, "", f"< tutorial's {tut_free:.2g}",
            eq_free < tut_free,
            f"seqtool with {tut_s:.1f} s ({equal_steps} steps): TF {eq_tf:.2g}, free {eq_free:.2g}"),
    ]  # fmt: skip


def training_overhead(d: Path) -> list[Row]:
    import torch

    from seqtool.config import TrainConfig
    from seqtool.data.generators import sine
    from seqtool.training.run import train

    data = sine(n_series=512, length=100, seed=0)
    x = torch.tensor(np.stack(data.split(data.x)), dtype=torch.float32)  # [512, 100, 1]
    windows = x.unfold(1, 51, 1).permute(0, 1, 3, 2).reshape(-1, 51, 1).contiguous()
    rows = []
    steps = 100
    for cell in ("rnn", "lstm", "gru"):
        ours, raw = [], []
        for _ in range(5):  # interleaved A B A B ...; the ratio of each pair, then their median
            result = train(
                data,
                d / "o.pt",
                TrainConfig(cell=cell, hidden=64, window=50, batch=256, steps=steps, val=0),
                quiet=True,
            )
            ours.append(result.seconds / steps)
            raw.append(raw_loop(cell, windows, steps))
        ratio = statistics.median(r / o for r, o in zip(raw, ours))
        rows.append(Row(f"training steps/s, {cell}: seqtool / raw PyTorch", ratio, "x", ">= 0.9", ratio >= 0.9,
                        f"{1 / statistics.median(ours):.1f} vs {1 / statistics.median(raw):.1f} steps/s; "
                        "hidden 64, window 50, batch 256"))  # fmt: skip
    return rows


def rollout_speed(d: Path) -> list[Row]:
    from seqtool.config import TrainConfig
    from seqtool.data.generators import sine
    from seqtool.forecast.rollout import rollout
    from seqtool.training.run import train

    train(sine(seed=0), d / "r.pt", TrainConfig(steps=300), quiet=True)
    big = sine(n_series=1000, length=1000, span=200, seed=3)
    start = time.perf_counter()
    ours, _ = rollout(d / "r.pt", big, warmup=10, quiet=True)
    batched = time.perf_counter() - start
    start = time.perf_counter()
    theirs = cell_rollout(d / "r.pt", big.split(big.x[:, 0]), warmup=10)
    one_by_one = time.perf_counter() - start
    agree = np.allclose(ours.columns["yhat"][ours.columns["phase"] == "free"], np.concatenate(theirs), atol=1e-4)
    one = sine(n_series=1, length=1000, span=200, seed=4)
    single = {"seqtool": [], "cell loop": []}
    for _ in range(5):
        start = time.perf_counter()
        rollout(d / "r.pt", one, warmup=10, quiet=True)
        single["seqtool"].append(time.perf_counter() - start)
        start = time.perf_counter()
        cell_rollout(d / "r.pt", one.split(one.x[:, 0]), warmup=10)
        single["cell loop"].append(time.perf_counter() - start)
    s_ours, s_theirs = statistics.median(single["seqtool"]), statistics.median(single["cell loop"])
    return [
        Row("rollout 1000 x 1000: speed-up over a one-series LSTMCell loop", one_by_one / batched, "x", ">= 50",
            one_by_one / batched >= 50 and agree,
            f"{batched:.2f} s vs {one_by_one:.1f} s; same forecasts: {agree}"),
        Row("rollout, one series of 1000: seqtool / LSTMCell loop time", s_ours / s_theirs, "x", "<= 1",
            s_ours <= s_theirs, f"{s_ours * 1e3:.0f} ms vs {s_theirs * 1e3:.0f} ms (checkpoint loading included)"),
    ]  # fmt: skip


def scale(d: Path) -> list[Row]:
    """Peak memory of training on a million rows (reading them: bench/tables.py)."""
    from seqtool.data.generators import sine
    from seqtool.data.tables import write_table

    table = sine(n_series=1000, length=1000, span=200, seed=0)
    rows = []
    for ext in ("csv", "npz"):
        path = d / f"big.{ext}"
        write_table(table, path)
        peak = peak_rss_mb([str(BIN / "seqtool"), "train", str(path), "--steps", "20", "-q", "-o", str(d / "big.pt")])
        rows.append(
            Row(f"train on 1,000,000 rows ({ext}): peak memory", peak, "MiB", "< 2048 MiB", peak < 2048,
                "`seqtool train big --steps 20`, whole process")
        )  # fmt: skip
    return rows


def gpu() -> list[Row]:
    import torch

    if not torch.cuda.is_available():
        return [Row("training on --device cuda", float("nan"), "", "recorded where a GPU is at hand", True,
                    "no GPU on this machine: not measured")]  # fmt: skip
    return []


def run() -> list[Row]:
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        return time_to_accuracy(d) + training_overhead(d) + rollout_speed(d) + scale(d) + gpu()
