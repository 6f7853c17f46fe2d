"""Distribution heads: `train --loss
gaussian|studentt` learns a distribution of each next value; `predict` writes its interval
at `--level` and scores it (coverage, width, pinball, CRPS)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from conftest import one_error_line

from seqtool.config import TrainConfig
from seqtool.data import generators
from seqtool.data.tables import positions, write_table
from seqtool.forecast.metrics import interval_scores
from seqtool.forecast.predict import predict
from seqtool.model.checkpoint import load_checkpoint
from seqtool.model.network import GaussianHead, StudentTHead, t_quantile
from seqtool.training.run import train


def test_the_heads_negative_log_likelihoods_are_torch_distributions():
    torch.manual_seed(0)
    out, y = torch.randn(4, 7, 6), torch.randn(4, 7, 2)
    y[0, :3] = float("nan")  # no target there
    known = ~torch.isnan(y)
    gauss, student = GaussianHead(5, 2), StudentTHead(5, 2)
    loss, count = gauss.loss(out[..., :4], y)
    mean, scale = gauss.parts(out[..., :4])
    want = -torch.distributions.Normal(mean, scale).log_prob(torch.nan_to_num(y))[known].mean()
    assert int(count) == int(known.sum()) and torch.allclose(loss, want)
    loss, _ = student.loss(out, y)
    loc, scale, df = student.parts(out)
    assert (df > 2).all() and (scale > 0).all()
    assert torch.allclose(
        loss, -torch.distributions.StudentT(df, loc, scale).log_prob(torch.nan_to_num(y))[known].mean()
    )
    assert torch.equal(gauss.point(out[..., :4]), mean) and torch.equal(student.point(out), loc)


def test_the_student_t_quantile_against_tables_and_samples():
    df = torch.tensor([3.0, 5.0, 30.0])
    np.testing.assert_allclose(t_quantile(df, 0.975).numpy(), [3.1824, 2.5706, 2.0423], atol=1e-4)  # printed tables
    np.testing.assert_allclose(t_quantile(df, 0.1).numpy(), -t_quantile(df, 0.9).numpy(), atol=1e-6)
    torch.manual_seed(0)
    draws = (
        torch.distributions.StudentT(torch.tensor(2.5))
        .sample(
            (400_000,),
        )
        .numpy()
    )
    for q in (0.05, 0.5, 0.8):  # the sample quantile's standard error at 0.05: 0.009
        assert float(t_quantile(torch.tensor(2.5), q)) == pytest.approx(np.quantile(draws, q), abs=0.04)


def test_the_closed_form_crps_is_the_sample_estimate_and_coverage_counts_truths_inside():
    rng = np.random.default_rng(0)
    y = rng.normal(0.3, 1.5, size=(2000, 1))
    point, scale = np.full_like(y, 0.0), np.full_like(y, 1.0)
    got = {"point": point, "lo": point - 1.2816 * scale, "hi": point + 1.2816 * scale, "scale": scale}
    scores = interval_scores(y, got, 80.0, np.ones(len(y), bool))
    x = rng.normal(0.0, 1.0, size=(20_000, 2))  # CRPS = E|X - y| - E|X - X'| / 2
    sample = np.mean([np.mean(np.abs(x[:, 0] - v)) - 0.5 * np.mean(np.abs(x[:, 0] - x[:, 1])) for v in y[:300, 0]])
    exact = interval_scores(y[:300], {k: v[:300] for k, v in got.items()}, 80.0, np.ones(300, bool))["crps"]
    assert exact == pytest.approx(sample, rel=0.02)
    inside = np.mean((y > -1.2816) & (y < 1.2816))
    assert scores["coverage"] == pytest.approx(inside) and scores["width"] == pytest.approx(2 * 1.2816)


@pytest.fixture(scope="module")
def noisy(tmp_path_factory):
    """A Gaussian model of `gen sine --noise 0.1`, and a fresh noisy table."""
    d = tmp_path_factory.mktemp("noisy")
    write_table(generators.sine(n_series=32, length=200, noise=0.1, seed=0), d / "train.csv")
    write_table(generators.sine(n_series=16, length=200, noise=0.1, seed=1), d / "fresh.csv")
    train(d / "train.csv", d / "g.pt", TrainConfig(loss="gaussian", hidden=16, steps=600), quiet=True)
    return d


def test_predict_writes_the_interval_on_the_original_scale_and_it_covers_what_it_says(noisy, cli):
    ckpt = load_checkpoint(noisy / "g.pt")
    assert ckpt["model"]["loss"] == "gaussian" and ckpt["train"]["loss"] == "gaussian"
    result = cli(
        "predict",
        noisy / "g.pt",
        noisy / "fresh.csv",
        "--level",
        "80",
        "--metrics",
        noisy / "m.json",
        "-o",
        noisy / "p.csv",
    )
    assert result.exit_code == 0, result.stderr
    from seqtool.data.tables import read_table

    p = read_table(noisy / "p.csv")
    lo, yhat, hi = (p.numbers(c, missing_ok=True) for c in ("yhat_lo", "yhat", "yhat_hi"))
    known = ~np.isnan(yhat)
    assert (lo[known] < yhat[known]).all() and (yhat[known] < hi[known]).all()
    np.testing.assert_allclose(
        (hi - yhat)[known], (yhat - lo)[known], rtol=1e-5
    )  # symmetric (float32 quantiles), in table units
    m = json.loads((noisy / "m.json").read_text())
    assert 0.72 <= m["coverage"] <= 0.88 and m["level"] == 80.0
    sigma = m["width"] / (2 * 1.2816)
    assert 0.08 <= sigma <= 0.16  # the noise is 0.1; the level is not known exactly from a noisy past
    assert m["crps"] < m["mae"]


def test_with_a_season_every_figure_of_a_report_is_over_the_same_steps(noisy, tmp_path):
    """The seasonal naive forecast is unknown for each series' first season: coverage and
    width leave those steps out, as MSE and MAE do."""
    result, m = predict(noisy / "g.pt", noisy / "fresh.csv", season=30, level=80.0, quiet=True)
    x, yhat = result.columns["x"], result.columns["yhat"]
    lo, hi = result.columns["yhat_lo"], result.columns["yhat_hi"]
    same = ~np.isnan(yhat) & (positions(result.lengths) >= 30)  # the truth, the forecasts and both naive ones
    assert m["steps"] == int(same.sum()) < int((~np.isnan(yhat)).sum())
    assert m["coverage"] == pytest.approx(float(np.mean((lo <= x)[same] & (x <= hi)[same])), rel=1e-12)
    assert m["width"] == pytest.approx(float(np.mean((hi - lo)[same])), rel=1e-9)


def test_a_student_t_model_scores_its_interval_and_crps(noisy, cli):
    train(noisy / "train.csv", noisy / "t.pt", TrainConfig(loss="studentt", hidden=16, steps=600), quiet=True)
    result = cli(
        "predict",
        noisy / "t.pt",
        noisy / "fresh.csv",
        "--warmup",
        "10",
        "--metrics",
        noisy / "t.json",
        "-o",
        "/dev/null",
    )
    assert result.exit_code == 0, result.stderr
    m = json.loads((noisy / "t.json").read_text())
    assert 0.72 <= m["coverage"] <= 0.88 and m["crps"] is not None and 0.5 * m["mae"] < m["crps"] < m["mae"]


def test_a_point_model_has_no_interval_and_bad_levels_and_losses_are_refused(noisy, small_model, cli):
    result = cli("predict", small_model / "m.pt", small_model / "sine.csv", "-o", noisy / "q.csv")
    assert result.exit_code == 0 and "yhat_lo" not in (noisy / "q.csv").read_text().splitlines()[0]
    for level in ("0", "100", "-5", "nan"):
        one_error_line(cli("predict", noisy / "g.pt", noisy / "fresh.csv", "--level", level), "--level")
    one_error_line(
        cli("train", noisy / "train.csv", "--loss", "laplace", "-o", noisy / "x.pt"),
        "--loss",
        "'laplace' is not one of",
    )


# --- sample paths (item 3) --------------------------------------------------------------------


def test_each_sample_path_carries_its_own_state_and_is_fed_its_own_draws(noisy, monkeypatch):
    """With the draw made deterministic (the mean plus 0.05 x the path's index), path p of
    the batch is the free run of a single series fed mean + 0.05 p at every step."""
    from seqtool.data.reading import read_series
    from seqtool.forecast.forecaster import next_step_model
    from seqtool.forecast.freerun import _free_run
    from seqtool.model.network import Stepper

    m = next_step_model(noisy / "g.pt")
    table = read_series(noisy / "fresh.csv")
    z, lengths = m.view(table)
    z, lengths = z[: lengths[0]], lengths[:1]  # one series
    monkeypatch.setattr(
        GaussianHead, "sample", lambda self, out: self.point(out) + 0.05 * torch.arange(len(out))[:, None]
    )
    k, free = np.array([30]), np.array([12])
    paths, _ = _free_run(m, z, lengths, k, free, paths=3)
    assert paths.shape == (3, 42, 1)
    step = Stepper(m.net)
    warm, state = m.teacher_forced(z[:30], k, final_state=True, raw=True)
    for p in range(3):
        prev = m.net.head.point(warm[-1:]) + 0.05 * p
        states, got = step.split(state), [prev]
        for _ in range(11):
            prev, states = step(prev, states)
            prev = prev + 0.05 * p
            got.append(prev)
        torch.testing.assert_close(paths[p, 30:, 0], torch.cat(got)[:, 0])


def test_rollout_quantiles_are_those_of_the_paths_and_cover_a_free_run(noisy, cli):
    result = cli("rollout", noisy / "g.pt", noisy / "fresh.csv", "--warmup", "20", "--steps", "20", "--samples", "300",
                 "--paths", noisy / "paths.csv", "--metrics", noisy / "r.json", "-o", noisy / "r.csv",
                 "--level", "80")  # fmt: skip
    assert result.exit_code == 0, result.stderr
    from seqtool.data.tables import read_table

    r, p = read_table(noisy / "r.csv"), read_table(noisy / "paths.csv")
    assert list(p.columns) == ["series", "path", "t", "phase", "yhat"]
    draws = p.numbers("yhat", missing_ok=True).reshape(300, -1)
    free = r.columns["phase"] == "free"
    column = lambda name: r.numbers(name, missing_ok=True)[free]  # noqa: E731
    np.testing.assert_allclose(column("yhat_lo"), np.quantile(draws, 0.1, axis=0)[free])
    np.testing.assert_allclose(column("yhat_hi"), np.quantile(draws, 0.9, axis=0)[free])
    np.testing.assert_allclose(column("yhat"), draws.mean(axis=0)[free])
    m = json.loads((noisy / "r.json").read_text())
    assert 0.72 <= m["coverage"] <= 0.88 and m["crps"] < m["mae"]


def test_the_sample_crps_is_the_closed_form_for_many_draws():
    rng = np.random.default_rng(1)
    y = rng.normal(0.0, 1.3, size=(400, 1))
    point, scale = np.zeros_like(y), np.ones_like(y)
    base = {"point": point, "lo": point - 1.28, "hi": point + 1.28}
    exact = interval_scores(y, {**base, "scale": scale}, 80.0, np.ones(len(y), bool))["crps"]
    drawn = interval_scores(
        y, {**base, "paths": rng.normal(0.0, 1.0, size=(4000, 400, 1))}, 80.0, np.ones(len(y), bool)
    )["crps"]
    assert drawn == pytest.approx(exact, rel=0.02)


def test_the_student_t_crps_closed_form_is_the_sample_estimate():
    rng = np.random.default_rng(2)
    y = rng.standard_t(3.0, size=(400, 1)) * 0.7 + 0.2
    for df in (2.5, 4.0, 50.0):
        point, scale, dfs = np.zeros_like(y), np.full_like(y, 0.7), np.full_like(y, df)
        base = {"point": point, "lo": point - 1.28, "hi": point + 1.28}
        exact = interval_scores(y, {**base, "scale": scale, "df": dfs}, 80.0, np.ones(len(y), bool))["crps"]
        draws = 0.7 * rng.standard_t(df, size=(8000, 400, 1))
        drawn = interval_scores(y, {**base, "paths": draws}, 80.0, np.ones(len(y), bool))["crps"]
        assert exact == pytest.approx(drawn, rel=0.02)
    normal = interval_scores(y, {**base, "scale": scale}, 80.0, np.ones(len(y), bool))["crps"]
    for many in (1e5, 1e12):  # a t of many df is the normal
        assert interval_scores(y, {**base, "scale": scale, "df": np.full_like(y, many)}, 80.0, np.ones(len(y), bool))[
            "crps"
        ] == pytest.approx(normal, rel=1e-4)


def test_the_log_normal_crps_of_a_logged_model_is_the_sample_estimate():
    rng = np.random.default_rng(3)
    mu, sigma = np.full((300, 1), 4.0), np.full((300, 1), 0.3)
    y = np.exp(rng.normal(4.1, 0.35, size=(300, 1)))
    base = {"point": np.exp(mu), "lo": np.exp(mu - 1.28 * sigma), "hi": np.exp(mu + 1.28 * sigma)}
    exact = interval_scores(y, {**base, "log_scale": sigma}, 80.0, np.ones(300, bool))["crps"]
    drawn = interval_scores(
        y, {**base, "paths": np.exp(rng.normal(4.0, 0.3, size=(8000, 300, 1)))}, 80.0, np.ones(300, bool)
    )["crps"]
    assert exact == pytest.approx(drawn, rel=0.02)
    assert (
        interval_scores(y, {**base, "log_scale": sigma, "df": np.full_like(y, 5.0)}, 80.0, np.ones(300, bool))["crps"]
        is None
    )  # a log-t has no mean


def test_paths_of_a_logged_model_give_their_median_and_of_a_logged_t_no_crps():
    from types import SimpleNamespace

    from seqtool.forecast.intervals import from_paths

    drawn = np.exp(np.random.default_rng(4).normal(size=(999, 5, 1)))
    for head, log in [(GaussianHead(4, 1), False), (GaussianHead(4, 1), True), (StudentTHead(4, 1), True)]:
        point, bounds = from_paths(
            SimpleNamespace(scaling=SimpleNamespace(diff=SimpleNamespace(log=log)), net=SimpleNamespace(head=head)),
            drawn,
            80.0,
        )
        np.testing.assert_array_equal(point, np.median(drawn, axis=0) if log else drawn.mean(axis=0))
        np.testing.assert_array_equal(bounds["hi"], np.quantile(drawn, 0.9, axis=0))
        assert ("paths" in bounds) == (not isinstance(head, StudentTHead))


def test_sample_paths_need_a_distribution_and_paths_need_samples(noisy, small_model, cli):
    one_error_line(
        cli("rollout", small_model / "m.pt", small_model / "sine.csv", "--samples", "10"),
        "forecasts points",
        "--loss gaussian",
    )
    one_error_line(
        cli("rollout", noisy / "g.pt", noisy / "fresh.csv", "--paths", noisy / "none.csv"), "--paths", "--samples"
    )
    one_error_line(cli("rollout", noisy / "g.pt", noisy / "fresh.csv", "--samples", "-1"), "--samples")
    assert not (noisy / "none.csv").exists()


def test_intervals_of_a_differenced_model_are_on_the_original_scale(tmp_path):
    """With --diff 1 the model forecasts standardised differences; the interval of a value
    is that of its difference, rescaled, plus the true past: mean +- z sigma y_std."""
    from seqtool.data.reading import read_series
    from seqtool.forecast.forecaster import Forecaster
    from seqtool.forecast.freerun import roll
    from seqtool.forecast.predict import one_step, teacher_forced

    write_table(generators.trend(length=120, seed=0), tmp_path / "trend.csv")
    train(
        tmp_path / "trend.csv",
        tmp_path / "d.pt",
        TrainConfig(loss="gaussian", diff="1", hidden=8, steps=100, window=24),
        quiet=True,
    )
    m = Forecaster(tmp_path / "d.pt")
    table = read_series(tmp_path / "trend.csv")
    got = teacher_forced(m, table, 80.0)
    known = ~np.isnan(got["point"][:, 0])
    assert known.sum() == len(table.x) - 2  # the first 1 + order rows have none
    np.testing.assert_allclose(
        got["hi"][known] - got["lo"][known], 2 * 1.2815515655446004 * got["scale"][known], rtol=1e-5
    )
    np.testing.assert_allclose(got["point"][known], one_step(m, table)[known])
    assert np.all(
        np.abs(got["point"][known] - table.x[known]) < 20 * got["scale"][known]
    )  # the level, not a difference
    paths = roll(m, table, np.array([100]), np.array([20]), 50)  # 50 sample paths, integrated from their own draws
    assert paths.shape == (50, 120, 1) and np.isfinite(paths[:, 100:]).all()
    assert np.abs(paths[:, 100:].mean(axis=0)[:, 0] - table.x[100:, 0]).mean() < 10 * got["scale"][known].mean()


def test_backtest_samples_paths_from_every_origin(noisy, small_model, cli):
    """h = 1 of the paths is a draw of the one-step distribution: their mean is predict's
    forecast at that row within sampling error; the bounds hold the mean; scores added."""
    result = cli("backtest", noisy / "g.pt", noisy / "fresh.csv", "--horizon", "5", "--samples", "2000",
                 "--metrics", noisy / "b.json", "-o", noisy / "b.csv")  # fmt: skip
    assert result.exit_code == 0, result.stderr
    from seqtool.data.tables import read_table

    b = read_table(noisy / "b.csv")
    lo, yhat, hi = (b.numbers(c) for c in ("yhat_lo", "yhat", "yhat_hi"))
    assert (lo < yhat).all() and (yhat < hi).all()
    cli("predict", noisy / "g.pt", noisy / "fresh.csv", "-o", noisy / "pb.csv", "-q")
    p = read_table(noisy / "pb.csv")
    one = b.numbers("h") == 1
    offsets = np.concatenate([[0], np.cumsum(np.unique(p.columns["series"], return_counts=True)[1])])
    ids = sorted(set(p.columns["series"].tolist()), key=p.columns["series"].tolist().index)
    row = [offsets[ids.index(s)] + int(o) for s, o in zip(b.columns["series"][one], b.numbers("origin")[one])]
    want, sigma = (
        p.numbers("yhat", missing_ok=True)[row],
        (p.numbers("yhat_hi", missing_ok=True) - p.numbers("yhat_lo", missing_ok=True))[row] / 2.563,
    )
    assert np.all(np.abs(yhat[one] - want) < 4 * sigma / np.sqrt(2000))
    m = json.loads((noisy / "b.json").read_text())
    assert 0.6 <= m["coverage"] <= 0.95 and m["crps"] is not None
    one_error_line(
        cli("backtest", small_model / "m.pt", small_model / "sine.csv", "--horizon", "3", "--samples", "5"),
        "forecasts points",
    )
