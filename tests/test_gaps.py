"""Gaps (`train --gaps fill`): empty input cells carried forward, marked by a mask input,
scored nowhere; read by every forecasting command."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import one_error_line

from seqtool.config import TrainConfig
from seqtool.data import generators
from seqtool.data.examples import NEXT_STEP, inputs_and_targets
from seqtool.data.reading import read_history
from seqtool.data.scaling import Differencing
from seqtool.data.tables import SeriesTable, carried, write_table
from seqtool.forecast.backtest import backtest
from seqtool.forecast.predict import predict
from seqtool.forecast.rollout import rollout
from seqtool.model.checkpoint import load_checkpoint
from seqtool.training.run import train

N, T = 8, 60


def _holed(seed: int = 0, share: float = 0.1) -> tuple[SeriesTable, np.ndarray]:
    """Sine series with a share of their input cells emptied (never a series' last), and where."""
    table = generators.sine(n_series=N, length=T, seed=seed)
    x = table.x.copy()
    holes = np.random.default_rng(seed).random(len(x)) < share
    holes[table.offsets[1:] - 1] = False
    x[holes, 0] = np.nan
    return table.with_x(x), holes


@pytest.fixture(scope="module")
def gapped(tmp_path_factory):
    folder = tmp_path_factory.mktemp("gaps")
    table, holes = _holed()
    write_table(table, folder / "gap.csv")
    config = TrainConfig(hidden=16, steps=150, window=20, batch=16, val=0)
    train(folder / "gap.csv", folder / "m.pt", config, quiet=True)
    return folder, holes


def test_carried_takes_the_last_value_before_within_each_series():
    nan = np.nan
    x = np.array([[nan, 1], [2, nan], [nan, nan], [4, 5], [nan, 7], [8, nan]])
    filled = carried(x, np.array([0, 3, 6]))
    assert filled.tolist() == [[2, 1], [2, 1], [2, 1], [4, 5], [4, 7], [8, 7]]  # a start takes the first after


def test_targets_made_of_a_gap_are_not_scored_and_the_mask_marks_every_input_that_read_one():
    nan = np.nan
    table = read_history(SeriesTable.from_arrays([np.array([1.0, 2, nan, 4, 5, nan, 7, 8])]))
    xs, ys = inputs_and_targets(table, NEXT_STEP, Differencing((1,)), horizon=2, gaps=True)
    d = np.diff([1.0, 2, 2, 4, 5, 5, 7, 8])  # the differences of the series carried forward
    assert xs[0][:, 0].tolist() == d.tolist()
    assert xs[0][:, 1].tolist() == [0, 1, 1, 0, 1, 1, 0]  # a difference that read a gap at either end
    # step s's target at h: the difference at s + h, unless that read a gap
    assert np.array_equal(ys[0][:, 0], [nan, nan, 1, nan, nan, 1, nan], equal_nan=True)
    assert np.array_equal(ys[0][:, 1], [nan, 1, nan, nan, 1, nan, nan], equal_nan=True)


def test_a_table_with_gaps_trains_and_forecasts_with_the_gaps_scored_nowhere(gapped):
    folder, holes = gapped
    ckpt = load_checkpoint(folder / "m.pt")
    assert ckpt["data"]["gaps"] is True and ckpt["model"]["n_in"] == 2  # the series and its mask
    result, scores = predict(folder / "m.pt", folder / "gap.csv", quiet=True)
    written = result.columns["x"]
    assert np.array_equal(np.isnan(written), holes)  # the gaps stay empty in what is written
    yhat = result.columns["yhat"]
    assert np.isfinite(yhat[~np.isin(np.arange(len(yhat)), result.offsets[:-1])]).all()
    scored = ~holes & ~np.isnan(yhat)  # (a series' first step has no forecast, nor a naive one)
    assert scores["steps"] == int(scored.sum())
    assert scores["mae"] == pytest.approx(float(np.mean(np.abs(yhat - written)[scored])), rel=1e-9)

    out, rolled = rollout(folder / "m.pt", folder / "gap.csv", horizon=5, quiet=True)
    free = out.columns["phase"] == "free"
    assert free.sum() == 5 * N and np.isfinite(out.columns["yhat"][free]).all()

    bt, report = backtest(folder / "m.pt", folder / "gap.csv", horizon=3, start=0.5, quiet=True)
    truth, yh = bt.columns["x"], bt.columns["yhat"]
    assert report["steps"] == int((~np.isnan(truth) & ~np.isnan(yh)).sum()) < len(truth)
    assert report["mae"] == pytest.approx(float(np.nanmean(np.abs(yh - truth))), rel=1e-9)


def test_a_backtest_forecast_reads_nothing_after_its_origin(gapped, tmp_path):
    """From an origin with gaps after it, the backtest equals a rollout of the table cut
    there: its free run feeds its own forecasts (mask 0), not the gaps to come."""
    folder, holes = gapped
    table, _ = _holed()
    bt, _ = backtest(folder / "m.pt", folder / "gap.csv", horizon=4, start=0.5, quiet=True)
    begin = int(table.offsets[3])
    chosen = [o for o in range(30, T - 4) if not holes[begin + o - 1] and holes[begin + o : begin + o + 3].any()]
    assert len(chosen) >= 2
    for o in chosen[:2]:
        rows = np.flatnonzero((bt.columns["series"] == "3") & (bt.columns["origin"] == o))
        cut = table.taken(np.arange(begin, begin + o), [o])
        write_table(cut, tmp_path / "cut.csv")
        out, _ = rollout(folder / "m.pt", tmp_path / "cut.csv", horizon=4, quiet=True)
        free = out.columns["phase"] == "free"
        np.testing.assert_allclose(bt.columns["yhat"][rows], out.columns["yhat"][free], rtol=1e-5, atol=1e-6)


def test_a_model_trained_without_gaps_reads_them_as_values_and_says_so(small_model, tmp_path):
    table, _ = _holed()
    write_table(table, tmp_path / "gap.csv")
    warned = r"empty input cell\(s\) read as the value before each; .* trained without gaps"
    with pytest.warns(UserWarning, match=warned):
        result, scores = predict(small_model / "m.pt", tmp_path / "gap.csv", quiet=True)
    assert scores["steps"] > 0 and np.isnan(result.columns["x"]).sum() == np.isnan(table.columns["x"]).sum()


def test_gaps_that_cannot_be_filled_are_refused_in_one_line(cli, tmp_path):
    rows = ["series,x"] + [f"a,{v}" for v in (1, 2, "", 4, 5, 6)] + [f"b,{v}" for v in (1, 2, 3)]
    (tmp_path / "gap.csv").write_text("\n".join(rows) + "\n")
    one_error_line(
        cli("train", tmp_path / "gap.csv", "--gaps", "refuse", "-o", tmp_path / "m.pt"),
        "row 3, column 'x': an empty cell is not a number (--gaps fill fills gaps)",
    )
    long = ["series,x"] + [f"a,{v}" for v in (1, "", "", "", 5)] + [f"b,{v}" for v in (1, 2, 3)]
    (tmp_path / "long.csv").write_text("\n".join(long) + "\n")
    one_error_line(
        cli("train", tmp_path / "long.csv", "-o", tmp_path / "m.pt"),
        "series 'a', column 'x': a gap of 3 steps (rows 2 to 4) in a series of 5",
    )
    (tmp_path / "none.csv").write_text("series,x\na,\na,\nb,1\nb,2\n")
    one_error_line(cli("info", tmp_path / "none.csv"), "series 'a', column 'x': no value (rows 1 to 2 are empty)")
    (tmp_path / "one.csv").write_text("t,x\n0,1\n1,\n2,\n3,\n4,5\n")  # no series column: named as one
    one_error_line(cli("info", tmp_path / "one.csv"), "one.csv: the series, column 'x': a gap of 3 steps (rows 2 to 4)")
    assert not (tmp_path / "m.pt").exists()


def test_info_counts_the_gaps(cli, tmp_path):
    table, holes = _holed()
    write_table(table, tmp_path / "gap.csv")
    result = cli("info", tmp_path / "gap.csv")
    assert result.exit_code == 0, result.stderr
    per_series = np.add.reduceat(holes, table.offsets[:-1])
    line = next(line for line in result.stdout.splitlines() if line.startswith("gaps:"))
    assert f"{int(holes.sum())} empty input cells in {int((per_series > 0).sum())} series" in line


def test_a_damaged_gaps_field_is_refused(gapped, tmp_path):
    folder, _ = gapped
    ckpt = load_checkpoint(folder / "m.pt")
    for value, fragment in ((False, "data.gaps is False"), ("yes", "data.gaps is 'yes'")):
        torch.save({**ckpt, "data": {**ckpt["data"], "gaps": value}}, tmp_path / "bad.pt")
        with pytest.raises(Exception, match=fragment):
            load_checkpoint(tmp_path / "bad.pt")
    del ckpt["data"]["gaps"]
    torch.save(ckpt, tmp_path / "none.pt")
    with pytest.raises(Exception, match="model.n_in 2 is 0 inputs beside the series, and one for each x name"):
        load_checkpoint(tmp_path / "none.pt")


def test_a_series_that_ends_in_a_gap_is_forecast_from_after_its_last_row(gapped, tmp_path):
    folder, _ = gapped
    table, _ = _holed()
    x = table.x.copy()
    x[table.offsets[1] - 2 : table.offsets[1], 0] = np.nan  # series 0's last two steps
    write_table(table.with_x(x), tmp_path / "end.csv")
    out, _ = rollout(folder / "m.pt", tmp_path / "end.csv", horizon=3, quiet=True)
    rows = np.flatnonzero(out.columns["series"] == "0")
    assert len(rows) == T + 3 and (out.columns["phase"][rows[:T]] == "warmup").all()
    assert np.isfinite(out.columns["yhat"][rows[T:]]).all() and np.isnan(out.columns["x"][rows[T - 2 :]]).all()


def test_nothing_is_trained_or_scored_from_a_value_carried_back_into_a_series_start(gapped, tmp_path):
    """A gap at a series' start reads the first value after it: no target is learned, and
    no forecast scored, from the steps before that value (they would read it early)."""
    nan = np.nan
    table = read_history(SeriesTable.from_arrays([np.array([nan, nan, 5.0, 1, 7, 2, 4, 3])]))
    assert table.lead.tolist() == [2]
    _, ys = inputs_and_targets(table, NEXT_STEP, gaps=True)
    assert np.array_equal(ys[0][:, 0], [nan, nan, 1, 7, 2, 4, 3, nan], equal_nan=True)  # not 5 from step 1
    folder, _ = gapped
    rows = ["series,x"] + [f"a,{v}" for v in ("", "", 5, 1, 7, 2, 4, 3, 6, 5)] + [f"b,{v}" for v in range(10)]
    (tmp_path / "lead.csv").write_text("\n".join(rows) + "\n")
    result, scores = predict(folder / "m.pt", tmp_path / "lead.csv", quiet=True)
    assert scores["steps"] == (10 - 3) + (10 - 1)  # series a from its step 3, b from its step 1
    bt, report = backtest(folder / "m.pt", tmp_path / "lead.csv", horizon=2, start=1, quiet=True)
    assert bt.columns["origin"][bt.columns["series"] == "a"].min() == 3
    assert report["naive"]["mae"] > 0  # no naive forecast repeats a value carried back


def test_gradnorm_reads_a_model_trained_on_gaps(gapped, cli, tmp_path):
    folder, _ = gapped
    result = cli("gradnorm", folder / "m.pt", folder / "gap.csv", "-o", tmp_path / "g.csv")
    assert result.exit_code == 0, result.stderr
    values = np.loadtxt(tmp_path / "g.csv", delimiter=",", skiprows=1, usecols=-1)
    assert np.isfinite(values).all() and (values > 0).any()


def test_with_known_columns_a_gap_is_named_by_its_row_as_read(cli, tmp_path):
    rows = ["series,x,k", "a,1,1", "a,2,2", "a,3,3", "a,4,4", "a,,5", "a,,6", "b,1,1", "b,,2", "b,,3", "b,,4", "b,5,5"]
    (tmp_path / "k.csv").write_text("\n".join(rows) + "\n")  # a's last two rows: its future; b's gap: rows 8-10
    one_error_line(
        cli("train", tmp_path / "k.csv", "--known", "k", "--gaps", "refuse", "-o", tmp_path / "m.pt"),
        "row 8, column 'x': an empty cell",
    )
    one_error_line(cli("train", tmp_path / "k.csv", "--known", "k", "-o", tmp_path / "m.pt"), "(rows 8 to 10)")
    (tmp_path / "none.csv").write_text("series,x\na,1\na,2\nb,\nb,\n")
    one_error_line(cli("train", tmp_path / "none.csv", "-o", tmp_path / "m.pt"), "series 'b', column 'x': no value")
