"""`seqtool export`: the network as ONNX; a runtime with the graph and its metadata alone
reproduces seqtool's free run."""

from __future__ import annotations

import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from conftest import one_error_line

from seqtool.config import TrainConfig
from seqtool.data import generators
from seqtool.data.tables import write_table
from seqtool.forecast.forecaster import Forecaster
from seqtool.forecast.rollout import rollout
from seqtool.model.export import export
from seqtool.training.run import train

WARMUP, FREE = 10, 100


def onnx_rollout(path, x: np.ndarray) -> np.ndarray:
    """What a user writes with onnxruntime and the metadata: x [B, T, F] on the original scale,
    warmed up on its first WARMUP steps, then FREE steps fed back; the forecasts [B, FREE, F]."""
    session = ort.InferenceSession(str(path))
    meta = json.loads(onnx.load(str(path)).metadata_props[0].value)
    model, norm = meta["model"], meta["norm"]
    lags = norm.get("lags") or []
    assert lags in ([], [1])  # what this test undoes
    width, layers = model["hidden"] * model.get("members", 1), model["layers"]
    mean, std = np.array(norm["x_mean"]), np.array(norm["x_std"])
    y_mean, y_std = np.array(norm["y_mean"]), np.array(norm["y_std"])
    seen = x[:, :WARMUP]
    values = np.diff(seen, axis=1) if lags else seen
    feeds = {"x": ((values - mean) / std).astype(np.float32)}
    states = ("h", "c")[: len(session.get_inputs()) - 1]
    feeds.update({n: np.zeros((layers, len(x), width), np.float32) for n in states})
    last, out = seen[:, -1], []
    for _ in range(FREE):
        outputs = session.run(None, feeds)
        state = outputs[-2:] if model["cell"] == "lstm" else outputs[-1:]
        z = outputs[0][:, -1:]
        step = z[:, 0].astype(np.float64) * y_std + y_mean
        last = last + step if lags else step
        out.append(last)
        feeds = {"x": z, **dict(zip(("h", "c"), state))}
    return np.stack(out, axis=1)


@pytest.mark.parametrize(
    "settings",
    [
        {"cell": "rnn"},
        {"cell": "lstm"},
        {"cell": "gru"},
        {"cell": "lstm", "layers": 2},
        {"cell": "gru", "layers": 2, "diff": "1"},
        {"cell": "lstm", "diff": "1", "loss": "gaussian"},
    ],
    ids=["rnn", "lstm", "gru", "stacked-lstm", "stacked-gru-diff", "lstm-diff-gaussian"],
)
def test_onnx_free_run_matches_seqtools_rollout(tmp_path, settings):
    write_table(generators.sine(n_series=3, length=WARMUP + FREE, seed=0), tmp_path / "s.csv")
    config = TrainConfig(hidden=8, steps=40, window=20, batch=16, **settings)
    train(tmp_path / "s.csv", tmp_path / "m.pt", config, quiet=True)
    export(tmp_path / "m.pt", tmp_path / "m.onnx")
    table, _ = rollout(tmp_path / "m.pt", tmp_path / "s.csv", warmup=WARMUP, quiet=True)
    ours = np.stack(table.split(table.columns["yhat"]))[:, WARMUP:]
    x = np.stack(table.split(table.x[:, 0]))[..., None]
    theirs = onnx_rollout(tmp_path / "m.onnx", x)[..., 0]
    assert ours.shape == theirs.shape == (3, FREE)
    np.testing.assert_allclose(theirs, ours, atol=1e-5, rtol=0)


def test_distribution_and_ensemble_outputs_and_metadata(tmp_path):
    write_table(generators.sine(n_series=2, length=40, seed=0), tmp_path / "s.csv")
    train(tmp_path / "s.csv", tmp_path / "t.pt", TrainConfig(hidden=4, steps=5, loss="studentt"), quiet=True)
    export(tmp_path / "t.pt", tmp_path / "t.onnx")
    session = ort.InferenceSession(str(tmp_path / "t.onnx"))
    assert [o.name for o in session.get_outputs()] == ["point", "scale", "df", "h_next", "c_next"]
    zeros = {"h": np.zeros((1, 5, 4), np.float32), "c": np.zeros((1, 5, 4), np.float32)}
    point, scale, df, *_ = session.run(None, {"x": np.zeros((5, 7, 1), np.float32), **zeros})
    assert point.shape == scale.shape == df.shape == (5, 7, 1) and (scale > 0).all() and (df > 2).all()
    train(tmp_path / "s.csv", tmp_path / "e.pt", TrainConfig(hidden=4, steps=5, ensemble=3, cell="gru"), quiet=True)
    export(tmp_path / "e.pt", tmp_path / "e.onnx")
    meta = json.loads(onnx.load(str(tmp_path / "e.onnx")).metadata_props[0].value)
    assert meta["format"] == "seqtool-onnx" and meta["model"]["members"] == 3 and meta["data"]["x_names"] == ["x"]
    session = ort.InferenceSession(str(tmp_path / "e.onnx"))
    assert [o.name for o in session.get_outputs()] == ["point", "h_next"]
    point, h = session.run(None, {"x": np.ones((2, 1, 1), np.float32), "h": np.zeros((1, 2, 12), np.float32)})
    assert point.shape == (2, 1, 1) and h.shape == (1, 2, 12)
    paths = TrainConfig(hidden=4, steps=5, ensemble=3, cell="gru", diff="1", horizon=3)
    train(tmp_path / "s.csv", tmp_path / "d.pt", paths, quiet=True)
    export(tmp_path / "d.pt", tmp_path / "d.onnx")
    x = np.random.default_rng(0).normal(size=(2, 5, 1)).astype(np.float32)
    h = np.zeros((1, 2, 12), np.float32)
    point, _ = ort.InferenceSession(str(tmp_path / "d.onnx")).run(None, {"x": x, "h": h})
    with torch.no_grad():  # the median of the members' paths over the 3 steps, as rollout takes it
        net = Forecaster(tmp_path / "d.pt").net
        ours = net.head.point(net(torch.from_numpy(x))[0]).numpy()
    np.testing.assert_allclose(point, ours, atol=1e-5, rtol=0)


def test_export_refuses_in_one_line(cli, tmp_path, small_model):
    one_error_line(cli("export", small_model / "m.pt", "-o", tmp_path / "m.txt"), "unknown model format '.txt'")
    one_error_line(cli("export", small_model / "m.pt", "-o", "/dev/stdout"), "not standard output")
    one_error_line(cli("export", small_model / "sine.csv", "-o", tmp_path / "m.onnx"), "not a seqtool checkpoint")
    result = cli("export", small_model / "m.pt", "-o", tmp_path / "m.onnx")
    assert result.exit_code == 0 and result.stdout.strip() == str(tmp_path / "m.onnx")


def test_a_calibrated_models_scores_ride_in_the_metadata(tmp_path, small_model):
    from seqtool.forecast.calibrate import calibrate
    from seqtool.model.checkpoint import load_checkpoint

    calibrate(small_model / "m.pt", small_model / "sine.csv", horizon=3, output=tmp_path / "c.pt", quiet=True)
    export(tmp_path / "c.pt", tmp_path / "c.onnx")
    meta = json.loads(onnx.load(str(tmp_path / "c.onnx")).metadata_props[0].value)
    scores = np.array(meta["calibration"]["scores"], dtype=float)  # null: NaN
    want = load_checkpoint(tmp_path / "c.pt")["calibration"]["scores"]
    np.testing.assert_array_equal(scores, np.asarray(want, dtype=float))
