"""Many series at once: each series scaled by its own level (`--scale series`), models
trained for a horizon (`--horizon H`: a direct H-step head), ensembles (`--ensemble K`)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import one_error_line

from seqtool.config import ModelConfig, TrainConfig
from seqtool.data import generators
from seqtool.data.examples import inputs_and_targets, split
from seqtool.data.scaling import levels
from seqtool.data.tables import SeriesTable, read_table, write_table
from seqtool.forecast.backtest import backtest
from seqtool.forecast.forecaster import Forecaster
from seqtool.forecast.predict import predict
from seqtool.forecast.rollout import rollout
from seqtool.model.checkpoint import load_checkpoint
from seqtool.model.network import MembersHead, SeqModel, joined_weights, member_weights, parts
from seqtool.training.loop import _windows_loss
from seqtool.training.prepare import prepare
from seqtool.training.run import train

SMALL = dict(hidden=8, steps=60, window=24, batch=16, scale="series")
KINDS = {
    "plain": {},
    "log-diff": dict(log_values=True, diff="1"),
    "gaussian": dict(loss="gaussian", diff="1"),
    "naive": dict(scale="naive", season=12, diff="1", loss="mae"),
    "window": dict(scale="window", horizon=6),
    "window-log": dict(scale="window", log_values=True, horizon=6),
}


def _times(table: SeriesTable, factor: float) -> SeriesTable:
    return table.with_x(table.x * factor)


@pytest.fixture(scope="module")
def panel(tmp_path_factory):
    """Eight series of scales from tens to tens of thousands, as a table and times 1000,
    and a series-scaled model of each kind."""
    d = tmp_path_factory.mktemp("panel")
    table = generators.panel(n_series=8, length=48, seed=2)
    write_table(table, d / "p.csv")
    write_table(_times(table, 1000.0), d / "p1000.csv")
    for name, options in KINDS.items():
        train(table, d / f"{name}.pt", TrainConfig(**{**SMALL, **options}), quiet=True)
    return d


def test_a_level_is_the_mean_absolute_value_of_the_steps_read_and_1_for_zeros():
    table = SeriesTable.from_arrays([np.array([2.0, -4.0, 100.0]), np.zeros(4), np.array([-3.0, -3.0])])
    assert levels(table, np.array([2, 4, 2])).ravel().tolist() == [3.0, 1.0, 3.0]
    assert levels(table, table.lengths).ravel().tolist() == pytest.approx([106 / 3, 1.0, 3.0])
    assert levels(table, np.array([3, 4, 2]), last=2).ravel().tolist() == [52.0, 1.0, 3.0]


def test_a_naive_level_is_the_mean_absolute_change_over_the_season_or_one_step():
    """--scale naive: MASE's scale, the mean |x[t] - x[t - m]| of the steps read; over one
    step where a series has no more than m steps; 1 for a series that never changes."""
    series = [np.array([1.0, 3.0, 2.0, 7.0, 7.0]), np.full(3, 5.0), np.array([2.0, -4.0, 100.0])]
    table = SeriesTable.from_arrays(series)
    assert levels(table, table.lengths, lag=1).ravel().tolist() == [2.0, 1.0, 55.0]
    assert levels(table, table.lengths, lag=2).ravel().tolist() == pytest.approx([10 / 3, 1.0, 98.0])
    assert levels(table, table.lengths, lag=3).ravel().tolist() == [5.0, 1.0, 55.0]
    assert levels(table, np.array([3, 3, 0]), lag=1).ravel().tolist() == [1.5, 1.0, 1.0]


def test_naive_scaled_targets_are_the_differences_over_the_naive_error():
    """With --scale naive --diff 1, a mean absolute error on the network's scale is each
    series' MASE up to one constant: the targets are the changes over the series' own naive
    error (standardised by one mean and std for all)."""
    table = generators.panel(n_series=8, length=48, seed=2)
    config = TrainConfig(window=8, scale="naive", season=12, diff="1", val=0)
    data = prepare(table, config, "cpu")
    s, got = data.scaling, data.rows.y.cpu().numpy()[:, 0].astype(np.float64)
    assert s.lag == 12 and s.to_dict()["lag"] == 12
    want = np.concatenate([np.diff(x) / np.mean(np.abs(x[12:] - x[:-12])) for x in table.split(table.x[:, 0])])
    starts = np.concatenate([[0], np.cumsum(table.lengths - 1)])
    last = starts[1:] - 1  # a series' last difference is no step's target
    np.testing.assert_allclose(np.delete(got, last) * s.y_std[0] + s.y_mean[0], np.delete(want, starts[:-1]), rtol=1e-5)


@pytest.mark.parametrize("log", [False, True])
def test_a_training_window_is_scaled_by_its_own_level_and_a_forecast_by_its_last_window(panel, log):
    """--scale window: the network sees each training window divided by the mean |x| of its
    own steps (as standardised by the checkpoint), scored on the forecast from its last
    step; a forecast is scaled by the last --window steps before it."""
    x = np.concatenate([np.linspace(1.0, 2.0, 20), np.linspace(50.0, 80.0, 20)])
    table = SeriesTable.from_arrays([x])
    config = TrainConfig(window=8, scale="window", val=0, log_values=log, horizon=2)
    data = prepare(table, config, "cpu")
    s = data.scaling
    for start in (0, 16, 30):
        got_x, got_y = data.rows.take(torch.arange(start, start + 8)[None])
        v = x[start : start + 10] / np.mean(np.abs(x[start : start + 8]))
        v = np.log(v) if log else v
        want_x = (v[:8] - s.x_mean) / s.x_std
        want_y = (v[8:10] - s.x_mean) / s.x_std  # one forecast a window: from its last step
        np.testing.assert_allclose(got_x[0, :, 0].numpy(), want_x, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(got_y[0, -1].numpy(), want_y, rtol=1e-5, atol=1e-5)
        assert torch.isnan(got_y[0, :-1]).all()
    model = panel / ("window-log.pt" if log else "window.pt")
    assert load_checkpoint(model)["norm"]["window"] == SMALL["window"]
    m = Forecaster(model)
    read = m.read(panel / "p.csv")
    _, level = m.scaling.levelled(read, np.full(len(read.lengths), 40))
    np.testing.assert_allclose(level, levels(read, np.full(len(read.lengths), 40), last=SMALL["window"]))


@pytest.mark.parametrize("kind", KINDS)
def test_a_panel_times_1000_is_forecast_times_1000(panel, kind):
    """Every command, point forecasts and intervals: the level is the series' own (or its
    last window's)."""
    model, one, big = panel / f"{kind}.pt", panel / "p.csv", panel / "p1000.csv"
    assert load_checkpoint(model)["norm"]["scale"] == KINDS[kind].get("scale", "series")
    runs = [
        lambda data: predict(model, data, quiet=True)[0].columns,
        lambda data: rollout(model, data, warmup=42 if "window" in kind else 30, quiet=True)[0].columns,
        lambda data: rollout(model, data, horizon=6, samples=4 if kind == "gaussian" else 0, quiet=True)[0].columns,
        lambda data: backtest(model, data, horizon=5, start=0.7, quiet=True)[0].columns,
    ]
    for run in runs:
        a, b = run(one), run(big)
        for name in (c for c in a if c.startswith("yhat")):
            assert np.isnan(a[name]).sum() == np.isnan(b[name]).sum()
            np.testing.assert_allclose(b[name], 1000 * a[name], rtol=1e-6, err_msg=name)
    lo = predict(model, one, quiet=True)[0].columns.get("yhat_lo")
    assert (lo is not None) == (kind == "gaussian")


