"""`seqtool plot`: each kind's picture (files, sizes, pixels, axes, labels), batches, errors."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import modules_loaded, one_error_line
from matplotlib.image import imread

from seqtool.config import TrainConfig
from seqtool.data import generators
from seqtool.data.tables import Table, read_table, write_table
from seqtool.errors import SeqtoolError
from seqtool.forecast.predict import predict
from seqtool.forecast.rollout import rollout
from seqtool.plotting import figure, kind_of, plot
from seqtool.training.run import train


@pytest.fixture(scope="module")
def tables(tmp_path_factory):
    """One table of every kind, written as seqtool writes them."""
    d = tmp_path_factory.mktemp("tables")
    write_table(generators.sincos(n_series=3, length=60, seed=0), d / "series.csv")
    sine = generators.sine(n_series=24, length=30, seed=0)
    result = train(
        sine, d / "m.pt", TrainConfig(hidden=8, steps=75, window=20, clip=0.05), quiet=True, log=d / "log.csv"
    )
    assert result.steps == 75
    fresh = generators.sine(n_series=3, length=30, seed=1)
    write_table(predict(d / "m.pt", fresh, quiet=True)[0], d / "predict.csv")
    write_table(rollout(d / "m.pt", fresh, warmup=10, quiet=True)[0], d / "rollout.csv")
    t = np.tile(np.arange(1.0, 21.0), 2)
    write_table(Table({
        "cell": np.repeat(["rnn", "lstm"], 20), "layer": np.zeros(40, dtype=int), "t": t,
        "grad_norm": np.concatenate([0.5 ** (20 - np.arange(20)), np.full(20, 0.3)]),
    }), d / "gradnorm.csv")  # fmt: skip
    write_table(backtest_table(), d / "backtest.csv")
    return d


def backtest_table(n_series: int = 2, length: int = 30, first: int = 5, horizon: int = 4) -> Table:
    """A table as `seqtool backtest` writes it, made by hand: every origin from `first` on, the
    truth (`value`, beside a `date`) empty past the end of each series, the model off by h/10."""
    columns: dict[str, list] = {
        k: [] for k in ("series", "origin", "h", "t", "date", "value", "yhat", "naive", "seasonal_naive")
    }
    for s in range(n_series):
        value = np.sin(np.arange(length) * 0.5 + s) * (s + 1)
        for origin in range(first, length):
            for h in range(1, horizon + 1):
                step = origin + h - 1
                columns["series"].append(f"s{s}")
                columns["origin"].append(origin)
                columns["h"].append(h)
                columns["t"].append(step)
                columns["date"].append(f"2024-01-01T{step:02d}:00" if step < 24 else f"2024-01-02T{step - 24:02d}:00")
                columns["value"].append(value[step] if step < length else np.nan)
                columns["yhat"].append(np.sin(step * 0.5 + s) * (s + 1) + h / 10 * (-1) ** step)
                columns["naive"].append(value[origin - 1])
                columns["seasonal_naive"].append(value[origin - 1 - (step - origin) % 3])
    return Table({k: np.array(v) for k, v in columns.items()}, "backtest.csv")


def labels_of(fig) -> set[str]:
    found = {line.get_label() for ax in fig.axes for line in ax.get_lines()}
    for legend in fig.legends:
        found |= {t.get_text() for t in legend.get_texts()}
    return {label for label in found if not label.startswith("_")}


@pytest.mark.parametrize("kind", ["series", "predict", "rollout", "log", "gradnorm", "backtest"])
def test_each_kind_is_recognised_and_drawn_to_a_real_image(tables, tmp_path, kind):
    assert kind_of(read_table(tables / f"{kind}.csv")) == kind
    (path,) = plot([tables / f"{kind}.csv"], output=tmp_path / f"{kind}.png", size=(640, 480))
    pixels = imread(path)
    assert pixels.shape[:2] == (480, 640)
    assert pixels[..., :3].var() > 0.01  # not blank


def test_series_picture_has_a_panel_per_series_with_inputs_and_targets(tables):
    fig = figure([("s", read_table(tables / "series.csv"))])
    visible = [ax for ax in fig.axes if ax.get_visible()]
    assert [ax.get_title() for ax in visible] == ["series 0", "series 1", "series 2"]
    assert labels_of(fig) >= {"x", "y (target)"}
    assert visible[0].get_xlabel() == "t"


def test_predict_picture_has_truth_prediction_and_error(tables):
    fig = figure([("p", read_table(tables / "predict.csv"))])
    assert len(fig.axes) == 6  # a panel and an error strip per series
    assert labels_of(fig) >= {"truth", "prediction"}
    assert [ax.get_ylabel() for ax in fig.axes[1::2]] == ["error"] * 3


def test_rollout_picture_marks_where_free_running_starts(tables):
    table = read_table(tables / "rollout.csv")
    fig = figure([("r", table)])
    assert labels_of(fig) >= {"truth", "warm-up (teacher-forced)", "free-running"}
    first_free_t = float(table.columns["t"][10])
    ax = fig.axes[0]
    vertical = [line for line in ax.get_lines() if len(set(np.ravel(line.get_xdata()))) == 1]
    assert float(np.ravel(vertical[0].get_xdata())[0]) == pytest.approx(first_free_t)
    assert "free-running RMSE" in ax.get_title()


def test_log_picture_loss_lr_and_clipped_gradients(tables):
    fig = figure([("log", read_table(tables / "log.csv"))])
    loss, lr, grad = fig.axes
    assert loss.get_yscale() == "log" and lr.get_yscale() == "log" and grad.get_yscale() == "log"
    assert {line.get_label() for line in loss.get_lines()} == {"train", "validation"}
    assert "clipped steps" in {line.get_label() for line in grad.get_lines()}
    assert grad.get_xlabel() == "step"


def test_gradnorm_picture_one_line_per_cell_and_layer(tables):
    fig = figure([("g", read_table(tables / "gradnorm.csv"))])
    (ax,) = fig.axes
    assert ax.get_yscale() == "log"
    labels = {line.get_label() for line in ax.get_lines()}
    assert labels == {"rnn layer 0   [t=1 / t=20: 1.9e-06]", "lstm layer 0   [t=1 / t=20: 1]"}


def test_overlay_labels_each_input(tables, tmp_path, cli):
    result = cli("plot", tables / "log.csv", tables / "log.csv", "--overlay", "--label", "lstm",
                 "--label", "gru", "-o", tmp_path / "both.svg")  # fmt: skip
    assert result.exit_code == 0, result.stderr
    assert result.stdout == f"{tmp_path / 'both.svg'}\n"
    svg = (tmp_path / "both.svg").read_text()
    assert svg.lstrip().startswith("<?xml") and "lstm: train" in svg and "gru: validation" in svg


def test_outdir_one_image_per_input_in_one_process(tables, tmp_path, sh):
    result = sh(f"seqtool plot {tables}/*.csv --outdir pics --format pdf")
    assert result.returncode == 0, result.stderr.decode()
    made = sorted(p.name for p in (tmp_path / "pics").iterdir())
    assert made == ["backtest.pdf", "gradnorm.pdf", "log.pdf", "predict.pdf", "rollout.pdf", "series.pdf"]
    assert (tmp_path / "pics" / "log.pdf").read_bytes().startswith(b"%PDF")
    assert result.stdout.decode().splitlines() == [f"pics/{name}" for name in made]


def test_pipe_from_gen(sh, tmp_path):
    result = sh("seqtool gen sine | seqtool plot -o s.png")
    assert result.returncode == 0 and result.stdout.decode() == "s.png\n", result.stderr
    assert imread(tmp_path / "s.png")[..., :3].var() > 0.01


def test_series_pick_and_named_inputs(tmp_path, cli):
    data = tmp_path / "temps.csv"
    data.write_text("date,value\n" + "\n".join(f"2024-01-{d:02d},{d % 7}" for d in range(1, 29)) + "\n")
    result = cli("plot", data, "--x", "value", "-o", tmp_path / "t.png", "--title", "Temperatures")
    assert result.exit_code == 0, result.stderr
    fig = figure([("t", read_table(data))], x="value", series=["0"])
    assert labels_of(fig) >= {"value"}
    one_error_line(cli("plot", data, "--x", "value", "--series", "7", "-o", tmp_path / "u.png"), "no series '7'")


@pytest.mark.parametrize(
    "args, fragments",
    [
        (["--size", "big"], ["--size must be WIDTHxHEIGHT"]),
        (["-o", "x.gif"], ["unknown image format"]),
        (["--format", "gif"], ["'gif' is not one of 'png', 'svg', 'pdf'"]),
    ],
)
def test_bad_plot_options(tables, tmp_path, cli, args, fragments):
    one_error_line(cli("plot", tables / "series.csv", *args), *fragments)


def test_unknown_table_lists_the_kinds(tmp_path, cli):
    data = tmp_path / "odd.csv"
    data.write_text("a,b\n1,2\n")
    one_error_line(
        cli("plot", data, "-o", tmp_path / "o.png"),
        "columns: a, b",
        "log: epoch, step, train_loss",
        "rollout: yhat, phase",
    )
    assert not (tmp_path / "o.png").exists()


def test_overlay_refuses_mixed_kinds(tables, tmp_path, cli):
    one_error_line(
        cli("plot", tables / "log.csv", tables / "series.csv", "--overlay", "-o", tmp_path / "m.png"), "one kind"
    )


def test_plot_does_not_import_torch(tables, tmp_path):
    assert modules_loaded(["plot", tables / "rollout.csv", "-o", tmp_path / "r.png"]) == []


def hand_mae(table: Table, forecast: str) -> list[float]:
    """Mean absolute error per h, one row at a time, over the rows whose truth is known."""
    errors: dict[int, list[float]] = {}
    for h, truth, guess in zip(table.columns["h"], table.columns["value"], table.columns[forecast]):
        if not np.isnan(truth):
            errors.setdefault(int(h), []).append(abs(guess - truth))
    return [sum(e) / len(e) for _, e in sorted(errors.items())]


def test_backtest_error_by_h_for_the_model_and_each_naive_forecast(tables):
    table = read_table(tables / "backtest.csv")
    assert kind_of(table) == "backtest"
    fig = figure([("b", table)])
    lines = {line.get_label(): line for line in fig.axes[0].get_lines()}
    assert set(lines) == {"model", "naive", "seasonal naive"}
    assert fig.axes[0].get_xlabel() == "steps ahead h"
    made = backtest_table()
    for label, column in [("model", "yhat"), ("naive", "naive"), ("seasonal naive", "seasonal_naive")]:
        assert list(lines[label].get_xdata()) == [1, 2, 3, 4]
        np.testing.assert_allclose(lines[label].get_ydata(), hand_mae(made, column), rtol=1e-12)
    assert lines["model"].get_ydata() == pytest.approx([0.1, 0.2, 0.3, 0.4])
    assert "backtest: " + str(tables / "backtest.csv") in [t.get_text() for t in fig.texts]  # the suptitle


def test_backtest_forecasts_of_at_most_six_origins_over_the_truth(tables, tmp_path):
    fig = figure([("b", read_table(tables / "backtest.csv"))])
    assert len(fig.axes) == 2  # errors, and the first series
    ax = fig.axes[1]
    assert ax.get_title() == "series s0: forecasts from 6 of 25 origins"
    origins = [line for line in ax.get_lines() if line.get_label().startswith("origin")]
    assert [line.get_label() for line in origins] == [
        "origin 5",
        "origin 10",
        "origin 15",
        "origin 19",
        "origin 24",
        "origin 29",
    ]
    assert list(origins[0].get_xdata()) == [5, 6, 7, 8]
    (truth,) = [line for line in ax.get_lines() if line.get_label() == "truth"]
    assert list(truth.get_xdata()) == list(range(5, 33))  # each t once, across origins
    np.testing.assert_allclose(truth.get_ydata()[:25], np.sin(np.arange(5, 30) * 0.5))
    picked = figure([("b", read_table(tables / "backtest.csv"))], series=["s1", "s0"])
    assert [ax.get_title()[:9] for ax in picked.axes[1:]] == ["series s1", "series s0"]
    (path,) = plot([tables / "backtest.csv"], output=tmp_path / "b.png", size=(800, 600))
    assert imread(path).shape[:2] == (600, 800)


def test_backtest_overlay_one_model_line_per_table(tables, tmp_path):
    other = Table(dict(read_table(tables / "backtest.csv").columns), "other.csv")
    other.columns["yhat"] = other.numbers("yhat") * 2
    fig = figure([("lstm", read_table(tables / "backtest.csv")), ("gru", other)])
    assert len(fig.axes) == 1
    assert {line.get_label() for line in fig.axes[0].get_lines()} == {"lstm", "gru", "naive", "seasonal naive"}


def test_truth_named_like_the_inputs_plots_without_x(tmp_path, cli):
    dates = [f"2024-01-{d:02d}" for d in range(1, 21)]
    value = np.array([np.nan if d >= 15 else float(d % 7) for d in range(20)])
    data = tmp_path / "r.csv"
    write_table(Table({
        "date": np.array(dates), "value": value, "yhat": np.arange(20.0) % 5,
        "phase": np.where(np.arange(20) < 15, "warmup", "free"),
    }), data)  # fmt: skip
    for table in (
        read_table(data),
        Table({k: v for k, v in read_table(data).columns.items() if k != "phase"}, "p.csv"),
    ):
        fig = figure([("r", table)])
        (truth,) = [line for line in fig.axes[0].get_lines() if line.get_label() == "truth"]
        np.testing.assert_array_equal(truth.get_ydata(), value)
    result = cli("plot", data, "-o", tmp_path / "r.png")
    assert result.exit_code == 0, result.stderr


def test_ambiguous_truth_is_refused_naming_the_candidates_and_x(tmp_path, cli):
    data = tmp_path / "a.csv"
    data.write_text("date,low,high,yhat\n2024-01-01,1,3,2\n2024-01-02,2,4,3\n")
    with pytest.raises(SeqtoolError, match=r"2 numeric candidate\(s\) \(low, high\).*--x") as caught:
        plot([data], output=tmp_path / "a.png")
    assert "\n" not in str(caught.value)
    one_error_line(cli("plot", data, "-o", tmp_path / "a.png"), "low, high", "--x")
    assert not (tmp_path / "a.png").exists()
    result = cli("plot", data, "--x", "high", "-o", tmp_path / "a.png")
    assert result.exit_code == 0, result.stderr


def test_npz_remembers_the_truth_where_the_columns_leave_it_open(tmp_path):
    from seqtool.data.reading import read_series

    value = np.arange(12.0) % 5
    table = Table({"value": value, "humidity": np.full(12, 0.7), "yhat": value + 0.5})
    write_table(read_series(table, x="value", y=[]), tmp_path / "p.npz")
    fig = figure([("p", read_table(tmp_path / "p.npz"))])
    (truth,) = [line for line in fig.axes[0].get_lines() if line.get_label() == "truth"]
    np.testing.assert_array_equal(truth.get_ydata(), value)
    with pytest.raises(SeqtoolError, match="value, humidity"):
        figure([("p", table)])


def test_dates_as_time_are_drawn(tmp_path):
    data = tmp_path / "d.csv"
    data.write_text("t,x\n2024-01-01,1\n2024-01-02,2\n2024-01-04,1.5\n")
    (path,) = plot([data])
    assert imread(path)[..., :3].var() > 0.01


def test_an_interval_is_drawn_as_a_band_between_its_bounds(tables):
    """yhat_lo and yhat_hi (predict of a distribution, rollout with --samples) under the
    forecast: a band spanning exactly the bounds, on the rows that have them."""
    for name, rows in (("predict", slice(None)), ("rollout", slice(10, None))):
        table = read_table(tables / f"{name}.csv")
        yhat = table.numbers("yhat", missing_ok=True)
        table.columns["yhat_lo"], table.columns["yhat_hi"] = yhat - 0.25, yhat + 0.5
        fig = figure([(name, table)])
        assert "interval" in labels_of(fig)
        [band] = fig.axes[0].collections[-1:]
        ys = np.concatenate([p.vertices[:, 1] for p in band.get_paths()])
        first = yhat[: int((table.columns["series"] == table.columns["series"][0]).sum())][rows]
        assert np.nanmin(ys) == pytest.approx(np.nanmin(first) - 0.25) and np.nanmax(ys) == pytest.approx(
            np.nanmax(first) + 0.5
        )


def test_a_backtest_draws_each_shown_origins_interval_as_a_band():
    table = backtest_table(n_series=1)
    yhat = table.numbers("yhat")
    table.columns["yhat_lo"], table.columns["yhat_hi"] = yhat - 0.5, yhat + 1.0
    fig = figure([("b", table)])
    ax = fig.axes[-1]
    origins = [line for line in ax.get_lines() if str(line.get_label()).startswith("origin")]
    assert len(ax.collections) == len(origins) > 1 and ax.collections[0].get_label() == "interval"
    for line, band in zip(origins, ax.collections):
        ys = np.concatenate([p.vertices[:, 1] for p in band.get_paths()])
        assert ys.min() == pytest.approx(np.min(line.get_ydata()) - 0.5) and ys.max() == pytest.approx(
            np.max(line.get_ydata()) + 1.0
        )


def test_a_backtest_with_intervals_draws_their_coverage_by_h_beside_the_level():
    """Coverage at h, counted by hand (truth within [lo, hi]), and the level as a dashed line."""
    table = backtest_table(n_series=2)
    yhat, truth = table.numbers("yhat"), table.numbers("value", True)
    table.columns["yhat_lo"], table.columns["yhat_hi"] = yhat - 0.25, yhat + 0.25
    table.columns["interval_level"] = np.full(len(yhat), 80.0)
    fig = figure([("b", table)])
    ax = fig.axes[1]
    assert ax.get_title().startswith("interval coverage by steps ahead")
    lines = {line.get_label(): line for line in ax.get_lines()}
    h = table.numbers("h")
    known = ~np.isnan(truth)
    by_hand = [np.mean(np.abs(truth - yhat)[known & (h == k)] <= 0.25) for k in (1, 2, 3, 4)]
    np.testing.assert_allclose(lines["coverage"].get_ydata(), by_hand)
    assert list(lines["level 80%"].get_ydata()) == [0.8, 0.8] and lines["level 80%"].get_linestyle() == "--"
    assert len(fig.axes) == 3  # errors, coverage, and the first series
