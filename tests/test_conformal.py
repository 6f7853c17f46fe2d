"""Conformal intervals: `seqtool calibrate` stores a model's own backtest errors per step
ahead, scaled per series; predict, rollout and backtest turn them into intervals;
`backtest --adaptive` corrects them as origins pass."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from conftest import one_error_line

from seqtool.config import TrainConfig
from seqtool.data import generators
from seqtool.data.reading import read_series
from seqtool.data.tables import SeriesTable, read_table, write_table
from seqtool.forecast.backtest import backtest
from seqtool.forecast.calibrate import calibrate
from seqtool.forecast.conformal import Calibration, _at, adaptive_radius, needed, quantile
from seqtool.forecast.predict import predict
from seqtool.forecast.rollout import rollout
from seqtool.training.run import train


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """A point model of a noisy panel (series scaled by their own level), its data, fresh
    data to calibrate on, and the model calibrated from its last 30 steps, 6 ahead."""
    d = tmp_path_factory.mktemp("conformal")
    write_table(generators.panel(n_series=12, length=60, seed=1, short=0), d / "train.csv")
    write_table(generators.panel(n_series=12, length=60, seed=2, short=0), d / "fresh.csv")
    config = TrainConfig(hidden=8, steps=150, window=24, batch=16, scale="series", val=0)
    train(read_series(d / "train.csv"), d / "m.pt", config, quiet=True)
    calibrate(d / "m.pt", d / "fresh.csv", horizon=6, start=-30, output=d / "cal.pt", quiet=True)
    return d


@pytest.mark.parametrize(("n", "level"), [(19, 95.0), (30, 80.0), (9, 50.0)])
def test_split_conformal_covers_the_level_on_exchangeable_errors(n, level):
    """200 repetitions: n calibration scores and 2000 fresh ones from one distribution; the
    mean coverage is ceil((n + 1) level) / (n + 1) (at least the level) within 1 point."""
    rng = np.random.default_rng(0)
    covered = []
    for _ in range(200):
        scores, fresh = np.abs(rng.standard_t(3, n)), np.abs(rng.standard_t(3, 2000))
        radius = Calibration(scores[None, :, None]).radius(level, 1)[0, 0]
        assert radius == quantile(scores, level)
        covered.append(np.mean(fresh <= radius))
    expected = math.ceil((n + 1) * level / 100) / (n + 1)
    assert expected >= level / 100
    assert abs(np.mean(covered) - expected) < 0.01, (np.mean(covered), expected)


def test_the_fewest_scores_a_level_needs():
    assert [needed(level) for level in (50, 80, 90, 95, 99)] == [1, 4, 9, 19, 99]
    assert math.isnan(quantile(np.arange(18.0), 95)) and quantile(np.arange(19.0), 95) == 18.0


def test_stored_errors_are_those_of_a_backtest_by_hand(models):
    table = read_series(models / "fresh.csv")
    result, _ = backtest(models / "m.pt", table, horizon=6, start=-30, quiet=True)
    x, yhat = result.columns["x"], result.columns["yhat"]
    series = result.columns["series"].astype(int)
    first = {i: int(result.columns["origin"][series == i].min()) for i in range(12)}
    scale = {i: np.mean(np.abs(np.diff(table.x[table.offsets[i] : table.offsets[i] + first[i], 0]))) for i in range(12)}
    by_hand = np.abs(x - yhat) / np.array([scale[i] for i in series])
    stored = torch.load(models / "cal.pt", weights_only=True)["calibration"]["scores"].numpy()
    assert stored.shape == (6, 12 * 25, 1)  # h, origins (25 of each series: steps 30..54), outputs
    h = result.columns["h"]
    for k in range(1, 7):
        np.testing.assert_allclose(stored[k - 1, :, 0], by_hand[h == k], rtol=1e-9)


def test_intervals_are_the_stored_quantile_times_each_series_scale(models):
    """rollout --horizon: yhat +- the calibration's quantile at h times the series' scale
    over its warm-up; a series x 1000 gets its interval x 1000 (and the others keep theirs)."""
    table = read_series(models / "train.csv")
    big = np.where(np.repeat(np.arange(12), table.lengths)[:, None] == 3, 1000.0, 1.0)
    write_table(table.with_x(table.x * big), models / "big.csv")
    plain, scores = rollout(models / "cal.pt", table, horizon=6, level=80, quiet=True)
    scaled, _ = rollout(models / "cal.pt", models / "big.csv", horizon=6, level=80, quiet=True)
    free = plain.columns["phase"] == "free"
    series = np.repeat(np.arange(12), plain.lengths)
    stored = torch.load(models / "cal.pt", weights_only=True)["calibration"]["scores"].numpy()[:, :, 0]
    radius = np.array([quantile(stored[h], 80) for h in range(6)])
    scale = np.array([np.mean(np.abs(np.diff(table.x[table.offsets[i] : table.offsets[i + 1], 0]))) for i in range(12)])
    half = (plain.columns["yhat_hi"] - plain.columns["yhat_lo"])[free] / 2
    np.testing.assert_allclose(half, np.tile(radius, 12) * np.repeat(scale, 6), rtol=1e-9)
    np.testing.assert_allclose(plain.columns["yhat"][free] - plain.columns["yhat_lo"][free], half, rtol=1e-9)
    assert np.isnan(plain.columns["yhat_lo"][~free]).all() and scores["intervals"] == "conformal"
    factor = np.where(series[free] == 3, 1000.0, 1.0)
    for key in ("yhat", "yhat_lo", "yhat_hi"):
        np.testing.assert_allclose(scaled.columns[key][free], plain.columns[key][free] * factor, rtol=1e-5)


def test_predict_and_backtest_give_the_calibrated_intervals_and_their_scores(models, tmp_path):
    table = read_series(models / "train.csv")
    stored = torch.load(models / "cal.pt", weights_only=True)["calibration"]["scores"].numpy()[:, :, 0]
    result, scores = predict(models / "cal.pt", table, level=90, quiet=True)
    known = ~np.isnan(result.columns["yhat"])
    half = (result.columns["yhat_hi"] - result.columns["yhat_lo"])[known] / 2
    scale = np.repeat([np.mean(np.abs(np.diff(s[:, 0]))) for s in table.split(table.x)], table.lengths)[known]
    np.testing.assert_allclose(half, quantile(stored[0], 90) * scale, rtol=1e-9)
    assert scores["intervals"] == "conformal" and scores["level"] == 90
    result, scores = backtest(models / "cal.pt", table, horizon=6, start=-12, level=80, quiet=True)
    y, lo, hi = (result.columns[k] for k in ("x", "yhat_lo", "yhat_hi"))
    inside = (lo <= y) & (y <= hi)
    assert scores["coverage"] == pytest.approx(inside.mean())
    winkler = hi - lo + 2 / 0.2 * (np.maximum(lo - y, 0) + np.maximum(y - hi, 0))
    assert scores["winkler"] == pytest.approx(winkler.mean())
    h = result.columns["h"]
    for row in scores["by_h"]:
        assert row["coverage"] == pytest.approx(inside[h == row["h"]].mean())
    own = [inside[result.columns["series"].astype(int) == i].mean() for i in range(12)]
    assert scores["series_near_level"] == pytest.approx(np.mean(np.abs(np.array(own) - 0.8) <= 0.1))
    origin = result.columns["origin"]
    first = scores["by_origin"][0]
    assert first["origin"] == origin.min() and first["coverage"] == pytest.approx(inside[origin == origin.min()].mean())
    _, none = backtest(models / "cal.pt", table, horizon=6, start=-12, intervals="none", quiet=True)
    assert "coverage" not in none and "intervals" not in none


def test_adaptive_inference_recovers_after_a_level_shift_where_split_does_not():
    """One series, 300 origins, one step ahead: errors like the calibration's for 100
    origins, then 3 scales larger. Split conformal keeps its radius and misses; adaptive
    inference covers 80% again within 50 origins of the shift."""
    rng = np.random.default_rng(1)
    calibration = Calibration(np.abs(rng.normal(size=(1, 200, 1))))
    scores = np.abs(rng.normal(size=(300, 1, 1)) + np.where(np.arange(300) >= 100, 3.0, 0.0)[:, None, None])
    origin = np.arange(300)
    adaptive = adaptive_radius(calibration, 80, np.zeros(300, dtype=int), origin, scores)
    split = calibration.radius(80, 1)[0, 0]
    after = slice(150, 300)
    assert np.mean(scores[after] <= split) < 0.2
    assert abs(np.mean(scores[after] <= adaptive[after]) - 0.8) < 0.05
    assert abs(np.mean(scores[:100] <= adaptive[:100]) - 0.8) < 0.1  # no harm before the shift


def test_backtest_adaptive_recovers_on_a_series_whose_level_shifts(tmp_path):
    """A sine model calibrated on noisy sines, backtested on one whose level jumps by 2
    half-way: split conformal's intervals miss after the jump, adaptive ones cover again."""
    train(generators.sine(n_series=32, length=60, seed=0, noise=0.1), tmp_path / "m.pt",
          TrainConfig(hidden=8, steps=200, window=20, val=0), quiet=True)  # fmt: skip
    write_table(generators.sine(n_series=32, length=60, seed=1, noise=0.1), tmp_path / "cal.csv")
    calibrate(tmp_path / "m.pt", tmp_path / "cal.csv", horizon=3, start=20, output=tmp_path / "c.pt", quiet=True)
    wave = generators.sine(n_series=1, length=400, seed=2, span=80, noise=0.1).x[:, 0]
    shifted = SeriesTable.from_arrays([wave + np.where(np.arange(400) >= 200, 2.0, 0.0)])
    runs = {
        a: backtest(tmp_path / "c.pt", shifted, horizon=3, start=100, adaptive=a, quiet=True) for a in (False, True)
    }
    late = {a: np.mean([o["coverage"] for o in s["by_origin"] if o["origin"] >= 250]) for a, (_, s) in runs.items()}
    assert late[False] < 0.5 and late[True] > 0.7, late
    assert runs[True][1]["adaptive"] is True and runs[False][1]["adaptive"] is False