def test_a_forecast_takes_its_level_from_the_steps_before_it_only(panel):
    """What follows an origin never changes its forecasts: the tail times 10 leaves the
    backtest's forecasts and the rollout's as they were."""
    table = read_table(panel / "p.csv")
    x = table.numbers("x").copy()
    step = np.concatenate([np.arange(n) for n in np.bincount(table.numbers("series").astype(int))])
    x[step >= 40] *= 10
    changed = read_table(panel / "p.csv")
    changed.columns["x"] = x
    model = panel / "log-diff.pt"
    a = backtest(model, panel / "p.csv", horizon=4, start=36, quiet=True)[0]
    b = backtest(model, changed, horizon=4, start=36, quiet=True)[0]
    early = a.columns["origin"] + a.columns["h"] <= 41  # forecasts of steps before 40 only
    np.testing.assert_allclose(b.columns["yhat"][early], a.columns["yhat"][early], rtol=1e-9)
    free_a = rollout(model, panel / "p.csv", warmup=36, quiet=True)[0].columns["yhat"]
    free_b = rollout(model, changed, warmup=36, quiet=True)[0].columns["yhat"]
    np.testing.assert_allclose(free_b, free_a, rtol=1e-9)


def test_a_window_model_reads_the_last_window_before_each_forecast_and_no_further(panel, cli):
    """Steps before a forecast's window change nothing (its state starts at the window, its
    level is the window's); a step inside it does; past its horizon it does not forecast."""
    table = read_table(panel / "p.csv")
    step = np.concatenate([np.arange(n) for n in np.bincount(table.numbers("series").astype(int))])
    model, w = panel / "window.pt", SMALL["window"]

    def changed(steps):
        t = read_table(panel / "p.csv")
        t.columns["x"] = np.where(steps, 10 * t.numbers("x"), t.numbers("x"))
        return t

    early, inside = changed(step < 40 - w), changed(step == 41)
    runs = {
        "backtest": lambda d: backtest(model, d, horizon=6, start=40, quiet=True)[0].columns["yhat"],
        "rollout": lambda d: rollout(model, d, warmup=42, quiet=True)[0].columns["yhat"][step >= 42],
        "predict": lambda d: predict(model, d, quiet=True)[0].columns["yhat"][step >= 40],
    }
    for name, run in runs.items():
        np.testing.assert_array_equal(run(early), run(panel / "p.csv"), err_msg=name)
        assert not np.allclose(run(inside), run(panel / "p.csv")), name
    warm = rollout(model, panel / "p.csv", warmup=42, quiet=True)[0].columns["yhat"]
    assert np.isnan(warm[step < 42]).all()  # trained to forecast from a window's end only
    one_error_line(
        cli("rollout", model, panel / "p.csv", "--horizon", "7"),
        "forecasts at most 6 step(s) from the window before them (--scale window, trained with --horizon 6), "
        "and this rollout asks for 7: give --horizon 6 (past each series' end) or --steps 6",
    )
    one_error_line(
        cli("backtest", model, panel / "p.csv", "--horizon", "8"), "and --horizon 8 asks for 8: give --horizon 6"
    )


