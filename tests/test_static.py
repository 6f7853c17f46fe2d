"""Per-series attributes (`train --static COLS`): a number standardised, a category one
input per category seen in training; an unseen category reads the shared entry."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import one_error_line

from seqtool.config import TrainConfig
from seqtool.data.reading import read_history
from seqtool.data.statics import Statics
from seqtool.errors import SeqtoolError
from seqtool.forecast.rollout import rollout
from seqtool.model.checkpoint import load_checkpoint
from seqtool.training.run import train

REGIONS = {"north": 1.0, "south": -1.0, "east": 0.0}  # each region's amplitude


def _panel(path, regions=None) -> list[str]:
    """24 series of 40 steps, a sine whose sign and size follow the series' region; a size
    column (a number per series). `regions` replaces series' regions as written."""
    rng = np.random.default_rng(0)
    lines, names = ["series,t,region,size,x"], []
    for s in range(24):
        region = list(REGIONS)[s % 3]
        phase = rng.uniform(0, 2 * np.pi)
        written = (regions or {}).get(f"s{s}", region)
        for t in range(40):
            value = REGIONS[region] * np.sin(0.3 * t + phase) + 0.05 * rng.normal()
            lines.append(f"s{s},{t},{written},{10 + s},{value:.5f}")
        names.append(region)
    path.write_text("\n".join(lines) + "\n")
    return names


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    folder = tmp_path_factory.mktemp("static")
    _panel(folder / "panel.csv")
    config = TrainConfig(hidden=16, steps=150, window=20, batch=16, val=0, static="region,size")
    train(folder / "panel.csv", folder / "m.pt", config, quiet=True)
    return folder


def test_numbers_are_standardised_and_categories_one_input_each(tmp_path):
    _panel(tmp_path / "p.csv")
    table = read_history(tmp_path / "p.csv")
    statics = Statics.fit(table, ("region", "size"))
    size = np.arange(10, 34, dtype=float)
    region, number = statics.columns
    assert region.categories == ("east", "north", "south") and region.shares == pytest.approx((1 / 3,) * 3)
    assert (number.mean, number.std) == pytest.approx((size.mean(), size.std()))
    encoded = statics.per_series(table)
    assert encoded.shape == (24, 4)
    assert encoded[:3, :3].tolist() == [[0, 1, 0], [0, 0, 1], [1, 0, 0]]  # north, south, east
    assert encoded[:, 3] == pytest.approx((size - size.mean()) / size.std())
    _panel(tmp_path / "u.csv", {"s0": "west"})
    assert Statics.fit(table, ("region",)).per_series(read_history(tmp_path / "u.csv"))[0] == pytest.approx([1 / 3] * 3)


def test_a_constant_number_and_one_far_from_training_are_warned_of(tmp_path):
    _panel(tmp_path / "p.csv")  # sizes 10..33: mean 21.5, spread 6.92
    text = (tmp_path / "p.csv").read_text()
    (tmp_path / "far.csv").write_text(text.replace(",north,13,", ",north,200,"))
    statics = Statics.fit(read_history(tmp_path / "p.csv"), ("size",))
    with pytest.warns(UserWarning, match=r"column 'size': series 's3' has 200, 25.8 spreads from the training series"):
        far = statics.per_series(read_history(tmp_path / "far.csv"))
    assert far[3, 0] == pytest.approx((200 - 21.5) / np.arange(10, 34).std())
    lines = text.splitlines()
    (tmp_path / "same.csv").write_text(
        "\n".join([lines[0], *(",".join([*r.split(",")[:3], "7", r.split(",")[4]]) for r in lines[1:])]) + "\n"
    )
    with pytest.warns(UserWarning, match="--static size: 7 for every training series, so the network learns nothing"):
        Statics.fit(read_history(tmp_path / "same.csv"), ("size",))


def _forecasts(folder, tmp_path, regions=None) -> dict[str, np.ndarray]:
    _panel(tmp_path / "in.csv", regions)
    out, _ = rollout(folder / "m.pt", tmp_path / "in.csv", horizon=5, quiet=True)
    free = out.columns["phase"] == "free"
    return {s: out.columns["yhat"][free & (out.columns["series"] == s)] for s in ("s0", "s1")}


def test_a_category_changes_its_series_forecast_and_an_unseen_one_reads_the_shared_entry(model, tmp_path):
    ckpt = load_checkpoint(model / "m.pt")
    assert ckpt["model"]["n_in"] == 1 + 3 + 1 and ckpt["data"]["static"][0]["column"] == "region"
    own = _forecasts(model, tmp_path)
    swapped = _forecasts(model, tmp_path, {"s0": "south"})
    assert np.abs(swapped["s0"] - own["s0"]).max() > 1e-3  # s0 is north: as south, another forecast
    np.testing.assert_allclose(swapped["s1"], own["s1"], rtol=1e-6)  # and no other series'
    west = _forecasts(model, tmp_path, {"s0": "west"})
    mars = _forecasts(model, tmp_path, {"s0": "mars"})
    np.testing.assert_allclose(west["s0"], mars["s0"], rtol=1e-6)  # every unseen category: one entry
    assert min(np.abs(west["s0"] - f["s0"]).max() for f in (own, swapped)) > 1e-4