def test_bad_calibration_input_is_one_line_and_exit_2(models, cli, tmp_path):
    one_error_line(
        cli(
            "calibrate",
            models / "m.pt",
            models / "fresh.csv",
            "--horizon",
            "6",
            "--start",
            "-6",
            "-o",
            tmp_path / "c.pt",
        ),
        "--level 95 needs at least 19",
    )  # one origin per series: 12 scores at each h
    one_error_line(
        cli("predict", models / "m.pt", models / "fresh.csv", "--intervals", "conformal"), "is not calibrated"
    )
    one_error_line(cli("backtest", models / "m.pt", models / "fresh.csv", "--horizon", "2", "--adaptive"), "calibrate")
    one_error_line(cli("rollout", models / "cal.pt", models / "fresh.csv", "--horizon", "7"), "h = 1..6")
    assert cli("calibrate", models / "m.pt", models / "fresh.csv", "--horizon", "6", "--start", "-6", "--level", "90",
               "-o", tmp_path / "c90.pt").exit_code == 0  # fmt: skip
    one_error_line(
        cli("backtest", tmp_path / "c90.pt", models / "fresh.csv", "--horizon", "6", "--level", "95"),
        "--level 95 needs at least 19 calibration errors at each h",
    )
    one_error_line(cli("predict", models / "cal.pt", models / "fresh.csv", "--intervals", "model"), "forecasts points")
    ckpt = torch.load(models / "cal.pt", weights_only=True)
    ckpt["calibration"]["scores"][0, 0, 0] = -1.0
    torch.save(ckpt, tmp_path / "edited.pt")
    one_error_line(cli("predict", tmp_path / "edited.pt", models / "fresh.csv"), "calibration.scores holds")
    assert not (tmp_path / "c.pt").exists()