def test_a_folder_trains_series_scaled_as_its_csv(panel, tmp_path, sh):
    """A table folder is read into memory for --scale series: the same weights."""
    done = sh(
        f"seqtool convert {panel / 'p.csv'} -o p.seq 2>/dev/null"
        f" && seqtool train {panel / 'p.csv'} --scale series --steps 30 --hidden 8 --threads 1 -o csv.pt -q"
        " && seqtool train p.seq --scale series --steps 30 --hidden 8 --threads 1 -o seq.pt -q",
        timeout=180,
    )
    assert done.returncode == 0, done.stderr
    a, b = (torch.load(tmp_path / f"{n}.pt", weights_only=True) for n in ("csv", "seq"))
    for k in a["weights"]:
        torch.testing.assert_close(a["weights"][k], b["weights"][k], rtol=0, atol=1e-6)


def test_bad_scale_input_is_one_line_and_exit_2(panel, cli, tmp_path):
    local = cli("train", panel / "p.csv", "--scale", "local", "-o", tmp_path / "m.pt")
    one_error_line(local, "'local' is not one of 'global', 'series', 'naive', 'window'")
    mapping = generators.generate("sincos", n_series=2, length=30, seed=0)
    write_table(mapping, tmp_path / "map.csv")
    one_error_line(
        cli("train", tmp_path / "map.csv", "--scale", "series", "-o", tmp_path / "m.pt"),
        "--scale series is for next-step forecasting",
    )
    ragged = SeriesTable.from_arrays([np.arange(1.0, 30.0), np.arange(1.0, 30.0), np.array([5.0])])
    write_table(ragged, tmp_path / "ragged.csv")  # a series of one step has no target: left out
    trained = cli(
        "train", tmp_path / "ragged.csv", "--scale", "series", "--steps", "5", "--val", "0", "-o", tmp_path / "r.pt"
    )
    assert trained.exit_code == 0, trained.output
    one_error_line(
        cli("rollout", tmp_path / "r.pt", tmp_path / "ragged.csv", "--horizon", "2"),
        "series '2' has 1 step(s) to take its level from; --scale series takes each level over at least 2",
    )
    one_error_line(
        cli("rollout", panel / "window.pt", panel / "p.csv", "--warmup", "1", "--steps", "1"),
        "1 step(s) to take its level from; --scale window takes each level over at least 2 steps: give it more",
    )
    one_error_line(
        cli("train", panel / "p.csv", "--scale", "window", "--stateful", "-o", tmp_path / "m.pt"),
        "--scale window scales each window of at least 2 steps by its own level: drop --stateful",
    )
    one_error_line(
        cli("train", panel / "p.csv", "--scale", "window", "--window", "48", "--val", "0.5", "-o", tmp_path / "m.pt"),
        "--scale window: no validation series is longer than --window 48",
    )
    one_error_line(
        cli("train", panel / "p.csv", "--scale", "window", "--window", "48", "--val", "0", "-o", tmp_path / "m.pt"),
        "no window of 48 steps has a target after its last step",
    )
    two = cli("train", panel / "p.csv", "--scale", "window", "--window", "2", "--steps", "3", "-o", tmp_path / "2.pt")
    assert two.exit_code == 0, two.output  # --burn-in is not in the way: a window scores its last step
    one_error_line(
        cli("train", panel / "p.csv", "--scale", "window", "--window", "1", "--burn-in", "0", "-o", tmp_path / "m.pt"),
        "--scale window takes a level over at least 2 steps, got --window 1",
    )
    assert not (tmp_path / "m.pt").exists()


def test_a_checkpoint_with_an_unknown_scale_is_refused(panel, tmp_path, cli):
    ckpt = torch.load(panel / "plain.pt", weights_only=True)
    ckpt["norm"]["scale"] = "local"
    torch.save(ckpt, tmp_path / "edited.pt")
    one_error_line(cli("predict", tmp_path / "edited.pt", panel / "p.csv"), "norm.scale is 'local'")
    for scale, window, said in (
        ("window", None, "norm.window is missing"),
        ("window", 1, "norm.window is 1; expected a whole number of steps in [2, 1000000]"),
        ("window", 10**9, "norm.window is 1000000000"),
        ("series", 24, "norm.window is set but norm.scale is 'series'"),
        ("naive", None, "norm.lag is missing; a --scale naive model, and it only, stores its lag"),
    ):
        ckpt["norm"]["scale"] = scale
        ckpt["norm"].pop("window", None)
        if window is not None:
            ckpt["norm"]["window"] = window
        torch.save(ckpt, tmp_path / "edited.pt")
        one_error_line(cli("predict", tmp_path / "edited.pt", panel / "p.csv"), said)
    for scale, lag, said in (
        ("series", 12, "norm.lag is set; a --scale naive model, and it only, stores its lag"),
        ("naive", 0, "norm.lag is 0; expected a whole number of steps in [1, 1000000]"),
        ("naive", "12", "norm.lag is '12'"),
    ):
        ckpt["norm"]["scale"], ckpt["norm"]["lag"] = scale, lag
        torch.save(ckpt, tmp_path / "edited.pt")
        one_error_line(cli("predict", tmp_path / "edited.pt", panel / "p.csv"), said)


