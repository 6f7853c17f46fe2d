"""Covariates known in advance (`train --known`): fed at every step, never forecast, their
future read from the rows after each series' last value."""

from __future__ import annotations

import csv
import io
import shlex
import subprocess

import numpy as np
import pytest
import torch
from conftest import BIN, one_error_line

from seqtool.config import TrainConfig
from seqtool.errors import SeqtoolError
from seqtool.forecast.backtest import backtest
from seqtool.forecast.rollout import rollout
from seqtool.model.checkpoint import load_checkpoint
from seqtool.training.run import train

HISTORY, FUTURE = 120, 10
TRAIN = "--x sales --known price --hidden 16 --window 20 --steps 800 --val 0 -q"
CONFIG = {"x": "sales", "known": "price", "hidden": 16, "window": 20, "steps": 800, "val": 0.0}  # TRAIN's


def _sales(path, future: int = FUTURE, seed: int = 0) -> np.ndarray:
    """4 series of sales = 2 x price, a random price each step; the last `future` rows of
    each series give the price only. The prices [4, HISTORY + future]."""
    prices = np.random.default_rng(seed).uniform(0, 1, (4, HISTORY + future)).round(6)
    lines = ["series,t,price,sales"]
    for s, p in enumerate(prices):
        lines += [f"s{s},{i},{v},{2 * v if i < HISTORY else ''}" for i, v in enumerate(p)]
    path.write_text("\n".join(lines) + "\n")
    return prices


def _rows(result) -> list[dict]:
    assert result.returncode == 0, result.stderr
    return list(csv.DictReader(io.StringIO(result.stdout.decode())))


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    folder = tmp_path_factory.mktemp("known")
    prices = _sales(folder / "sales.csv")
    subprocess.run(
        f"{BIN}/seqtool train sales.csv {TRAIN} -o m.pt", shell=True, cwd=folder, check=True, capture_output=True
    )
    return folder, prices


def test_a_model_of_twice_the_price_forecasts_from_the_given_future_prices(sh, trained, tmp_path):
    """The future prices reach the network: its free forecasts are 2 x price to 1e-2, and
    other prices in the same rows give other forecasts."""
    folder, prices = trained
    rows = _rows(sh(f"seqtool rollout {folder / 'm.pt'} {folder / 'sales.csv'} --horizon {FUTURE} -q"))
    free = [r for r in rows if r["phase"] == "free"]
    assert len(free) == 4 * FUTURE and all(r["sales"] == "" for r in free)
    given = prices[:, HISTORY:].ravel()
    assert [float(r["price"]) for r in free] == given.tolist()  # written back as given
    assert np.abs(np.array([float(r["yhat"]) for r in free]) - 2 * given).max() < 1e-2

    other = _sales(tmp_path / "other.csv", seed=1)  # other prices past the end (and before)
    rows = _rows(sh(f"seqtool rollout {folder / 'm.pt'} other.csv --horizon {FUTURE} -q"))
    yhat = np.array([float(r["yhat"]) for r in rows if r["phase"] == "free"])
    assert np.abs(yhat - 2 * other[:, HISTORY:].ravel()).max() < 1e-2


def test_known_covariates_are_stored_and_serve_predict_and_backtest(sh, trained):
    folder, prices = trained
    known = load_checkpoint(folder / "m.pt")["data"]["known"]
    assert known["columns"] == ["price"] and abs(known["mean"][0] - prices[:, :HISTORY].mean()) < 1e-9
    rows = _rows(sh(f"seqtool predict {folder / 'm.pt'} {folder / 'sales.csv'} -q"))
    assert len(rows) == 4 * HISTORY  # the history; the future rows are the known inputs' only
    later = [r for r in rows if int(r["t"]) >= 30]
    assert np.abs(np.array([float(r["yhat"]) - float(r["sales"]) for r in later])).max() < 2e-2
    rows = _rows(sh(f"seqtool backtest {folder / 'm.pt'} {folder / 'sales.csv'} --horizon 5 --start 100 -q"))
    assert np.abs(np.array([float(r["yhat"]) - float(r["sales"]) for r in rows])).max() < 2e-2


def _free(model, data, horizon: int) -> np.ndarray:
    """A rollout's forecasts past the end, in process."""
    out, _ = rollout(model, data, horizon=horizon, quiet=True)
    return out.columns["yhat"][out.columns["phase"] == "free"]


