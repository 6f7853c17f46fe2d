"""Real series: differencing (`--diff`), the naive forecasts in every report, MASE, and
`seqtool backtest` (rolling origins)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from conftest import one_error_line

from seqtool.config import TrainConfig
from seqtool.data import generators
from seqtool.data.scaling import Differencing
from seqtool.data.tables import SeriesTable, Table, read_table, write_table
from seqtool.errors import SeqtoolError
from seqtool.forecast import freerun
from seqtool.forecast.backtest import backtest
from seqtool.forecast.forecaster import Forecaster
from seqtool.forecast.metrics import naive_forecasts, score, series_scales
from seqtool.forecast.predict import predict
from seqtool.forecast.rollout import rollout
from seqtool.model.checkpoint import load_checkpoint
from seqtool.training.run import train

SMALL = dict(hidden=8, steps=60, window=24, batch=16)


@pytest.fixture(scope="module")
def trend(tmp_path_factory):
    """Three trending seasonal series and two models of them: with --diff 1 (season 12
    stored), and without."""
    d = tmp_path_factory.mktemp("trend")
    table = generators.trend(n_series=3, length=96, seed=0)
    write_table(table, d / "trend.csv")
    train(table, d / "diff.pt", TrainConfig(**SMALL, diff="1", season=12), quiet=True)
    train(table, d / "plain.pt", TrainConfig(**SMALL), quiet=True)
    return d


@pytest.mark.parametrize("lags", [(1,), (12,), (1, 12), (2, 3, 1)])
def test_differencing_then_inverting_round_trips(lags):
    rng = np.random.default_rng(sum(lags))
    x = rng.normal(size=(80, 2)).cumsum(axis=0) * 1e3 + np.arange(80)[:, None] ** 2
    diff = Differencing(lags)
    d = diff.difference(x)
    assert d.shape == (80 - diff.order, 2)
    assert np.abs(diff.integrate(x[None, : diff.order], d[None])[0] - x[diff.order :]).max() <= 1e-9 * np.abs(x).max()
    assert np.allclose(d[:, 0], _by_hand(x[:, 0], lags), rtol=0, atol=1e-9 * np.abs(x).max())


def _by_hand(x: np.ndarray, lags) -> np.ndarray:
    for lag in lags:
        x = x[lag:] - x[:-lag]
    return x


def test_an_oracle_of_the_true_differences_reproduces_the_series():
    """Forecasts of exactly the true differences, undone one step at a time (with the true
    past) or integrated free-running (from the last true values), give the series back."""
    x = np.cumsum(np.random.default_rng(1).normal(size=(50, 1)), axis=0) + 100
    diff = Differencing((1, 4))
    d = np.full_like(x, np.nan)
    d[diff.order :] = diff.difference(x)
    assert np.allclose(diff.undo(d, x)[diff.order :], x[diff.order :], rtol=0, atol=1e-9)
    assert np.isnan(diff.undo(d, x)[: diff.order]).all()
    free = diff.integrate(x[None, 20 - diff.order : 20], d[None, 20:])[0]
    assert np.allclose(free, x[20:], rtol=0, atol=1e-9)


def test_rollout_undoes_the_differencing_of_an_oracle(trend, monkeypatch):
    """`rollout`'s own bookkeeping (warm-up undone with the truth, free steps integrated
    from the last true values), fed the true standardised differences, gives the series."""
    m = Forecaster(trend / "diff.pt")
    table = m.read(trend / "trend.csv")
    z, lengths = m.view(table)

    def oracle(m, z, lengths, k, free, known=None, paths=0):
        rows = []
        for i, n in enumerate(k + free):
            part = z[int(np.sum(lengths[:i])) :][:n]
            shifted = torch.cat([torch.full((1, part.shape[1]), float("nan")), part[1:]])  # row r forecasts row r
            rows.append(shifted)
        forecast = torch.cat(rows)
        expected = ~torch.isnan(forecast[:, 0]).numpy()
        return forecast, expected

    monkeypatch.setattr(freerun, "_free_run", oracle)
    result, _ = rollout(trend / "diff.pt", trend / "trend.csv", warmup=30, quiet=True)
    x, yhat = result.columns["x"], result.columns["yhat"]
    first = np.concatenate([np.arange(n) < 2 for n in result.lengths])  # row 0 and the differencing's
    assert np.isnan(yhat[first]).all()
    assert np.allclose(yhat[~first], x[~first], rtol=0, atol=1e-4)  # float32 standardised differences


def test_a_differenced_model_keeps_the_original_scale_and_starts_from_the_last_true_value(trend):
    table = read_table(trend / "trend.csv")
    shifted = {**table.columns, "x": table.numbers("x") + 1000.0}
    lifted = SeriesTable(shifted, ["x"], [], np.array([96] * 3), "shifted")
    base, _ = rollout(trend / "diff.pt", trend / "trend.csv", warmup=40, quiet=True)
    up, _ = rollout(trend / "diff.pt", lifted, warmup=40, quiet=True)
    # differences do not see the level: the same forecasts, 1000 higher (none flat at the top of training)
    lift = up.columns["yhat"] - base.columns["yhat"]
    assert (np.isnan(lift) == np.isnan(base.columns["yhat"])).all()
    assert np.allclose(lift[~np.isnan(lift)], 1000.0, rtol=0, atol=1e-9)
    one, _ = predict(trend / "diff.pt", trend / "trend.csv", quiet=True)
    k = base.offsets[:-1] + 40  # the first free step forecasts from the last true value, as predict does
    assert np.allclose(base.columns["yhat"][k], one.columns["yhat"][k], atol=1e-5)
    ckpt = load_checkpoint(trend / "diff.pt")
    assert ckpt["norm"]["lags"] == [1] and ckpt["data"]["season"] == 12


def test_naive_seasonal_naive_and_mase_by_hand():
    values = np.array([[1.0], [3.0], [2.0], [6.0], [5.0], [10.0], [20.0], [30.0]])  # two series: 5 + 3 rows
    start = np.array([0, 0, 0, 5, 5])
    pos = np.array([3, 4, 4, 1, 2])
    origin = np.array([3, 3, 4, 1, 1])
    naive, seasonal = naive_forecasts(values, start, pos, origin, 2)
    assert naive[:, 0].tolist() == [2.0, 2.0, 6.0, 10.0, 10.0]
    assert np.isnan(seasonal[3, 0]) and seasonal[[0, 1, 2, 4], 0].tolist() == [3.0, 2.0, 2.0, 10.0]
    offsets = np.array([0, 5, 8])
    history = np.ones(8, bool)
    own = series_scales(values, offsets, history)[:, 0]
    assert own.tolist() == pytest.approx([(2 + 1 + 4 + 1) / 4, (10 + 10) / 2])  # no step across series
    truth = values[start + pos]
    yhat = truth + np.array([[1.0], [-2.0], [0.5], [4.0], [1.0]])
    per_row = own[[0, 0, 0, 1, 1]][:, None]  # each step's own series' scale
    s = score(yhat, truth, np.ones(5, bool), naive, seasonal, per_row)
    scored = [0, 1, 2, 4]  # the seasonal naive has no value for the fourth: left out of every figure
    e = (yhat - truth)[scored, 0]
    assert s["steps"] == 4 and s["mae"] == pytest.approx(np.abs(e).mean()) and s["mse"] == pytest.approx((e**2).mean())
    assert s["mase"] == pytest.approx(np.mean(np.abs(e) / per_row[scored, 0]))  # 1/2, 2/2, 0.5/2, 1/10
    en = (naive - truth)[scored, 0]
    assert s["naive"]["mae"] == pytest.approx(np.abs(en).mean()) and s["naive"]["rmse"] == pytest.approx(
        np.sqrt((en**2).mean())
    )
    es = (seasonal - truth)[scored, 0]
    assert s["seasonal_naive"]["mae"] == pytest.approx(np.abs(es).mean())
    assert s["seasonal_naive"]["mase"] == pytest.approx(np.mean(np.abs(es) / per_row[scored, 0]))


def test_predict_reports_the_naive_forecasts_on_the_same_steps(trend, tmp_path):
    result, s = predict(
        trend / "plain.pt", trend / "trend.csv", season=12, warmup=3, metrics=tmp_path / "m.json", quiet=True
    )
    x, yhat = result.columns["x"], result.columns["yhat"]
    step = np.concatenate([np.arange(n) for n in result.lengths])
    rows = np.flatnonzero(step >= 12)  # the seasonal naive needs a season of history
    e, en, es = yhat[rows] - x[rows], x[rows - 1] - x[rows], x[rows - 12] - x[rows]
    owner = np.repeat(np.arange(len(result.lengths)), result.lengths)
    own = np.array([np.abs(np.diff(x[owner == i])).mean() for i in range(len(result.lengths))])  # each series'
    assert s["steps"] == len(rows) and s["mae"] == pytest.approx(np.abs(e).mean())
    assert s["naive"]["mae"] == pytest.approx(np.abs(en).mean())
    assert s["seasonal_naive"]["mse"] == pytest.approx((es**2).mean())
    assert s["mase"] == pytest.approx(np.mean(np.abs(e) / own[owner[rows]]))
    assert s["naive"]["mase"] == pytest.approx(np.mean(np.abs(en) / own[owner[rows]]))
    saved = json.loads((tmp_path / "m.json").read_text())
    assert {"mae", "mse", "rmse", "mase", "naive", "seasonal_naive"} <= set(saved)
    assert set(saved["naive"]) == set(saved["seasonal_naive"]) == {"mae", "mse", "rmse", "mase"}


def test_rollout_naive_is_the_last_warmup_value_carried_forward(trend):
    result, s = rollout(trend / "diff.pt", trend / "trend.csv", warmup=50, quiet=True)  # season 12 from the model
    x, free = result.columns["x"], result.columns["phase"] == "free"
    last = np.repeat(x[result.offsets[:-1] + 49], result.lengths)
    seasonal = np.concatenate(
        [np.tile(part[38:50], 4)[: n - 50] for part, n in zip(np.split(x, result.offsets[1:-1]), result.lengths)]
    )
    assert s["naive"]["mae"] == pytest.approx(np.abs(last - x)[free].mean())
    assert s["seasonal_naive"]["mae"] == pytest.approx(np.abs(seasonal - x[free]).mean())
    assert s["season"] == 12


def test_the_summary_says_plainly_when_the_model_loses(trend, cli):
    result = cli("predict", trend / "plain.pt", trend / "trend.csv", "--season", "12", "-o", "/dev/null")
    assert result.exit_code == 0
    first, *rest = result.stderr.splitlines()
    assert "naive MAE" in first and "seasonal naive MAE" in first
    s = predict(trend / "plain.pt", trend / "trend.csv", season=12, quiet=True)[1]
    lost = [k for k in ("naive", "seasonal_naive") if s[k]["mae"] < s["mae"]]
    assert lost == ["naive", "seasonal_naive"] and len(rest) == 2  # an undifferenced model of a trend
    for line in rest:
        assert "the model is worse than the" in line


@pytest.mark.parametrize("diffed", [False, True])
def test_backtest_rows_origins_and_h(trend, diffed):
    model = trend / ("diff.pt" if diffed else "plain.pt")
    table, s = backtest(model, trend / "trend.csv", horizon=6, start=0.75, stride=5, quiet=True)
    origins = [72, 77, 82, 87]  # ceil(0.75 * 96) = 72, every 5, while origin + 6 <= 96
    assert list(table.columns)[:4] == ["series", "origin", "h", "t"]
    assert len(table) == 3 * len(origins) * 6 and s["origins"] == 3 * len(origins)
    assert table.columns["origin"].reshape(3, -1, 6)[:, :, 0].tolist() == [origins] * 3
    assert table.columns["h"].reshape(-1, 6).tolist() == [[1, 2, 3, 4, 5, 6]] * 12
    t = table.columns["t"].astype(float)
    assert (t == table.columns["origin"] + table.columns["h"] - 1).all()  # gen's t is the step
    x = read_table(trend / "trend.csv").numbers("x")
    rows = np.repeat([0, 96, 192], 24) + t.astype(int)
    assert (table.columns["x"].astype(float) == x[rows]).all()
    assert (table.columns["naive"].astype(float) == x[rows - table.columns["h"]]).all()
    assert len(s["by_h"]) == 6 and [b["h"] for b in s["by_h"]] == list(range(1, 7))
    assert s["by_h"][0]["mae"] == pytest.approx(np.abs(table.columns["yhat"] - x[rows])[table.columns["h"] == 1].mean())


@pytest.mark.parametrize("diffed", [False, True])
def test_backtest_is_predict_at_h1_and_rollout_from_each_origin(trend, diffed):
    model = trend / ("diff.pt" if diffed else "plain.pt")
    table, _ = backtest(model, trend / "trend.csv", horizon=4, start=80, stride=3, quiet=True)
    one, _ = predict(model, trend / "trend.csv", quiet=True)
    h1 = table.columns["h"] == 1
    assert np.allclose(table.columns["yhat"][h1], one.columns["yhat"][_rows(table, h1)], rtol=1e-5, atol=1e-5)
    for origin in (80, 83, 92):
        free, _ = rollout(model, trend / "trend.csv", warmup=origin, steps=4, quiet=True)
        mine = table.columns["origin"] == origin
        ends = np.concatenate([np.arange(n) >= origin for n in free.lengths])
        assert np.allclose(table.columns["yhat"][mine], free.columns["yhat"][ends], rtol=1e-5, atol=1e-5)


def _rows(table, which) -> np.ndarray:
    return table.columns["series"][which].astype(int) * 96 + table.columns["t"][which].astype(int)


def test_backtest_through_a_pipe_to_plot(trend, sh):
    run = sh(
        f"seqtool backtest {trend / 'diff.pt'} {trend / 'trend.csv'} --horizon 12 --metrics m.json "
        "| seqtool plot -o bt.png"
    )
    assert run.returncode == 0, run.stderr
    assert run.stderr.decode().startswith("seqtool: backtest (")
    saved = json.loads(sh("cat m.json").stdout)
    assert saved["horizon"] == 12 and len(saved["by_h"]) == 12 and saved["seasonal_naive"] is not None


def test_a_backtest_with_nothing_to_score_says_so_in_one_line(small_model, cli, tmp_path):
    lines = (small_model / "sine.csv").read_text().splitlines()[:41]  # series 0, 40 steps
    head = lines[0].split(",")
    kept = [
        lines[0],
        *lines[1:31],
        *(",".join(c if n != "x" else "" for n, c in zip(head, r.split(","))) for r in lines[31:]),
    ]
    (tmp_path / "late.csv").write_text("\n".join(kept) + "\n")  # no truth after step 29
    result = cli("backtest", small_model / "m.pt", tmp_path / "late.csv", "--horizon", "3", "--start", "31")
    assert result.exit_code == 0, result.stderr
    said = [line for line in result.stderr.splitlines() if line.startswith("seqtool: backtest")]
    assert said == ["seqtool: backtest: no known targets to score"], result.stderr


@pytest.mark.parametrize(
    "args, fragments",
    [
        (("train", "{csv}", "--diff", "96"), ("--diff 96 needs at least 98",)),
        (("train", "{csv}", "--diff", "1.5"), ("--diff must be",)),
        (("train", "{csv}", "--diff", "-1"), ("--diff must be",)),
        (("train", "{csv}", "--diff", "0,12"), ("--diff must be",)),
        (("backtest", "{diff}", "{csv}", "--horizon", "0"), ("--horizon must be",)),
        (("backtest", "{diff}", "{csv}", "--horizon", "3", "--start", "95"), ("leaves no origin",)),
        (("backtest", "{diff}", "{csv}", "--horizon", "3", "--start", "1.5"), ("--start must be",)),
        (("backtest", "{diff}", "{csv}", "--horizon", "3", "--start", "-0.2"), ("--start must be",)),
        (("predict", "{diff}", "{csv}", "--season", "96"), ("no seasonal naive forecast",)),
        (("rollout", "{diff}", "{csv}", "--season", "0"), ("--season must be",)),
        (("rollout", "{diff}", "{csv}", "--warmup", "1"), ("needs at least 2 steps of warm-up",)),
    ],
)
def test_bad_forecasting_input_is_one_line_and_exit_2(trend, cli, args, fragments):
    argv = [a.format(csv=trend / "trend.csv", diff=trend / "diff.pt") for a in args]
    one_error_line(cli(*argv, "-q") if argv[0] != "train" else cli(*argv, "-o", trend / "never.pt", "-q"), *fragments)
    assert not (trend / "never.pt").exists()


def test_the_models_season_is_left_out_for_series_too_short_for_it(trend, tmp_path):
    write_table(generators.trend(n_series=2, length=10, seed=5), tmp_path / "short.csv")
    _, s = predict(trend / "diff.pt", tmp_path / "short.csv", quiet=True)  # the model's season: 12
    assert s["season"] is None and s["seasonal_naive"] is None and s["naive"]["mae"] > 0 and s["steps"] == 2 * 8
    with pytest.raises(SeqtoolError, match="no seasonal naive forecast can be made"):
        predict(trend / "diff.pt", tmp_path / "short.csv", season=12, quiet=True)


def test_diff_is_refused_for_a_mapping_table(tmp_path):
    with pytest.raises(SeqtoolError, match="--diff is for next-step forecasting"):
        train(generators.sincos(n_series=2, length=40), tmp_path / "m.pt", TrainConfig(**SMALL, diff="1"), quiet=True)


def test_training_ends_by_setting_the_model_against_the_naive_forecast(cli, tmp_path):
    """An under-trained model of a trend loses to repeating the last value: train says so
    and names the cure."""
    write_table(generators.trend(n_series=1, length=240, seed=3), tmp_path / "t.csv")
    result = cli(
        "train", tmp_path / "t.csv", "-o", tmp_path / "m.pt", "--hidden", "4", "--steps", "5", "--window", "24"
    )
    assert result.exit_code == 0, result.stderr
    lines = result.stderr.splitlines()
    assert lines[-3].startswith("seqtool: validation, one step ahead, original scale: MSE") and "naive MAE" in lines[-3]
    assert lines[-2].startswith("seqtool: the model is worse than the naive forecast") and lines[-2].endswith(
        "try --diff 1"
    )
    assert lines[-1].startswith("seqtool: trained lstm")


# --- time features ------------------------------------------------------------------------


def _dated(n: int, start: str, unit: str = "D", values=None) -> SeriesTable:
    dates = (np.datetime64(start, unit) + np.arange(n)).astype("datetime64[D]").astype(str)
    x = np.sin(np.arange(n) / 5.0) if values is None else values
    return SeriesTable({"date": dates, "value": np.asarray(x, float)}, ["value"], [], np.array([n]), "dated")


def test_time_features_follow_the_calendar_and_the_spacing():
    from seqtool.data.timefeatures import TimeFeatures

    daily = TimeFeatures.choose(_dated(30, "2024-02-20"))
    assert daily.column == "date" and daily.cycles == (("days", 7.0), ("days", 365.25))
    f = daily.of(np.array(["2024-02-26", "2024-03-04", "2024-06-30"], dtype="datetime64[D]"))
    assert np.allclose(f[0, :2], f[1, :2])  # a week apart: the same day of the week
    assert np.allclose(np.hypot(f[:, 0::2], f[:, 1::2]), 1.0)
    monthly = TimeFeatures.choose(_dated(24, "2020-01", "M"))
    assert monthly.cycles == (("months", 12.0),)
    f = monthly.of(np.array(["2020-01-01", "2021-01-01", "2020-07-01"], dtype="datetime64[D]"))
    assert np.allclose(f[0], f[1]) and np.allclose(f[2], -f[0])  # a year apart: the same; half a year: opposite
    numeric = TimeFeatures.choose(generators.trend(n_series=1, length=30), (12.0,))
    assert numeric.cycles == (("t", 12.0),) and np.allclose(numeric.of(np.array([3.0]))[0], [1.0, 0.0], atol=1e-12)


@pytest.fixture(scope="module")
def calendar(tmp_path_factory):
    """A dated series whose level follows the day of the year, and a model with --time-features."""
    d = tmp_path_factory.mktemp("calendar")
    n = 500
    doy = np.arange(n) * 2 * np.pi / 365.25
    table = _dated(n, "2021-01-01", values=10 + 5 * np.sin(doy) + 0.3 * np.random.default_rng(0).normal(size=n))
    write_table(table, d / "days.csv")
    train(table, d / "tf.pt", TrainConfig(**SMALL, x="value", time_features=True), quiet=True)
    return d


def test_time_features_are_fed_past_the_end_as_within_the_data(calendar):
    """A rollout --horizon past the end of a cut table (dates made by going on) equals the
    rollout of the full table (its own dates) over the same steps."""
    full = read_table(calendar / "days.csv")
    cut = {n: c[:400] for n, c in full.columns.items()}
    cut = SeriesTable({**cut, "value": cut["value"].astype(float)}, ["value"], [], np.array([400]), "cut")
    beyond, _ = rollout(calendar / "tf.pt", cut, horizon=30, quiet=True)
    within, _ = rollout(calendar / "tf.pt", calendar / "days.csv", warmup=400, steps=30, quiet=True)
    assert beyond.columns["date"][400:].tolist() == within.columns["date"][400:430].tolist()
    assert np.allclose(beyond.columns["yhat"][400:], within.columns["yhat"][400:430], rtol=1e-6, atol=1e-6)
    ckpt = load_checkpoint(calendar / "tf.pt")
    assert ckpt["data"]["time"] == {"column": "date", "cycles": [["days", 7.0], ["days", 365.25]]}
    assert ckpt["model"]["n_in"] == 1 + 4


def test_backtest_with_time_features_is_rollout_from_each_origin(calendar):
    table, _ = backtest(calendar / "tf.pt", calendar / "days.csv", horizon=5, start=450, stride=20, quiet=True)
    for origin in (450, 470, 490):
        free, _ = rollout(calendar / "tf.pt", calendar / "days.csv", warmup=origin, steps=5, quiet=True)
        mine = table.columns["origin"] == origin
        assert np.allclose(table.columns["yhat"][mine], free.columns["yhat"][origin:], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(
    "args, fragments",
    [
        (("--period", "7"), ("--period names the cycles of --time-features",)),
        (("--time-features", "--period", "0"), ("--period must be",)),
        (("--time-features", "--period", "a"), ("--period must be",)),
    ],
)
def test_time_feature_options_are_checked(calendar, cli, args, fragments):
    one_error_line(
        cli("train", calendar / "days.csv", "--x", "value", "-o", calendar / "never.pt", "-q", *args), *fragments
    )


def test_time_features_need_a_time_column(calendar, cli, tmp_path):
    write_table(generators.trend(n_series=1, length=40), tmp_path / "t.csv")
    one_error_line(
        cli("train", tmp_path / "t.csv", "--time-features", "-o", tmp_path / "m.pt"),
        "holds numbers, not dates",
        "--period",
    )
    (tmp_path / "plain.csv").write_text("x\n" + "\n".join(str(v) for v in range(40)) + "\n")
    one_error_line(
        cli("train", tmp_path / "plain.csv", "--time-features", "-o", tmp_path / "m.pt"), "needs a time column"
    )
    (tmp_path / "nodate.csv").write_text("value\n" + "\n".join(str(v) for v in range(40)) + "\n")
    one_error_line(
        cli("predict", calendar / "tf.pt", tmp_path / "nodate.csv"), "reads time features from column 'date'"
    )


# --- --log-values: the logarithm, for series that grow by a factor ------------------------


@pytest.mark.parametrize("lags", [(), (1,), (1, 12)])
def test_logged_differencing_round_trips_and_undoes_an_oracle(lags):
    x = 100 * np.exp(np.cumsum(np.random.default_rng(2).normal(0.01, 0.05, size=(60, 2)), axis=0))
    diff = Differencing(lags, log=True)
    d = diff.difference(x)
    np.testing.assert_allclose(d, _by_hand(np.log(x), lags), rtol=0, atol=1e-12)
    np.testing.assert_allclose(diff.integrate(x[None, : diff.order], d[None])[0], x[diff.order :], rtol=1e-12)
    full = np.full_like(x, np.nan)
    full[diff.order :] = d
    np.testing.assert_allclose(diff.undo(full, x)[diff.order :], x[diff.order :], rtol=1e-12)
    with pytest.raises(SeqtoolError, match="every value must be positive; got 0"):
        diff.difference(np.vstack([x, [[1.0, 0.0]]]))


@pytest.fixture(scope="module")
def growth(tmp_path_factory):
    """Three series that grow by a factor, their season growing with them (all positive),
    and a Gaussian model of them with --log-values --diff 1."""
    d = tmp_path_factory.mktemp("growth")
    base = generators.trend(n_series=3, length=96, seed=0)
    table = SeriesTable.from_arrays(list(100 * np.exp(0.3 * base.x[:, 0].reshape(3, 96))), t=[np.arange(96.0)] * 3)
    write_table(table, d / "growth.csv")
    train(table, d / "log.pt", TrainConfig(**SMALL, diff="1", log_values=True, loss="gaussian", season=12), quiet=True)
    return d


def test_a_logged_model_forecasts_on_the_original_scale_with_intervals_even_in_log(growth, cli):
    assert load_checkpoint(growth / "log.pt")["norm"]["log"] is True
    result = cli(
        "predict", growth / "log.pt", growth / "growth.csv", "--metrics", growth / "m.json", "-o", growth / "p.csv"
    )
    assert result.exit_code == 0, result.stderr
    p = read_table(growth / "p.csv")
    lo, yhat, hi, x = (p.numbers(c, missing_ok=True) for c in ("yhat_lo", "yhat", "yhat_hi", "x"))
    known = ~np.isnan(yhat)
    assert known.sum() == 3 * 94 and (lo[known] > 0).all() and (lo < yhat)[known].all() and (yhat < hi)[known].all()
    np.testing.assert_allclose((hi / yhat)[known], (yhat / lo)[known], rtol=1e-5)  # symmetric in log: exp(mu +- z s)
    assert np.median(np.abs(yhat - x)[known] / x[known]) < 0.3  # on the series' scale (values 30-500)
    m = json.loads((growth / "m.json").read_text())
    assert m["crps"] is not None and 0 < m["crps"] < m["mae"]
    result = cli(
        "rollout",
        growth / "log.pt",
        growth / "growth.csv",
        "--warmup",
        "60",
        "--samples",
        "30",
        "--paths",
        growth / "paths.csv",
        "-o",
        "/dev/null",
        "-q",
    )
    assert result.exit_code == 0, result.stderr
    drawn = read_table(growth / "paths.csv").numbers("yhat", missing_ok=True)
    assert (~np.isnan(drawn)).sum() == 30 * 3 * 94 and (drawn[~np.isnan(drawn)] > 0).all()  # every path positive


def test_a_logged_model_without_lags_rolls_out_on_the_original_scale(growth):
    train(growth / "growth.csv", growth / "nolags.pt", TrainConfig(**SMALL, log_values=True), quiet=True)
    free, _ = rollout(growth / "nolags.pt", growth / "growth.csv", warmup=40, quiet=True)
    one, _ = predict(growth / "nolags.pt", growth / "growth.csv", quiet=True)
    k = free.offsets[:-1] + 40  # the first free step forecasts from the last true value, as predict does
    np.testing.assert_allclose(free.columns["yhat"][k], one.columns["yhat"][k], rtol=1e-5)
    assert (free.columns["yhat"][free.offsets[:-1] + 60] > 20).all()  # exp'd: the series' scale, not its log (3-6)


def test_forecasts_that_exp_past_the_representable_are_a_failed_run():
    from seqtool.errors import RunFailed

    with pytest.raises(RunFailed, match="exceed 1e[+]150"):
        Differencing((1,), log=True).integrate(np.ones((1, 1, 1)), np.full((1, 800, 1), 1.0))  # log grows by 1 a step


def test_the_log_is_refused_where_a_value_is_not_positive_and_for_a_mapping_table(growth, cli, tmp_path):
    table = read_table(growth / "growth.csv")
    x = table.numbers("x")
    x[100] = -1.5
    write_table(Table({**table.columns, "x": x}, "bad"), tmp_path / "bad.csv")
    one_error_line(
        cli("train", tmp_path / "bad.csv", "--log-values", "-o", tmp_path / "never.pt"),
        "bad.csv",
        "--log-values",
        "must be positive; got -1.5",
    )
    one_error_line(cli("predict", growth / "log.pt", tmp_path / "bad.csv"), "bad.csv", "must be positive; got -1.5")
    assert not (tmp_path / "never.pt").exists()
    with pytest.raises(SeqtoolError, match="--log-values is for next-step forecasting"):
        train(
            generators.sincos(n_series=2, length=40),
            tmp_path / "m.pt",
            TrainConfig(**SMALL, log_values=True),
            quiet=True,
        )