@pytest.fixture(scope="module")
def direct(panel):
    """Models trained for 4 steps ahead: as they are, and series-scaled with --diff 1."""
    table = read_table(panel / "p.csv")
    train(table, panel / "h4.pt", TrainConfig(hidden=8, steps=60, window=24, batch=16, horizon=4), quiet=True)
    train(table, panel / "h4diff.pt", TrainConfig(**SMALL, horizon=4, diff="1"), quiet=True)
    return panel


def test_horizon_targets_are_the_next_h_steps_and_none_reach_into_a_held_out_tail():
    x = np.arange(10.0)[:, None] ** 2
    (xs, ys) = inputs_and_targets(SeriesTable.from_arrays([x]), "next-step", horizon=3)
    assert ys[0].shape == (10, 3)
    assert ys[0][2].tolist() == [9.0, 16.0, 25.0] and np.isnan(ys[0][8, 1:]).all() and ys[0][8, 0] == 81.0
    (train_x, train_y), (_, val_y) = split(xs, ys, 0.3, 0, horizon=3)
    assert len(train_x[0]) == 7
    assert np.nanmax(train_y[0]) == 36.0  # x[6]: the tail starts at step 7
    assert np.isnan(train_y[0][6]).all() and train_y[0][5].tolist()[0] == 36.0
    _, (short,) = inputs_and_targets(SeriesTable.from_arrays([np.array([3.0, 5.0])]), "next-step", horizon=3)
    assert short[0, 0] == 5.0 and np.isnan(short[0, 1:]).all() and np.isnan(short[1]).all()  # shorter than H


def _head_forecast(m: Forecaster, table: SeriesTable) -> np.ndarray:
    """The H-step forecast [series, H] after each series' last step, read off the head by hand."""
    z, lengths = m.view(table)
    raw, _ = m.teacher_forced(z, lengths, raw=True)
    last = raw[torch.from_numpy(np.cumsum(lengths) - 1)]
    return m.outputs(m.net.head.point(last).reshape(-1, 1), "forecasts").reshape(len(lengths), m.horizon)


def test_the_h_step_head_is_what_rollout_and_backtest_forecast_and_past_h_it_reads_its_own(direct):
    m = Forecaster(direct / "h4.pt")
    table = read_table(direct / "p.csv")
    series = SeriesTable(
        {"x": table.numbers("x")[:48]}, ["x"], [], np.array([48]), "one"
    )  # the first series of the panel
    cut = SeriesTable({"x": series.x[:30, 0]}, ["x"], [], np.array([30]), "cut")
    block = _head_forecast(m, cut)[0]
    free = rollout(direct / "h4.pt", series, warmup=30, steps=8, quiet=True)[0].columns["yhat"][30:]
    close = dict(rtol=1e-5, atol=1e-6 * float(m.scaling.x_std[0]))  # the network reads float32 on its scale
    np.testing.assert_allclose(free[:4], block, **close)
    fed = SeriesTable({"x": np.concatenate([series.x[:30, 0], block])}, ["x"], [], np.array([34]), "fed")
    np.testing.assert_allclose(free[4:], _head_forecast(m, fed)[0], **close)
    bt = backtest(direct / "h4.pt", series, horizon=8, start=30, stride=100, quiet=True)[0].columns["yhat"]
    np.testing.assert_allclose(bt, free, **close)


def test_a_horizon_model_backtests_as_it_rolls_out_from_the_same_origin(direct):
    """Series-scaled and differenced: a backtest's first origin is a rollout's warm-up (the
    level of both: the steps before it)."""
    model = direct / "h4diff.pt"
    for origin in (36, 41):
        table, _ = backtest(model, direct / "p.csv", horizon=6, start=origin, stride=100, quiet=True)
        free, _ = rollout(model, direct / "p.csv", warmup=origin, steps=6, quiet=True)
        ends = np.concatenate([np.arange(n) >= origin for n in free.lengths])
        np.testing.assert_allclose(table.columns["yhat"], free.columns["yhat"][ends], rtol=1e-5)


def test_bad_horizon_input_is_one_line_and_exit_2(direct, cli, tmp_path):
    short = SeriesTable.from_arrays([np.arange(1.0, 9.0), np.arange(1.0, 6.0)])
    write_table(short, tmp_path / "short.csv")
    one_error_line(
        cli("train", tmp_path / "short.csv", "--horizon", "8", "-o", tmp_path / "m.pt"),
        "--horizon 8: the longest series has 8 steps",
    )
    one_error_line(
        cli("train", tmp_path / "short.csv", "--horizon", "7", "--diff", "1", "-o", tmp_path / "m.pt"),
        "has 7 steps after the differencing's first 1",
    )
    one_error_line(cli("train", tmp_path / "short.csv", "--horizon", "0", "-o", tmp_path / "m.pt"), "--horizon")
    mapping = generators.generate("sincos", n_series=2, length=30, seed=0)
    write_table(mapping, tmp_path / "map.csv")
    one_error_line(
        cli("train", tmp_path / "map.csv", "--horizon", "3", "-o", tmp_path / "m.pt"),
        "--horizon is for next-step forecasting",
    )
    assert not (tmp_path / "m.pt").exists()
    panel = read_table(direct / "p.csv")
    train(panel, tmp_path / "g.pt", TrainConfig(hidden=4, steps=5, window=24, horizon=2, loss="gaussian"), quiet=True)
    one_error_line(cli("rollout", tmp_path / "g.pt", direct / "p.csv", "--samples", "5"), "not as a path")
    ckpt = torch.load(direct / "h4.pt", weights_only=True)
    ckpt["model"]["horizon"] = 0
    torch.save(ckpt, tmp_path / "edited.pt")
    one_error_line(cli("predict", tmp_path / "edited.pt", tmp_path / "short.csv"), "model.horizon is 0")