@pytest.mark.parametrize(
    "option, horizon",
    [({"diff": "1"}, FUTURE), ({"log_values": True}, FUTURE), ({"scale": "series"}, FUTURE),
     ({"scale": "window", "horizon": 5}, 5)],
)  # fmt: skip
def test_known_works_with_differences_logs_and_scales(tmp_path, option, horizon):
    prices = _sales(tmp_path / "sales.csv")
    train(tmp_path / "sales.csv", tmp_path / "m.pt", TrainConfig(**CONFIG, **option), quiet=True)
    yhat = _free(tmp_path / "m.pt", tmp_path / "sales.csv", horizon)
    assert np.abs(yhat - 2 * prices[:, HISTORY : HISTORY + horizon].ravel()).mean() < 0.06, option


def test_a_horizon_model_reads_the_known_values_of_each_step_it_forecasts(cli, tmp_path):
    """With --horizon H, each step reads the known values of the H steps after it: the
    direct forecast of every h is 2 x that step's price; H rows past the end are needed."""
    prices = _sales(tmp_path / "sales.csv")
    train(tmp_path / "sales.csv", tmp_path / "m.pt", TrainConfig(**CONFIG, horizon=5), quiet=True)
    known = load_checkpoint(tmp_path / "m.pt")["data"]["known"]
    assert known["horizon"] == 5
    for horizon in (5, FUTURE):
        yhat = _free(tmp_path / "m.pt", tmp_path / "sales.csv", horizon)
        assert np.abs(yhat - 2 * prices[:, HISTORY : HISTORY + horizon].ravel()).mean() < 0.06, horizon
    bt, _ = backtest(tmp_path / "m.pt", tmp_path / "sales.csv", horizon=5, start=100, quiet=True)
    assert np.abs(bt.columns["yhat"] - bt.columns["sales"]).mean() < 0.06
    _sales(tmp_path / "short.csv", future=3)
    one_error_line(
        cli("rollout", tmp_path / "m.pt", tmp_path / "short.csv", "--horizon", "2"),
        "for 5 step(s) past the end of series 's0' (a model of --horizon 5 reads them 5 steps at a time)",
        "are given for 3",
    )
    _sales(tmp_path / "eight.csv", future=8)  # 7 steps: a second block, which reads steps 6 to 10
    one_error_line(
        cli("rollout", tmp_path / "m.pt", tmp_path / "eight.csv", "--horizon", "7"),
        "for 10 step(s) past the end",
        "given for 8",
    )
    history = "\n".join(line for line in (tmp_path / "sales.csv").read_text().splitlines() if not line.endswith(","))
    (tmp_path / "history.csv").write_text(history + "\n")  # no rows past the end: the last origins read none
    bt, _ = backtest(tmp_path / "m.pt", tmp_path / "history.csv", horizon=2, start=110, quiet=True)
    assert bt.columns["origin"].max() == HISTORY - 5  # its forecast's block reads 5 steps of prices