def test_static_columns_that_are_not_attributes_are_refused_in_one_line(cli, model, tmp_path):
    _panel(tmp_path / "p.csv")
    lines = (tmp_path / "p.csv").read_text().splitlines()
    lines[5] = lines[5].replace(",north,", ",south,")  # row 5: series s0 changes region
    (tmp_path / "bad.csv").write_text("\n".join(lines) + "\n")
    one_error_line(
        cli("train", tmp_path / "bad.csv", "--static", "region", "-o", tmp_path / "m.pt"),
        "row 5, column 'region': 'south' where series 's0' has 'north'; a static column holds one value per series",
    )
    one_error_line(cli("train", tmp_path / "p.csv", "--static", "x", "-o", tmp_path / "m.pt"), "'x' is a series column")
    one_error_line(cli("train", tmp_path / "p.csv", "--static", "shop", "-o", tmp_path / "m.pt"), "no static column")
    one_error_line(
        cli("train", tmp_path / "p.csv", "--static", "region,size", "--known", "size", "-o", tmp_path / "m.pt"),
        "column 'size' is given to --known and --static: a column is fed one way",
    )
    (tmp_path / "none.csv").write_text("series,t,x\ns0,0,1\ns0,1,2\n")
    one_error_line(cli("rollout", model / "m.pt", tmp_path / "none.csv", "--horizon", "2"), "no static column 'region'")
    (tmp_path / "text.csv").write_text((tmp_path / "p.csv").read_text().replace(",north,10,", ",north,ten,"))
    one_error_line(
        cli("rollout", model / "m.pt", tmp_path / "text.csv", "--horizon", "2"),
        "column 'size': 'ten' is not a number; the model read numbers there",
    )
    assert not (tmp_path / "m.pt").exists()


def test_a_damaged_static_field_is_refused(model, tmp_path):
    ckpt = load_checkpoint(model / "m.pt")
    region, size = ckpt["data"]["static"]
    for bad in ([{**region, "shares": [0.5]}, size], [region, {**size, "std": 0.0}], [region], "region"):
        torch.save({**ckpt, "data": {**ckpt["data"], "static": bad}}, tmp_path / "bad.pt")
        with pytest.raises(Exception, match="data.static is|data.x_names are"):
            load_checkpoint(tmp_path / "bad.pt")


def test_what_a_model_knows_of_attributes_comes_from_its_training_series(tmp_path):
    _panel(tmp_path / "p.csv", {"s4": "west"})  # one series of a region of its own
    table = read_history(tmp_path / "p.csv")
    training = np.setdiff1d(np.arange(24), [4])  # as if s4 were held out for validation
    region, size = Statics.fit(table, ("region", "size"), training).columns
    assert region.categories == ("east", "north", "south") and sum(region.shares) == pytest.approx(1.0)
    assert size.mean == pytest.approx(np.delete(np.arange(10, 34), 4).mean())
    with pytest.warns(
        UserWarning, match=r"column 'region': 1 series of a category the model never saw \(e.g. 'west'\)"
    ):
        encoded = Statics((region,)).per_series(table)
    assert encoded[4] == pytest.approx(region.shares)


def test_numbers_are_compared_as_numbers_and_inf_or_an_npz_nan_refused(tmp_path):
    _panel(tmp_path / "p.csv")
    text = (tmp_path / "p.csv").read_text()
    first = text.replace("s0,0,north,10,", "s0,0,north,10.0,")  # 10.0 where the rest of s0 says 10
    (tmp_path / "same.csv").write_text(first)
    assert Statics.fit(read_history(tmp_path / "same.csv"), ("size",)).columns[0].categories == ()
    (tmp_path / "inf.csv").write_text(text.replace(",north,10,", ",north,inf,"))
    with pytest.raises(SeqtoolError, match="column 'size': 'inf' is not a finite number"):
        Statics.fit(read_history(tmp_path / "inf.csv"), ("size",))
    (tmp_path / "nan.csv").write_text(text.replace(",north,10,", ",north,NaN,"))
    with pytest.raises(SeqtoolError, match="row 1, column 'size': empty; a static column gives series 's0' its value"):
        Statics.fit(read_history(tmp_path / "nan.csv"), ("size",))


def test_a_rollout_repeats_the_attributes_past_the_end_so_its_output_reads_back(model, tmp_path):
    _panel(tmp_path / "p.csv")
    out, _ = rollout(model / "m.pt", tmp_path / "p.csv", horizon=3, output=tmp_path / "r.csv", quiet=True)
    free = out.columns["phase"] == "free"
    assert set(out.columns["region"][free & (out.columns["series"] == "s1")].tolist()) == {"south"}
    with pytest.warns(UserWarning, match="empty input cell"):  # its forecast rows read back: gaps at the end
        again, _ = rollout(model / "m.pt", tmp_path / "r.csv", horizon=2, quiet=True)
    assert set(again.columns["region"][again.columns["series"] == "s1"].tolist()) == {"south"}