@pytest.fixture(scope="module")
def ensemble(direct):
    """A 3-member ensemble trained for 4 steps, and each member saved as a model of its own."""
    table = read_table(direct / "p.csv")
    config = TrainConfig(**SMALL, horizon=4, diff="1", ensemble=3)
    train(table, direct / "e3.pt", config, quiet=True)
    ckpt = torch.load(direct / "e3.pt", weights_only=True)
    for k in range(3):
        one = {**ckpt, "model": {**ckpt["model"], "members": 1}}
        one["weights"] = member_weights(ckpt["weights"], ModelConfig(**ckpt["model"]), k)
        torch.save(one, direct / f"member{k}.pt")
    return direct


def test_members_are_apart_after_training_and_k_identical_members_forecast_as_one(ensemble, tmp_path):
    ckpt = torch.load(ensemble / "e3.pt", weights_only=True)
    config = ModelConfig(**ckpt["model"])
    weights = ckpt["weights"]
    rejoined = joined_weights([member_weights(weights, config, k) for k in range(3)], config)
    for name, w in weights.items():  # nothing between members: the parts are the whole
        torch.testing.assert_close(rejoined[name], w, rtol=0, atol=0)
    one = torch.load(ensemble / "h4diff.pt", weights_only=True)
    same = {**one, "model": {**one["model"], "members": 5}}
    same["weights"] = joined_weights([one["weights"]] * 5, ModelConfig(**same["model"]))
    torch.save(same, tmp_path / "five.pt")
    for run in (
        lambda m: predict(m, ensemble / "p.csv", quiet=True)[0].columns["yhat"],
        lambda m: rollout(m, ensemble / "p.csv", horizon=9, quiet=True)[0].columns["yhat"],
        lambda m: backtest(m, ensemble / "p.csv", horizon=6, start=0.8, quiet=True)[0].columns["yhat"],
    ):
        np.testing.assert_allclose(run(tmp_path / "five.pt"), run(ensemble / "h4diff.pt"), rtol=1e-5)


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_members_run_one_after_another_as_the_one_wide_network_would(cell):
    """An ensemble's recurrence runs member after member (K small recurrences, not one K
    times as wide); outputs, states and gradients are the wide network's, whose weights
    between members are zero: on whole windows, on series of other lengths, from a state."""
    torch.manual_seed(0)
    model = SeqModel(ModelConfig(cell=cell, hidden=6, layers=2, n_in=3, n_out=2, horizon=2, members=3))
    x, lengths = torch.randn(5, 9, 3), np.array([9, 7, 7, 4, 1])

    def wide(x, state=None, lengths=None):
        if lengths is None:
            out, state = model.rnn(x, state)
        else:
            packed = torch.nn.utils.rnn.pack_padded_sequence(x, torch.as_tensor(lengths), batch_first=True)
            out, state = model.rnn(packed, state)
            out = torch.nn.utils.rnn.pad_packed_sequence(out, batch_first=True, total_length=x.shape[1])[0]
        return torch.nn.functional.linear(out, model.head.weight, model.head.bias), state

    with torch.no_grad():
        _, start = wide(x)
    for args in ((x,), (x, None, lengths), (x, start), (x.double(), None, lengths)):
        model.to(args[0].dtype)
        got, want = model(*args), wide(*args)
        for a, b in zip((got[0], *parts(got[1])), (want[0], *parts(want[1]))):
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
        grads = []
        for out in (got[0], want[0]):
            model.zero_grad()
            out.pow(2).sum().backward(retain_graph=True)
            grads.append({n: w.grad.clone() for n, w in model.named_parameters()})
        for name in grads[0]:
            apart = model.apart(name)
            within = grads[1][name] if apart is None else grads[1][name] * apart  # the wide one's, within members
            torch.testing.assert_close(grads[0][name], within, rtol=1e-4, atol=1e-5, msg=name)
            if apart is not None:  # nothing flows between members
                assert not grads[0][name][apart == 0].any()
    model.float()
    mixed = torch.as_tensor([4, 9, 1, 7, 7])
    unsorted = torch.nn.utils.rnn.pack_padded_sequence(x, mixed, batch_first=True, enforce_sorted=False)
    got, want = model._recur(unsorted, start), model.rnn(unsorted, start)
    for a, b in zip((got[0].data, *parts(got[1])), (want[0].data, *parts(want[1]))):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    with pytest.raises(RuntimeError, match="Expected hidden"):  # a state of the wrong shape, as the wide module
        model(x, tuple(s[:, :1] for s in parts(start)) if cell == "lstm" else start[:, :1])


