"""`seqtool plot`: each kind's picture (files, sizes, pixels, axes, labels), batches, errors."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from conftest import one_error_line
from matplotlib.image import imread

from seqtool import tasks
from seqtool.inference import predict, rollout
from seqtool.plotting import figure, kind_of, plot
from seqtool.tables import Table, write_table
from seqtool.training import TrainConfig, train


@pytest.fixture(scope="module")
def tables(tmp_path_factory):
    """One table of every kind, written as seqtool writes them."""
    d = tmp_path_factory.mktemp("tables")
    write_table(tasks.sincos(n_series=3, length=60, seed=0), d / "series.csv")
    sine = tasks.sine(n_series=24, length=30, seed=0)
    result = train(sine, d / "m.pt", TrainConfig(hidden=8, steps=75, window=20, clip=0.05), quiet=True, log=d / "log.csv")
    assert result.steps == 75
    fresh = tasks.sine(n_series=3, length=30, seed=1)
    write_table(predict(d / "m.pt", fresh, quiet=True)[0], d / "predict.csv")
    write_table(rollout(d / "m.pt", fresh, warmup=10, quiet=True)[0], d / "rollout.csv")
    t = np.tile(np.arange(1.0, 21.0), 2)
    write_table(Table({
        "cell": np.repeat(["rnn", "lstm"], 20), "layer": np.zeros(40, dtype=int), "t": t,
        "grad_norm": np.concatenate([0.5 ** (20 - np.arange(20)), np.full(20, 0.3)]),
    }), d / "gradnorm.csv")  # fmt: skip
    return d


def labels_of(fig) -> set[str]:
    found = {line.get_label() for ax in fig.axes for line in ax.get_lines()}
    for legend in fig.legends:
        found |= {t.get_text() for t in legend.get_texts()}
    return {label for label in found if not label.startswith("_")}


@pytest.mark.parametrize("kind", ["series", "predict", "rollout", "log", "gradnorm"])
def test_each_kind_is_recognised_and_drawn_to_a_real_image(tables, tmp_path, kind):
    from seqtool.tables import read_table

    assert kind_of(read_table(tables / f"{kind}.csv")) == kind
    (path,) = plot([tables / f"{kind}.csv"], output=tmp_path / f"{kind}.png", size=(640, 480))
    pixels = imread(path)
    assert pixels.shape[:2] == (480, 640)
    assert pixels[..., :3].var() > 0.01  # not blank


def test_series_picture_has_a_panel_per_series_with_inputs_and_targets(tables):
    from seqtool.tables import read_table

    fig = figure([("s", read_table(tables / "series.csv"))])
    visible = [ax for ax in fig.axes if ax.get_visible()]
    assert [ax.get_title() for ax in visible] == ["series 0", "series 1", "series 2"]
    assert labels_of(fig) >= {"x", "y (target)"}
    assert visible[0].get_xlabel() == "t"


def test_predict_picture_has_truth_prediction_and_error(tables):
    from seqtool.tables import read_table

    fig = figure([("p", read_table(tables / "predict.csv"))])
    assert len(fig.axes) == 6  # a panel and an error strip per series
    assert labels_of(fig) >= {"truth", "prediction"}
    assert [ax.get_ylabel() for ax in fig.axes[1::2]] == ["error"] * 3


def test_rollout_picture_marks_where_free_running_starts(tables):
    from seqtool.tables import read_table

    table = read_table(tables / "rollout.csv")
    fig = figure([("r", table)])
    assert labels_of(fig) >= {"truth", "warm-up (teacher-forced)", "free-running"}
    first_free_t = float(table.columns["t"][10])
    ax = fig.axes[0]
    vertical = [l for l in ax.get_lines() if len(set(np.ravel(l.get_xdata()))) == 1]
    assert float(np.ravel(vertical[0].get_xdata())[0]) == pytest.approx(first_free_t)
    assert "free-running RMSE" in ax.get_title()


def test_log_picture_loss_lr_and_clipped_gradients(tables):
    from seqtool.tables import read_table

    fig = figure([("log", read_table(tables / "log.csv"))])
    loss, lr, grad = fig.axes
    assert loss.get_yscale() == "log" and lr.get_yscale() == "log" and grad.get_yscale() == "log"
    assert {l.get_label() for l in loss.get_lines()} == {"train", "validation"}
    assert "clipped steps" in {l.get_label() for l in grad.get_lines()}
    assert grad.get_xlabel() == "step"


def test_gradnorm_picture_one_line_per_cell_and_layer(tables):
    from seqtool.tables import read_table

    fig = figure([("g", read_table(tables / "gradnorm.csv"))])
    (ax,) = fig.axes
    assert ax.get_yscale() == "log"
    labels = {l.get_label() for l in ax.get_lines()}
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
    assert made == ["gradnorm.pdf", "log.pdf", "predict.pdf", "rollout.pdf", "series.pdf"]
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
    fig = figure([("t", __import__("seqtool.tables").tables.read_table(data))], x="value", series=["0"])
    assert labels_of(fig) >= {"value"}
    one_error_line(cli("plot", data, "--x", "value", "--series", "7", "-o", tmp_path / "u.png"), "no series '7'")


@pytest.mark.parametrize(
    "args, fragments",
    [
        (["--size", "big"], ["--size must be WIDTHxHEIGHT"]),
        (["-o", "x.gif"], ["unknown image format"]),
        (["--format", "gif"], ["--format must be png, svg or pdf"]),
    ],
)
def test_bad_plot_options(tables, tmp_path, cli, args, fragments):
    one_error_line(cli("plot", tables / "series.csv", *args), *fragments)


def test_unknown_table_lists_the_kinds(tmp_path, cli):
    data = tmp_path / "odd.csv"
    data.write_text("a,b\n1,2\n")
    one_error_line(cli("plot", data, "-o", tmp_path / "o.png"), "columns: a, b", "log: epoch, step, train_loss", "rollout: yhat, phase")
    assert not (tmp_path / "o.png").exists()


def test_overlay_refuses_mixed_kinds(tables, tmp_path, cli):
    one_error_line(cli("plot", tables / "log.csv", tables / "series.csv", "--overlay", "-o", tmp_path / "m.png"), "one kind")


def test_plot_does_not_import_torch(tables, tmp_path):
    code = (
        "import sys\nfrom seqtool.cli import app\n"
        f"sys.argv = ['seqtool', 'plot', {str(tables / 'rollout.csv')!r}, '-o', {str(tmp_path / 'r.png')!r}]\n"
        "try: app()\nexcept SystemExit as e: assert e.code == 0\n"
        "import json; print(json.dumps('torch' in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout.splitlines()[-1]) is False
