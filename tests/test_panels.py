"""Many series at once: each series scaled by its own level (`--scale series`)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import one_error_line

from seqtool.config import TrainConfig
from seqtool.data import generators
from seqtool.data.scaling import levels
from seqtool.data.tables import SeriesTable, read_table, write_table
from seqtool.forecast.backtest import backtest
from seqtool.forecast.predict import predict
from seqtool.forecast.rollout import rollout
from seqtool.model.checkpoint import load_checkpoint
from seqtool.training.run import train

SMALL = dict(hidden=8, steps=60, window=24, batch=16, scale="series")
KINDS = {
    "plain": {},
    "log-diff": dict(log_values=True, diff="1"),
    "gaussian": dict(loss="gaussian", diff="1"),
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
        train(table, d / f"{name}.pt", TrainConfig(**SMALL, **options), quiet=True)
    return d


def test_a_level_is_the_mean_absolute_value_of_the_steps_read_and_1_for_zeros():
    table = SeriesTable.from_arrays([np.array([2.0, -4.0, 100.0]), np.zeros(4), np.array([-3.0, -3.0])])
    assert levels(table, np.array([2, 4, 2])).ravel().tolist() == [3.0, 1.0, 3.0]
    assert levels(table, table.lengths).ravel().tolist() == pytest.approx([106 / 3, 1.0, 3.0])


@pytest.mark.parametrize("kind", KINDS)
def test_a_panel_times_1000_is_forecast_times_1000(panel, kind):
    """Every command, point forecasts and intervals: the level is the series' own."""
    model, one, big = panel / f"{kind}.pt", panel / "p.csv", panel / "p1000.csv"
    assert load_checkpoint(model)["norm"]["scale"] == "series"
    runs = [
        lambda data: predict(model, data, quiet=True)[0].columns,
        lambda data: rollout(model, data, warmup=30, quiet=True)[0].columns,
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
    one_error_line(local, "'local' is not one of 'global', 'series'")
    mapping = generators.generate("sincos", n_series=2, length=30, seed=0)
    write_table(mapping, tmp_path / "map.csv")
    one_error_line(
        cli("train", tmp_path / "map.csv", "--scale", "series", "-o", tmp_path / "m.pt"),
        "--scale series is for next-step forecasting",
    )
    ragged = SeriesTable.from_arrays([np.arange(1.0, 30.0), np.array([5.0])])
    write_table(ragged, tmp_path / "ragged.csv")
    one_error_line(
        cli("train", tmp_path / "ragged.csv", "--scale", "series", "-o", tmp_path / "m.pt"),
        "series '1' has 1 step(s) to take its level from",
    )
    one_error_line(
        cli("rollout", panel / "plain.pt", panel / "p.csv", "--warmup", "1"), "1 step(s) to take its level from"
    )
    assert not (tmp_path / "m.pt").exists()


def test_a_checkpoint_with_an_unknown_scale_is_refused(panel, tmp_path, cli):
    ckpt = torch.load(panel / "plain.pt", weights_only=True)
    ckpt["norm"]["scale"] = "local"
    torch.save(ckpt, tmp_path / "edited.pt")
    one_error_line(cli("predict", tmp_path / "edited.pt", panel / "p.csv"), "norm.scale is 'local'")