def test_an_ensemble_forecasts_the_median_of_its_members(ensemble):
    """One step ahead (predict: the median of the members' forecasts), and the H steps of
    the head (rollout within H): with --diff 1 too, the median of the members' forecasts of
    the series (not the sum of the medians of their steps)."""
    each = np.stack([predict(ensemble / f"member{k}.pt", ensemble / "p.csv", quiet=True)[0].columns["yhat"]
                     for k in range(3)])  # fmt: skip
    got = predict(ensemble / "e3.pt", ensemble / "p.csv", quiet=True)[0].columns["yhat"]
    np.testing.assert_allclose(got, np.median(each, axis=0), rtol=1e-5, atol=1e-3)
    assert (np.abs(each[0] - each[1]) > 1e-3 * np.abs(got)).mean() > 0.5  # the members differ
    x = read_table(ensemble / "p.csv").numbers("x").reshape(8, 48)
    free = [rollout(m, ensemble / "p.csv", warmup=40, steps=4, quiet=True)[0].columns["yhat"].reshape(8, 44)[:, 40:]
            for m in [ensemble / f"member{k}.pt" for k in range(3)] + [ensemble / "e3.pt"]]  # fmt: skip
    np.testing.assert_allclose(free[3], np.median(np.stack(free[:3]), axis=0), rtol=1e-5, atol=1e-3)
    steps = [np.diff(np.concatenate([x[:, 39:40], f], axis=1), axis=1) for f in free[:3]]
    of_steps = x[:, 39:40] + np.cumsum(np.median(np.stack(steps), axis=0), axis=1)
    assert np.abs(free[3] - of_steps).max() > 1e-2  # the other reading of "median" differs here


@pytest.mark.parametrize("lags", [(1,), (3,), (1, 3), (2, 5)])
def test_an_ensembles_median_of_differences_is_the_median_of_the_paths_they_make(lags):
    """The head's point for H steps of differences at `lags`: each member's path from a zero
    past (the differences undone by hand), their median, differenced again."""
    k, h, f = 5, 7, 2
    head = MembersHead(4, h * f, k, steps=h)
    head.lags = lags
    out = torch.randn(3, k * h * f, dtype=torch.float64)
    paths = head.each(out).unflatten(-1, (h, f)).numpy().copy()  # [3, K, H, F]
    for lag in reversed(lags):
        for j in range(lag, h):
            paths[..., j, :] += paths[..., j - lag, :]
    median = np.median(paths, axis=1)
    for lag in lags:
        median = np.concatenate([median[..., :lag, :], median[..., lag:, :] - median[..., :-lag, :]], axis=-2)
    np.testing.assert_allclose(head.point(out).numpy(), median.reshape(3, h * f), rtol=1e-12, atol=1e-12)
    head.lags = ()
    np.testing.assert_allclose(head.point(out).numpy(), np.median(head.each(out).numpy(), axis=1), atol=1e-12)
    long = MembersHead(4, 48, 3, steps=48)  # 48 steps at lags 1,1,1,1: sums of sums, taken in float64
    long.lags = (1, 1, 1, 1)
    x = torch.randn(2, 3 * 48)
    np.testing.assert_allclose(long.point(x).double().numpy(), long.point(x.double()).numpy(), rtol=1e-6, atol=1e-6)


def test_bad_ensemble_input_is_one_line_and_exit_2(ensemble, cli, tmp_path):
    one_error_line(
        cli("train", ensemble / "p.csv", "--ensemble", "3", "--loss", "gaussian", "-o", tmp_path / "m.pt"),
        "--ensemble forecasts the median",
    )
    one_error_line(cli("train", ensemble / "p.csv", "--ensemble", "0", "-o", tmp_path / "m.pt"), "--ensemble")
    ckpt = torch.load(ensemble / "e3.pt", weights_only=True)
    ckpt["model"]["members"] = 4
    torch.save(ckpt, tmp_path / "edited.pt")
    one_error_line(cli("predict", tmp_path / "edited.pt", ensemble / "p.csv"), "damaged seqtool checkpoint")
    ckpt = torch.load(ensemble / "e3.pt", weights_only=True)
    ckpt["weights"]["rnn.weight_hh_l0"] += 0.5  # members that read each other: forecasts would depend on the path
    torch.save(ckpt, tmp_path / "joined.pt")
    said = cli("predict", tmp_path / "joined.pt", ensemble / "p.csv")
    one_error_line(said, "weights.rnn.weight_hh_l0 joins an ensemble's members: its weights between them must be 0")
    assert not (tmp_path / "m.pt").exists()


def test_train_says_when_series_differ_in_scale_and_which_option_fixes_it(panel, cli, tmp_path):
    said = cli("train", panel / "p.csv", "--steps", "5", "--hidden", "4", "-o", tmp_path / "a.pt")
    assert said.exit_code == 0, said.stderr
    [line] = [x for x in said.stderr.splitlines() if "differ in scale" in x]
    sizes = levels(generators.panel(n_series=8, length=48, seed=2), np.full(8, 48))
    assert f"{sizes.max() / sizes.min():,.0f}x" in line and "--scale series" in line
    for quiet in (("--scale", "series"), ("--log-values",)):
        result = cli("train", panel / "p.csv", "--steps", "5", "--hidden", "4", *quiet, "-o", tmp_path / "b.pt")
        assert result.exit_code == 0 and "differ in scale" not in result.stderr
    even = SeriesTable.from_arrays([np.linspace(1, 2, 30), np.linspace(5, 9, 30)])
    write_table(even, tmp_path / "even.csv")
    result = cli("train", tmp_path / "even.csv", "--steps", "5", "--hidden", "4", "-o", tmp_path / "c.pt")
    assert result.exit_code == 0 and "differ in scale" not in result.stderr


