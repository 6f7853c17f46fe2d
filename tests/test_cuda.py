"""On a GPU: training with --device cuda, and its checkpoint on the CPU. Skipped
where torch sees no CUDA device (CI never has one)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import faulty_source

from seqtool.config import TrainConfig
from seqtool.data import generators
from seqtool.data.tables import write_table
from seqtool.forecast.predict import predict
from seqtool.model.checkpoint import load_checkpoint
from seqtool.training.run import train

pytestmark = [pytest.mark.cuda, pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")]


def test_a_model_trained_on_the_gpu_predicts_on_the_cpu_as_it_did_there(tmp_path):
    write_table(generators.sine(n_series=16, length=120, seed=0), tmp_path / "sine.csv")
    train(tmp_path / "sine.csv", tmp_path / "gpu.pt", TrainConfig(hidden=16, steps=200), device="cuda", quiet=True)
    ckpt = load_checkpoint(tmp_path / "gpu.pt")
    assert all(w.device.type == "cpu" for w in ckpt["weights"].values())
    assert ckpt["history"][-1]["train_loss"] < 0.05
    train(tmp_path / "sine.csv", tmp_path / "cpu.pt", TrainConfig(hidden=16, steps=200), device="cpu", quiet=True)
    gpu, _ = predict(tmp_path / "gpu.pt", tmp_path / "sine.csv", quiet=True)
    cpu, _ = predict(tmp_path / "cpu.pt", tmp_path / "sine.csv", quiet=True)
    err = lambda t: float(np.nanmean((t.columns["yhat"] - t.columns["x"]) ** 2))  # noqa: E731 (NaN: no forecast)
    assert err(gpu) < 2 * err(cpu) + 1e-4  # the same accuracy within float noise


def test_a_stateful_run_interrupted_on_the_gpu_resumes_there(tmp_path):
    """The carried state of a checkpoint (stored on the CPU) goes back to the GPU."""
    import os
    import signal

    from seqtool.errors import Interrupted

    write_table(generators.integral(n_series=1, length=3000, seed=0), tmp_path / "long.csv")
    config = TrainConfig(hidden=8, steps=200, window=10, batch=8, stateful=True)

    def interrupt(step, batch):
        if step == 120:
            os.kill(os.getpid(), signal.SIGINT)
        return batch

    with pytest.raises(Interrupted):
        train(
            tmp_path / "long.csv", tmp_path / "m.pt", config, device="cuda", quiet=True, source=faulty_source(interrupt)
        )
    saved = load_checkpoint(tmp_path / "m.pt")
    assert 100 < saved["resume"]["step"] < 200 and all(c.device.type == "cpu" for c in saved["resume"]["carry"])
    result = train(tmp_path / "long.csv", tmp_path / "m.pt", resume=True, device="cuda", quiet=True)
    assert result.steps == 200 and result.stopped == "done"
    train(tmp_path / "long.csv", tmp_path / "straight.pt", config, device="cuda", quiet=True)
    straight = load_checkpoint(tmp_path / "straight.pt")["history"][-1]["val_loss"]
    assert abs(result.val_loss - straight) < 0.1 * straight + 1e-5  # cuDNN's sums may differ in order