def test_metrics_json_says_where_intervals_come_from(models, cli, tmp_path):
    result = cli("backtest", models / "cal.pt", models / "train.csv", "--horizon", "3", "--start", "-10",
                 "--metrics", tmp_path / "m.json", "-o", tmp_path / "b.csv")  # fmt: skip
    assert result.exit_code == 0, result.stderr
    saved = json.loads((tmp_path / "m.json").read_text())
    assert saved["intervals"] == "conformal" and saved["adaptive"] is False
    assert {"coverage", "width", "pinball", "winkler"} <= set(saved["by_h"][0])
    assert set(saved["by_origin"][0]) == {"origin", "coverage", "rolling"}


def test_the_adaptive_quantile_of_two_sorted_pools_is_that_of_their_union():
    rng = np.random.default_rng(3)
    for _ in range(300):
        stored = np.sort(rng.exponential(size=rng.integers(0, 30)))
        own = sorted(rng.exponential(size=rng.integers(0, 8)).tolist())
        p = float(rng.uniform(-0.2, 1.2))
        union = np.sort(np.concatenate([stored, own]))
        k = min(max(math.ceil((len(union) + 1) * min(max(p, 0), 1)), 1), len(union))  # held within the pool
        expected = union[k - 1] if len(union) else math.nan
        got = _at(stored, own, p)
        assert (math.isnan(got) and math.isnan(expected)) or got == expected, (stored, own, p)


