"""`seqtool predict` and `seqtool rollout`: alignment, warm-up, scale, horizon, refusals."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import one_error_line

from seqtool.config import TrainConfig
from seqtool.data import generators
from seqtool.data.tables import SeriesTable, read_table, write_table
from seqtool.forecast.predict import predict
from seqtool.forecast.rollout import rollout
from seqtool.training.run import train

FAST = TrainConfig(hidden=8, steps=80, window=20, batch=16)


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """A next-step model on sine (scaled to 100 + 30 sin t) and a mapping model on sincos."""
    folder = tmp_path_factory.mktemp("models")
    sine = generators.sine(n_series=32, length=30, seed=0)
    sine.columns["x"] = 100 + 30 * sine.columns["x"]
    write_table(sine, folder / "sine.csv")
    train(sine, folder / "next.pt", FAST, quiet=True)
    train(generators.sincos(n_series=8, length=60, seed=0), folder / "map.pt", FAST, quiet=True)
    return folder


def test_predict_is_aligned_with_the_truth_it_estimates(models):
    table, scores = predict(models / "next.pt", models / "sine.csv", quiet=True)
    x, yhat = table.columns["x"], table.columns["yhat"]
    starts = table.offsets[:-1]
    assert np.isnan(yhat[starts]).all()  # row 0 of each series: nothing to forecast from
    assert not np.isnan(np.delete(yhat, starts)).any()
    assert 60 < np.nanmean(yhat) < 140  # the original scale, not the standardised one
    e = np.delete(yhat - x, starts)
    assert scores["mse"] == pytest.approx(np.mean(e**2)) and scores["steps"] == len(e)
    assert scores["rmse"] == pytest.approx(np.sqrt(scores["mse"]))
    assert scores["mae"] == pytest.approx(np.mean(np.abs(e)))


def test_warmup_leaves_the_first_steps_out(models):
    table, scores = predict(models / "next.pt", models / "sine.csv", warmup=5, quiet=True)
    keep = np.concatenate([np.arange(n) >= 5 for n in table.lengths])
    e = (table.columns["yhat"] - table.columns["x"])[keep]
    assert scores["steps"] == 32 * 25 and scores["mse"] == pytest.approx(np.mean(e**2))


def test_predict_mapping_model_and_metrics_file(models, tmp_path, cli):
    fresh = tmp_path / "fresh.csv"
    write_table(generators.sincos(n_series=3, length=60, seed=4), fresh)
    result = cli("predict", models / "map.pt", fresh, "--metrics", tmp_path / "m.json", "-o", tmp_path / "p.csv")
    assert result.exit_code == 0, result.stderr
    assert result.stderr.startswith("seqtool: predict (teacher-forced, warm-up 0): MSE")
    metrics = json.loads((tmp_path / "m.json").read_text())
    assert metrics["steps"] == 180 and metrics["mse"] > 0
    out = read_table(tmp_path / "p.csv")
    assert list(out.columns) == ["series", "t", "x", "y", "yhat"]
    # without the target column there is nothing to score, but predictions still come
    no_y = tmp_path / "no_y.csv"
    no_y.write_text("x\n0.1\n0.2\n0.3\n")
    result = cli("predict", models / "map.pt", no_y)
    assert result.exit_code == 0 and "no known targets" in result.stderr
    assert result.stdout.splitlines()[0] == "x,yhat"


def test_rollout_first_free_step_is_conditioned_on_the_last_observed_value(models):
    base = generators.sine(n_series=1, length=30, seed=9)
    base.columns["x"] = 100 + 30 * base.columns["x"]

    def free_path(change_row: int | None) -> np.ndarray:
        table = SeriesTable({k: v.copy() for k, v in base.columns.items()}, ["x"], [], base.lengths)
        if change_row is not None:
            table.columns["x"][change_row] += 25.0
        out, _ = rollout(models / "next.pt", table, warmup=10, quiet=True)
        return out.columns["yhat"][out.columns["phase"] == "free"]

    plain = free_path(None)
    assert free_path(9)[0] != plain[0]  # the last observed step moves the first forecast
    np.testing.assert_array_equal(free_path(10), plain)  # the truth after warm-up is never seen
    np.testing.assert_array_equal(free_path(25), plain)


def test_rollout_free_steps_feed_predictions_back(models):
    out, scores = rollout(models / "next.pt", models / "sine.csv", warmup=10, quiet=True)
    phase = out.columns["phase"]
    for part in out.split(phase):
        assert (part[:10] == "warmup").all() and (part[10:] == "free").all() and len(part) == 30
    assert scores["steps"] == 32 * 20 and scores["mode"] == "free-running"
    # replaying the free predictions as inputs reproduces them: they were fed back
    first = SeriesTable({k: v[:30].copy() for k, v in out.columns.items()}, ["x"], [], np.array([30]))
    first.columns["x"][10:29] = first.columns["yhat"][10:29]  # row t holds the forecast of x[t]
    replay, _ = predict(models / "next.pt", first, quiet=True)
    np.testing.assert_allclose(replay.columns["yhat"][11:30], out.columns["yhat"][11:30], rtol=1e-6)


def test_horizon_extends_t_and_dates_past_the_end(models, tmp_path, cli):
    data = tmp_path / "dates.csv"
    rows = [f"2024-03-{d:02d},{100 + 30 * np.sin(d / 3):.3f}" for d in range(1, 21)]
    data.write_text("date,value\n" + "\n".join(rows) + "\n")
    train(data, tmp_path / "v.pt", TrainConfig(hidden=8, steps=20, window=10, x="value", val=0), quiet=True)
    result = cli("rollout", tmp_path / "v.pt", data, "--horizon", "5", "-o", tmp_path / "f.csv")
    assert result.exit_code == 0, result.stderr
    out = read_table(tmp_path / "f.csv")
    assert len(out) == 25
    assert out.columns["date"].tolist()[-6:] == [f"2024-03-{d}" for d in range(20, 26)]
    assert out.columns["phase"].tolist() == ["warmup"] * 20 + ["free"] * 5
    assert out.columns["value"].tolist()[-5:] == [""] * 5  # no truth past the end
    assert "no known targets" in result.stderr

    t_out, _ = rollout(models / "next.pt", models / "sine.csv", horizon=3, quiet=True)
    t = t_out.split(t_out.columns["t"])[0]
    np.testing.assert_allclose(np.diff(t), np.diff(t)[0])
    assert len(t) == 33


def test_rollout_refuses_a_mapping_model(models, tmp_path, cli):
    write_table(generators.sincos(n_series=2, length=40, seed=1), tmp_path / "sc.csv")
    one_error_line(cli("rollout", models / "map.pt", tmp_path / "sc.csv"), "seqtool predict", "next-step model")


@pytest.mark.parametrize("command", ["predict", "rollout"])
def test_not_a_checkpoint_and_mismatched_columns(models, tmp_path, cli, command):
    one_error_line(cli(command, models / "sine.csv", models / "sine.csv"), "sine.csv", "not a seqtool checkpoint")
    one_error_line(cli(command, tmp_path / "none.pt", models / "sine.csv"), "none.pt", "no such checkpoint")
    other = tmp_path / "other.csv"
    other.write_text("date,value\n2024-01-01,1\n2024-01-02,2\n")
    one_error_line(cli(command, models / "next.pt", other), "needs input column(s) x", "columns: date, value")


def test_rollout_options_are_checked(models, cli):
    one_error_line(cli("rollout", models / "next.pt", models / "sine.csv", "--warmup", "31"), "fewer than --warmup 31")
    one_error_line(
        cli("rollout", models / "next.pt", models / "sine.csv", "--warmup", "0"),
        "--warmup must be a whole number in [1,",
    )
    one_error_line(
        cli("rollout", models / "next.pt", models / "sine.csv", "--steps", "3", "--horizon", "2"), "not both"
    )


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
@pytest.mark.parametrize("block", [4096, 3])  # 3: a batch of 4 rows steps in two blocks
def test_stepper_steps_like_the_module(cell, block, monkeypatch):
    import torch

    from seqtool.model.network import ModelConfig, SeqModel, Stepper

    monkeypatch.setattr(Stepper, "BLOCK", block)
    torch.manual_seed(0)
    net = SeqModel(ModelConfig(n_in=2, n_out=3, cell=cell, hidden=5, layers=2)).eval()
    x = torch.randn(4, 6, 2)
    with torch.no_grad():
        expected, _ = net(x)
        _, state = net(x[:, :1])
        step = Stepper(net)
        states = step.split(state)
        for t in range(1, 6):
            out, states = step(x[:, t], states)
            torch.testing.assert_close(out, expected[:, t], rtol=1e-5, atol=1e-6)


# --- memory in proportion to rows: ragged tables run in groups, with the same results ---


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
@pytest.mark.parametrize("budget", [1 << 25, 64 * 5])  # the second cuts long series into chunks of 10 steps
def test_series_of_any_lengths_give_what_each_gives_alone(cell, budget, monkeypatch):
    import torch

    from seqtool.model import network as models
    from seqtool.model.network import ModelConfig, SeqModel, over_series

    monkeypatch.setattr(models, "BUDGET", budget)
    torch.manual_seed(0)
    net = SeqModel(ModelConfig(n_in=2, n_out=3, cell=cell, hidden=5, layers=2)).eval()
    lengths = np.array([3, 57, 1, 30, 8, 8, 29, 57])
    x = torch.randn(int(lengths.sum()), 2)
    out, final = over_series(net, x, lengths, final_state=True)
    start = 0
    for i, n in enumerate(lengths):
        with torch.no_grad():
            alone, state = net(x[None, start : start + n])
        torch.testing.assert_close(out[start : start + n], alone[0], rtol=1e-5, atol=1e-6)
        for whole, part in zip(final if cell == "lstm" else (final,), state if cell == "lstm" else (state,)):
            torch.testing.assert_close(whole[:, i], part[:, 0], rtol=1e-5, atol=1e-6)
        start += n


def test_a_ragged_table_rolls_out_and_predicts_as_each_series_alone(models):
    table = generators.sine(n_series=5, length=40, seed=7)
    ragged = SeriesTable.from_arrays([x[:m] for x, m in zip(table.split(100 + 30 * table.x), [40, 12, 25, 12, 33])])
    for kwargs in ({"warmup": 10}, {"warmup": 5, "steps": 20}, {"horizon": 7}):
        together, _ = rollout(models / "next.pt", ragged, quiet=True, **kwargs)
        for i, sid in enumerate(ragged.ids):
            alone, _ = rollout(
                models / "next.pt", SeriesTable.from_arrays([ragged.split(ragged.x)[i]]), quiet=True, **kwargs
            )
            rows = together.columns["series"] == sid
            np.testing.assert_allclose(together.columns["yhat"][rows], alone.columns["yhat"], rtol=1e-5, atol=1e-4)
            assert together.columns["phase"][rows].tolist() == alone.columns["phase"].tolist()
    together, _ = predict(models / "next.pt", ragged, quiet=True)
    for i, sid in enumerate(ragged.ids):
        alone, _ = predict(models / "next.pt", SeriesTable.from_arrays([ragged.split(ragged.x)[i]]), quiet=True)
        np.testing.assert_allclose(
            together.columns["yhat"][together.columns["series"] == sid], alone.columns["yhat"], rtol=1e-5, atol=1e-4
        )