def test_each_member_learns_as_it_would_alone_even_by_sgd(panel, tmp_path):
    """Member 0 starts as the network of the same seed, and its gradient is its own: the
    same weights after training (within float error), with SGD as with Adam."""
    table = read_table(panel / "p.csv")
    for optimizer in ("sgd", "adam"):
        base = dict(hidden=8, steps=30, window=24, batch=16, scale="series", optimizer=optimizer, lr=0.05)
        train(table, tmp_path / "one.pt", TrainConfig(**base), quiet=True, threads=1)
        train(table, tmp_path / "two.pt", TrainConfig(**base, ensemble=2), quiet=True, threads=1)
        one, two = (torch.load(tmp_path / f"{n}.pt", weights_only=True) for n in ("one", "two"))
        first = member_weights(two["weights"], ModelConfig(**two["model"]), 0)
        for name, w in one["weights"].items():
            torch.testing.assert_close(first[name], w, rtol=0, atol=2e-3, msg=f"{optimizer} {name}")


def test_series_scale_refuses_huge_values_and_skips_series_it_does_not_forecast(panel, cli, tmp_path):
    table = generators.panel(n_series=4, length=30, seed=1)
    huge = table.with_x(np.where(np.arange(len(table.x))[:, None] < 30, 1e200, table.x))
    write_table(huge, tmp_path / "huge.csv")
    one_error_line(
        cli("train", tmp_path / "huge.csv", "--scale", "series", "-o", tmp_path / "m.pt"), "seqtool models values up to"
    )
    assert not (tmp_path / "m.pt").exists()
    one_step = SeriesTable.from_arrays([*[read_table(panel / "p.csv").numbers("x")[:48]] * 2, np.array([7.0])])
    result, _ = backtest(panel / "plain.pt", one_step, horizon=3, start=40, quiet=True)
    assert sorted(set(result.columns["series"].tolist())) == ["0", "1"]
    assert np.isnan(predict(panel / "plain.pt", one_step, quiet=True)[0].columns["yhat"][-1])
    trap = SeriesTable.from_arrays([np.r_[np.tile([0.0, 1e-300], 5), np.linspace(1e100, 2e100, 20)]])
    write_table(trap, tmp_path / "trap.csv")
    for model in ("plain", "naive"):  # a level of 1e-300 before values of 1e100: nothing to scale them by
        said = cli("rollout", panel / f"{model}.pt", tmp_path / "trap.csv", "--warmup", "10", "--steps", "5")
        one_error_line(said, "series '0' reaches 1e+100, more than 1e+150 times its level (")
    one_error_line(
        cli("train", panel / "p.csv", "--scale", "naive", "--season", "1000001", "-o", tmp_path / "m.pt"),
        "--season",
    )


def test_seqtool_ensemble_joins_checkpoints_into_one_that_forecasts_their_median(ensemble, cli, tmp_path):
    table = read_table(ensemble / "p.csv")
    for seed in (1, 2):
        train(table, tmp_path / f"s{seed}.pt", TrainConfig(**SMALL, val=0, seed=seed), quiet=True)
    joined = cli("ensemble", tmp_path / "s1.pt", tmp_path / "s2.pt", "-o", tmp_path / "e.pt")
    assert joined.exit_code == 0, joined.stderr
    assert joined.stdout.strip() == str(tmp_path / "e.pt") and "2 networks" in joined.stderr
    each = [predict(tmp_path / f"s{s}.pt", ensemble / "p.csv", quiet=True)[0].columns["yhat"] for s in (1, 2)]
    got = predict(tmp_path / "e.pt", ensemble / "p.csv", quiet=True)[0].columns["yhat"]
    np.testing.assert_allclose(got, (each[0] + each[1]) / 2, rtol=1e-5, atol=1e-3)  # K = 2: the mean of the two
    assert cli("ensemble", *[tmp_path / "s1.pt"] * 3, "-o", tmp_path / "same.pt").exit_code == 0
    same = predict(tmp_path / "same.pt", ensemble / "p.csv", quiet=True)[0].columns["yhat"]
    np.testing.assert_allclose(same, each[0], rtol=1e-5, atol=1e-3)
    assert cli("ensemble", ensemble / "e3.pt", ensemble / "member0.pt", "-o", tmp_path / "four.pt").exit_code == 0
    four = torch.load(tmp_path / "four.pt", weights_only=True)  # an ensemble gives each of its members
    assert four["model"]["members"] == 4
    last = member_weights(four["weights"], ModelConfig(**four["model"]), 3)
    for name, w in torch.load(ensemble / "member0.pt", weights_only=True)["weights"].items():
        torch.testing.assert_close(last[name], w, rtol=0, atol=0)