def test_series_without_a_scale_get_no_interval_and_a_warning_naming_them(models, sh, tmp_path):
    table = read_series(models / "fresh.csv")
    flat = SeriesTable.from_arrays([*table.split(table.x)[:3], np.full((40, 1), 7.0)])
    write_table(flat, tmp_path / "flat.csv")
    out = sh(f"seqtool predict {models / 'cal.pt'} {tmp_path / 'flat.csv'} -o p.csv && "
             f"seqtool rollout {models / 'cal.pt'} {tmp_path / 'flat.csv'} --horizon 3 -q -o r.csv")  # fmt: skip
    assert out.returncode == 0, out.stderr
    warned = [line for line in out.stderr.decode().splitlines() if "warning" in line]
    assert len(warned) == 2 and all("no interval for 1 series" in w and "'3'" in w for w in warned), warned
    predicted = read_table(tmp_path / "p.csv")
    lo, yhat = (predicted.numbers(name, missing_ok=True) for name in ("yhat_lo", "yhat"))
    series = predicted.numbers("series")
    assert np.isnan(lo[series == 3]).all() and not np.isnan(lo[(series < 3) & ~np.isnan(yhat)]).any()
    said = sh(f"seqtool calibrate {models / 'm.pt'} {models / 'train.csv'} --horizon 2 --start -5 -o c.pt")
    assert said.returncode == 0 and "is the table the model was trained on" in said.stderr.decode()


def test_more_bad_conformal_input_is_one_line_and_exit_2(models, cli, tmp_path):
    fresh = models / "fresh.csv"
    one_error_line(
        cli("backtest", models / "cal.pt", fresh, "--horizon", "2", "--adaptive", "--intervals", "none"),
        "drop --intervals none",
    )
    train(read_series(fresh), tmp_path / "g.pt", TrainConfig(hidden=4, steps=5, window=24, loss="gaussian"), quiet=True)
    one_error_line(cli("rollout", tmp_path / "g.pt", fresh, "--horizon", "2", "--intervals", "model"), "--samples")
    ckpt = torch.load(models / "cal.pt", weights_only=True)
    for edit, fragment in [
        (lambda c: c["calibration"].pop("source"), "expected scores and source"),
        (lambda c: c["calibration"].update(scores=c["calibration"]["scores"].float()), "expected float64"),
        (lambda c: c["calibration"].update(scores=c["calibration"]["scores"].to_sparse()), "expected float64"),
        (lambda c: c["calibration"].update(scores=torch.full((2, 3, 1), 1e300, dtype=torch.float64)), "1e150"),
    ]:
        edited = {**ckpt, "calibration": dict(ckpt["calibration"])}
        edit(edited)
        torch.save(edited, tmp_path / "edited.pt")
        one_error_line(cli("predict", tmp_path / "edited.pt", fresh), fragment)
    low, _ = backtest(models / "cal.pt", fresh, horizon=2, start=-5, level=1e-9, quiet=True)
    assert not np.isnan(low.columns["yhat_lo"]).any()
