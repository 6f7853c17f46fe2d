"""ONNX: one forecast step for one series through onnxruntime, against the same step in
torch (seqtool's own free-run stepper), and the free run of both compared."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np

from .common import Row

CALLS = 2000


def _per_call(run) -> float:
    for _ in range(100):
        run()
    start = time.perf_counter()
    for _ in range(CALLS):
        run()
    return (time.perf_counter() - start) / CALLS


def run() -> list[Row]:
    import onnxruntime as ort
    import torch

    from seqtool.config import TrainConfig
    from seqtool.data import generators
    from seqtool.data.tables import write_table
    from seqtool.model.checkpoint import build_model, load_checkpoint
    from seqtool.model.export import export
    from seqtool.model.network import Stepper
    from seqtool.training.run import train

    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        write_table(generators.sine(n_series=8, length=200, seed=0), d / "s.csv")
        train(d / "s.csv", d / "m.pt", TrainConfig(hidden=32, steps=200, cell="lstm"), quiet=True, threads=1)
        export(d / "m.pt", d / "m.onnx")
        options = ort.SessionOptions()
        options.intra_op_num_threads = options.inter_op_num_threads = 1
        session = ort.InferenceSession(str(d / "m.onnx"), options)
        feeds = {"x": np.zeros((1, 1, 1), np.float32), **{n: np.zeros((1, 1, 32), np.float32) for n in ("h", "c")}}
        onnx_s = _per_call(lambda: session.run(None, feeds))
        step = Stepper(build_model(load_checkpoint(d / "m.pt")))
        x, state = torch.zeros(1, 1), [(torch.zeros(1, 32), torch.zeros(1, 32))]
        with torch.no_grad():
            torch_s = _per_call(lambda: step(x, state))
    return [
        Row("ONNX one step, one series: latency per call", onnx_s * 1e6, "us", "reported", True,
            f"onnxruntime {ort.__version__}, 1 thread, LSTM 32 units; the mean of {CALLS:,} calls after 100"),
        Row("ONNX / torch one step, one series", onnx_s / torch_s, "x", "reported", True,
            f"seqtool's own step (torch cell functions, no module): {torch_s * 1e6:.0f} us a call"),
    ]  # fmt: skip