def test_parts_of_an_ensemble_trained_apart_and_joined_are_the_whole_ensemble(ensemble, cli, tmp_path):
    """--part I/N trains the members the whole --ensemble would (the same starts, batches and
    steps): joined by seqtool ensemble, the same weights within float error."""
    table = read_table(ensemble / "p.csv")
    config = TrainConfig(**{**SMALL, "steps": 12}, val=0, ensemble=5)
    train(table, tmp_path / "whole.pt", config, quiet=True, threads=1)
    for i in (1, 2):
        options = "--hidden 8 --steps 12 --window 24 --batch 16 --scale series --val 0 --threads 1 --ensemble 5"
        said = cli("train", ensemble / "p.csv", *options.split(), "--part", f"{i}/2", "-o", tmp_path / f"p{i}.pt")
        assert said.exit_code == 0, said.stderr
        assert f"members {(1, 4)[i - 1]}-{(3, 5)[i - 1]} of 5 x lstm" in said.stderr
    assert [torch.load(tmp_path / f"p{i}.pt", weights_only=True)["model"]["members"] for i in (1, 2)] == [3, 2]
    assert cli("ensemble", tmp_path / "p1.pt", tmp_path / "p2.pt", "-o", tmp_path / "joined.pt").exit_code == 0
    whole, joined = (torch.load(tmp_path / f"{n}.pt", weights_only=True)["weights"] for n in ("whole", "joined"))
    for name, w in whole.items():
        torch.testing.assert_close(joined[name], w, rtol=0, atol=1e-5, msg=name)
    twice = cli("ensemble", tmp_path / "p1.pt", tmp_path / "p2.pt", tmp_path / "p1.pt", "-o", tmp_path / "3.pt")
    one_error_line(twice, f"{tmp_path / 'p1.pt'} is part 1/2 of --ensemble 5 --seed 0, as {tmp_path / 'p1.pt'} is")
    for part in ("0/2", "3/2", "1/6", "1", "a/b", "1/2/3", " 1/2", "01/2", "１/２"):
        said = cli("train", ensemble / "p.csv", "--ensemble", "5", "--part", part, "-o", tmp_path / "m.pt")
        one_error_line(said, f"--part must be I/N with 1 <= I <= N <= --ensemble (5): part I of the ensemble's "
                             f"members split in N, got {part!r}")  # fmt: skip
    one_error_line(cli("train", ensemble / "p.csv", "--part", "1/2", "-o", tmp_path / "m.pt"), "--ensemble (1)")
    assert not (tmp_path / "m.pt").exists()
    ckpt = torch.load(tmp_path / "p2.pt", weights_only=True)
    ckpt["train"]["part"] = "1/2"  # three networks by its settings, two by its weights
    torch.save(ckpt, tmp_path / "relabelled.pt")
    said = cli("train", ensemble / "p.csv", "--resume", "-o", tmp_path / "relabelled.pt")
    one_error_line(said, "train.ensemble and train.part make 3 networks, model.members 2")


def test_bad_ensemble_of_checkpoints_is_one_line_and_exit_2(ensemble, cli, tmp_path):
    table = read_table(ensemble / "p.csv")
    train(table, tmp_path / "a.pt", TrainConfig(**SMALL, val=0), quiet=True)
    train(table, tmp_path / "split.pt", TrainConfig(**SMALL, seed=3), quiet=True)  # another training split
    train(table, tmp_path / "diff.pt", TrainConfig(**SMALL, val=0, diff="1"), quiet=True)
    train(table, tmp_path / "gauss.pt", TrainConfig(hidden=8, steps=5, window=24, val=0, loss="gaussian"), quiet=True)
    train(table, tmp_path / "median.pt", TrainConfig(**SMALL, val=0, loss="mae"), quiet=True)
    renamed = SeriesTable({"y1": table.numbers("x")}, ["y1"], [], np.full(8, 48))
    train(renamed, tmp_path / "cols.pt", TrainConfig(**SMALL, val=0), quiet=True)
    for other, fragment in [
        ("cols.pt", "share their columns"),
        ("diff.pt", "share their transforms"),
        ("split.pt", "standardises its data otherwise"),
        ("gauss.pt", "models a distribution"),
        ("median.pt", "model.loss is 'mae'"),
    ]:
        one_error_line(cli("ensemble", tmp_path / "a.pt", tmp_path / other, "-o", tmp_path / "e.pt"), fragment)
    one_error_line(cli("ensemble", tmp_path / "a.pt", "-o", tmp_path / "e.pt"), "two or more checkpoints")
    one_error_line(cli("ensemble", tmp_path / "a.pt", tmp_path / "a.pt", "-o", tmp_path / "a.pt"), "a.pt")
    assert not (tmp_path / "e.pt").exists()


def test_a_window_model_validates_on_the_windows_that_end_in_the_held_out_tail():
    """One series: the validation windows are those whose last step forecasts a step of
    its held-out tail (360..399 of 400, so 39 with a next step), each scored once."""
    table = generators.generate("sine", n_series=1, length=400, seed=0)
    data = prepare(table, TrainConfig(scale="window", window=20, val=0.1), "cpu")
    data.scaling.window = 20
    model = SeqModel(ModelConfig(n_in=1, n_out=1, hidden=4))
    total, count = _windows_loss(model, data.val, 20)
    assert count == 39 and np.isfinite(total) and total > 0