def test_known_inputs_refused_in_one_line(cli, trained, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    folder, _ = trained
    _sales(tmp_path / "sales.csv")
    one_error_line(
        cli(*shlex.split("train sales.csv --x sales --known sales -o m.pt")), "--known sales", "never a series"
    )
    one_error_line(cli(*shlex.split("train sales.csv --x sales --known cost -o m.pt")), "no known column 'cost'")
    lines = (tmp_path / "sales.csv").read_text().splitlines()
    row = next(i for i, line in enumerate(lines) if line.startswith("s1,7,"))
    lines[row] = "s1,7,," + lines[row].split(",")[3]
    (tmp_path / "gap.csv").write_text("\n".join(lines) + "\n")
    one_error_line(
        cli(*shlex.split("train gap.csv --x sales --known price -o m.pt")),
        f"row {row}, column 'price': no value within the history",
    )
    one_error_line(
        cli(*shlex.split(f"rollout {folder / 'm.pt'} sales.csv --horizon {FUTURE + 1}")),
        f"for {FUTURE + 1} step(s) past the end of series 's0'",
        f"they are given for {FUTURE}",
    )
    lines = (tmp_path / "sales.csv").read_text().splitlines()
    hole = next(i for i, line in enumerate(lines) if line.startswith(f"s0,{HISTORY + 4},"))
    lines[hole] = f"s0,{HISTORY + 4},,"  # a price missing in s0's given future: it ends before it
    (tmp_path / "hole.csv").write_text("\n".join(lines) + "\n")
    one_error_line(
        cli(*shlex.split(f"rollout {folder / 'm.pt'} hole.csv --horizon {FUTURE}")),
        "they are given for 4 (rows after its last value, its series columns empty, up to the first with a known "
        "cell empty)",
    )
    one_error_line(cli(*shlex.split("train sales.csv --x sales --known 'price, price' -o m.pt")), "distinct columns")
    one_error_line(cli(*shlex.split("train sales.csv --x sales --known price, -o m.pt")), "got 'price,'")
    for t, what in ((5, "inf"), (HISTORY + 3, "1e200")):  # in the history, and past it
        lines = (tmp_path / "sales.csv").read_text().splitlines()
        row = next(i for i, line in enumerate(lines) if line.startswith(f"s2,{t},"))
        lines[row] = f"s2,{t},{what}," + lines[row].split(",")[3]
        (tmp_path / "big.csv").write_text("\n".join(lines) + "\n")
        one_error_line(cli(*shlex.split(f"rollout {folder / 'm.pt'} big.csv --horizon 2")), "column 'price'", "1e+150")
    lines = (tmp_path / "sales.csv").read_text().splitlines()
    row = next(i for i, line in enumerate(lines) if line.startswith(f"s1,{HISTORY + 2},"))
    lines[row] += "0.5"  # a value after the empty ones: a gap in the history, not a future row
    (tmp_path / "late.csv").write_text("\n".join(lines) + "\n")
    late = cli(*shlex.split(f"rollout {folder / 'm.pt'} late.csv --horizon 2"))
    assert late.exit_code == 0 and "2 empty input cell(s) read as the value before each" in late.stderr


def test_a_future_value_far_outside_training_is_warned_of(sh, trained, tmp_path):
    folder, prices = trained
    _sales(tmp_path / "sales.csv")
    text = (
        (tmp_path / "sales.csv")
        .read_text()
        .replace(f"s0,{HISTORY + 1},{prices[0, HISTORY + 1]},", f"s0,{HISTORY + 1},1000000,")
    )
    (tmp_path / "far.csv").write_text(text)
    result = sh(f"seqtool rollout {folder / 'm.pt'} far.csv --horizon 3 -o out.csv")
    assert result.returncode == 0, result.stderr
    warning = [line for line in result.stderr.decode().splitlines() if "warning" in line]
    assert len(warning) == 1 and "known column 'price' reaches 1e+06 past the end" in warning[0], warning


def test_a_damaged_known_field_is_refused(trained, tmp_path):
    folder, _ = trained
    ckpt = torch.load(folder / "m.pt", weights_only=True)
    for bad in ({**ckpt["data"]["known"], "std": [-1.0]}, {**ckpt["data"]["known"], "std": [1e-300]}, ["price"]):
        ckpt["data"]["known"] = bad
        torch.save(ckpt, tmp_path / "bad.pt")
        with pytest.raises(SeqtoolError, match="damaged seqtool checkpoint: data.known"):
            load_checkpoint(tmp_path / "bad.pt")


def test_the_given_rows_past_the_end_keep_their_own_t_and_cells(sh, trained, tmp_path):
    """Future rows as given: their t (a step skipped), their cells byte for byte; a rollout
    that stops within the history (--steps) reads no future row."""
    folder, prices = trained
    lines = (folder / "sales.csv").read_text().splitlines()
    for r, line in enumerate(lines):
        series, t, price, sales = line.split(",")
        if series == "s0" and int(t) >= HISTORY:
            lines[r] = f"s0,{HISTORY + 2 * (int(t) - HISTORY)},{float(price):.8f},"
    (tmp_path / "skip.csv").write_text("\n".join(lines) + "\n")
    rows = _rows(sh(f"seqtool rollout {folder / 'm.pt'} skip.csv --horizon 3 -q"))
    free = [r for r in rows if r["series"] == "s0" and r["phase"] == "free"]
    assert [r["t"] for r in free] == [str(HISTORY), str(HISTORY + 2), str(HISTORY + 4)]
    assert [r["price"] for r in free] == [f"{p:.8f}" for p in prices[0, HISTORY : HISTORY + 3]]
    assert np.abs(np.array([float(r["yhat"]) for r in free]) - 2 * prices[0, HISTORY : HISTORY + 3]).max() < 1e-2
    rows = _rows(sh(f"seqtool rollout {folder / 'm.pt'} skip.csv --warmup 100 --steps 5 -q"))
    assert len(rows) == 4 * 105 and all(r["sales"] for r in rows)
