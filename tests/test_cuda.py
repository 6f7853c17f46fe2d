"""On a GPU (issue 14): training with --device cuda, and its checkpoint on the CPU. Skipped
where torch sees no CUDA device (CI never has one)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from seqtool import tasks
from seqtool.checkpoint import load_checkpoint
from seqtool.inference import predict
from seqtool.tables import write_table
from seqtool.training import TrainConfig, train

pytestmark = [pytest.mark.cuda, pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")]


def test_a_model_trained_on_the_gpu_predicts_on_the_cpu_as_it_did_there(tmp_path):
    write_table(tasks.sine(n_series=16, length=120, seed=0), tmp_path / "sine.csv")
    train(tmp_path / "sine.csv", tmp_path / "gpu.pt", TrainConfig(hidden=16, steps=200), device="cuda", quiet=True)
    ckpt = load_checkpoint(tmp_path / "gpu.pt")
    assert all(w.device.type == "cpu" for w in ckpt["weights"].values())
    assert ckpt["history"][-1]["train_loss"] < 0.05
    train(tmp_path / "sine.csv", tmp_path / "cpu.pt", TrainConfig(hidden=16, steps=200), device="cpu", quiet=True)
    gpu, _ = predict(tmp_path / "gpu.pt", tmp_path / "sine.csv", quiet=True)
    cpu, _ = predict(tmp_path / "cpu.pt", tmp_path / "sine.csv", quiet=True)
    err = lambda t: float(np.nanmean((t.columns["yhat"] - t.columns["x"]) ** 2))  # noqa: E731 (NaN: no forecast)
    assert err(gpu) < 2 * err(cpu) + 1e-4  # the same accuracy within float noise
