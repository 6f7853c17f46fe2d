"""Defaults that serve: each kind's documented pipeline learns it, --window's
default fits the targets, one long series is cut into streams, threads follow the work."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pandas
import pytest
import torch
from conftest import one_error_line

from seqtool import threads
from seqtool.config import ModelConfig, TrainConfig
from seqtool.data import generators
from seqtool.data.examples import Rows
from seqtool.data.scaling import Scaling
from seqtool.data.tables import write_table
from seqtool.model.checkpoint import build_model, load_checkpoint
from seqtool.model.network import over_series
from seqtool.training.batches import Streams, cut
from seqtool.training.run import train


def _judged(sh, tmp_path, kind: str, extra: str = "") -> tuple[dict, object]:
    """Run `gen KIND --help`'s pipeline (train, then judge on a fresh seed) through real
    pipes; `extra` goes to train. The judge's metrics and its table."""
    fit, judge = generators.COMMANDS[kind].pipeline.split("; ")
    fit = fit.replace("seqtool train", f"seqtool train {extra} -q")
    result = sh(f"{fit} && {judge} -q --metrics m.json -o out.csv", timeout=300)
    assert result.returncode == 0, result.stderr.decode()
    return json.loads((tmp_path / "m.json").read_text()), pandas.read_csv(tmp_path / "out.csv")


def test_every_kind_shows_the_pipeline_that_trains_it(cli, monkeypatch):
    monkeypatch.setenv("COLUMNS", "1000")
    for kind in generators.COMMANDS.values():
        fit, judge = kind.pipeline.split("; ")
        assert fit.startswith(f"seqtool gen {kind.name} | seqtool train") and judge.startswith(
            f"seqtool gen {kind.name} "
        )
        assert f"Train and judge it: {kind.pipeline}" in cli("gen", kind.name, "--help").stdout


@pytest.mark.parametrize(
    ("kind", "key", "bound"),
    [
        ("sine", "mse", 1e-3),
        ("multisine", "mse", 1e-2),
        ("sincos", "mse", 1e-3),
        ("integral", "mae", 0.01),
        ("adding", "mse", 0.01),
    ],
)
def test_the_documented_pipeline_learns_the_kind_on_a_fresh_seed(sh, tmp_path, kind, key, bound):
    metrics, _ = _judged(sh, tmp_path, kind)
    assert metrics[key] <= bound, metrics


def test_a_tanh_rnn_fails_the_adding_problem_through_the_same_pipeline(sh, tmp_path):
    metrics, _ = _judged(sh, tmp_path, "adding", "--cell rnn --steps 800")  # docs/generators.md: 0.164 at the full 2000
    assert metrics["mse"] > 0.1, metrics  # the mean answer scores about 0.167: vanishing gradients


@pytest.mark.parametrize(("kind", "bound"), [("lorenz", 0.2), ("mackey-glass", 0.3)])
def test_chaos_is_forecast_free_running_for_a_while(sh, tmp_path, kind, bound):
    """Chaos amplifies any error exponentially (Lorenz: e-fold every 1.1 time units, 55 steps
    at dt 0.02), so a free run is judged over its first steps only: the RMS error, each
    input scaled by its std over the table, stays under `bound` (docs/generators.md: measured figures)."""
    _, table = _judged(sh, tmp_path, kind)
    free = (table["phase"] == "free").to_numpy()
    names = [n for n in table.columns if n.startswith("x")]
    truth, yhat = table[names].to_numpy(), table[[n.replace("x", "yhat") for n in names]].to_numpy()
    error = (yhat - truth)[free] / truth.std(axis=0)
    assert free.sum() == {"lorenz": 100, "mackey-glass": 50}[kind]
    assert np.sqrt((error**2).mean()) <= bound


def test_the_trend_pipeline_beats_the_naive_forecasts(sh, tmp_path):
    metrics, _ = _judged(sh, tmp_path, "trend")
    assert metrics["mae"] < metrics["naive"]["mae"], metrics


# --- --window's default ---------------------------------------------------------------


def _trained(tmp_path, table, capfd, **settings):
    write_table(table, tmp_path / "d.csv")
    train(tmp_path / "d.csv", tmp_path / "m.pt", TrainConfig(hidden=4, steps=2, **settings), threads=1)
    return load_checkpoint(tmp_path / "m.pt")["train"]["window"], capfd.readouterr().err


def test_sparse_targets_get_windows_that_cover_whole_series(tmp_path, capfd):
    window, err = _trained(tmp_path, generators.adding(n_series=40, length=80), capfd)
    assert window == 80
    assert (
        "seqtool: targets are sparse (one step in 80 has one): each window covers a whole series (--window 80); "
        "give --window to choose" in err
    )


def test_an_explicit_window_is_kept_and_nothing_is_said(tmp_path, capfd):
    window, err = _trained(tmp_path, generators.adding(n_series=40, length=80), capfd, window=30)
    assert window == 30 and "sparse" not in err


def test_dense_targets_keep_50_step_windows(tmp_path, capfd):
    window, err = _trained(tmp_path, generators.sine(n_series=8, length=120), capfd)
    assert window == 50 and "sparse" not in err and "--stateful" not in err


def test_series_shorter_than_the_default_window_are_covered_whole(tmp_path, capfd):
    window, err = _trained(tmp_path, generators.sine(n_series=8, length=30), capfd)
    assert (
        window == 30 and "every series is shorter than 50 steps: each window covers a whole series (--window 30)" in err
    )
    table = generators.sine(n_series=3, length=30)
    table = type(table).from_arrays([c[:n] for c, n in zip(table.split(table.x), (30, 20, 30))])
    window, err = _trained(tmp_path, table, capfd)
    assert window == 30 and "(--window 30); series shorter than that are left out (1)" in err


def test_a_long_mapping_names_stateful_training(tmp_path, capfd):
    window, err = _trained(tmp_path, generators.integral(n_series=4, length=300), capfd)
    assert window == 50
    assert (
        "a target can depend on the last 50 inputs only; if it depends on more (an integrator), train with --stateful"
        in err
    )


def test_stateful_training_keeps_50_step_chunks(tmp_path, capfd):
    window, err = _trained(tmp_path, generators.adding(n_series=40, length=80), capfd, stateful=True)
    assert window == 50 and "sparse" not in err


# --- one long series, cut into streams ---------------------------------------------------


def test_a_long_series_is_cut_into_contiguous_streams_that_fill_the_batch():
    starts, lengths, before = cut(np.array([0]), np.array([1000]), batch=8, window=10)
    assert len(starts) == 8 and starts[0] == 0
    assert np.array_equal(starts[1:], starts[:-1] + lengths[:-1]) and starts[-1] + lengths[-1] == 1000
    assert lengths.tolist() == [130] * 7 + [90]  # whole windows, the last piece the rest
    assert before.tolist() == [-1, 0, 1, 2, 3, 4, 5, 6]  # each continues the one before
    starts, lengths, before = cut(np.array([0, 100]), np.array([100, 900]), batch=10, window=50)
    assert lengths.tolist() == [100, 200, 200, 200, 200, 100] and starts.tolist() == [
        0,
        100,
        300,
        500,
        700,
        900,
    ]  # none under 4 windows
    assert before.tolist() == [-1, -1, 1, 2, 3, 4]
    starts, lengths, before = cut(np.array([0, 5, 9]), np.array([5, 4, 11]), batch=2, window=50)
    assert starts.tolist() == [0, 5, 9] and lengths.tolist() == [5, 4, 11] and before.tolist() == [-1, -1, -1]  # kept


def _streams(length: int, window: int, batch: int) -> tuple[Rows, Streams]:
    x = np.arange(length, dtype=np.float64)[:, None]
    y = np.full((length, 1), np.nan)
    y[:-1] = x[1:]
    rows = Rows.of([x], [y], Scaling.fit([x], [y], True, ["x"], [], "t"))
    return rows, Streams(rows, window=window, batch=batch, seed=0)


def test_a_cut_stream_continues_from_the_state_its_predecessor_ended_with():
    """After the first epoch each cut stream starts from the state the stream before it
    (the rows before its first) ended with; the series' first stream from the model's
    start; in the first epoch the others from zero."""
    rows, streams = _streams(400, window=10, batch=4)
    assert streams.count == 4 and streams.per_epoch == streams.chunks == 10
    assert [streams.batch(k)[2] for k in range(10)] == [10 * k for k in range(10)]  # t0: consecutive chunks
    row_of = rows.x[:, 0].tolist().index
    carry, lasts = None, []

    def initial(n: int):
        return torch.full((1, n, 3), 7.0)

    for epoch in range(3):
        xb, _, t0 = streams.batch(epoch * streams.per_epoch)
        firsts = [row_of(v) for v in xb[:, 0, 0].tolist()]
        assert t0 == 0 and sorted(firsts) == [0, 100, 200, 300]
        if epoch:
            given = streams.start(epoch * streams.per_epoch, carry, initial)
            for slot, first in enumerate(firsts):
                want = initial(4)[0, slot] if first == 0 else carry[0, lasts.index(first - 1)]
                assert torch.equal(given[0, slot], want)
        else:
            given = streams.start(0, None, initial)
            assert [float(given[0, s, 0]) for s in range(4)] == [7.0 if f == 0 else 0.0 for f in firsts]
        xb, _, t0 = streams.batch(epoch * streams.per_epoch + streams.chunks - 1)
        lasts = [row_of(v) for v in xb[:, -1, 0].tolist()]  # the last row each stream read
        carry = torch.arange(4.0)[None, :, None].expand(1, 4, 3) + 10 * epoch  # its state there


def test_a_stateful_model_learns_where_each_series_starts(tmp_path):
    """A stateful model's start is learned, and each series read end to end (as predict,
    rollout and backtest read it) starts from it; a windowed model starts from zero."""
    data = tmp_path / "int.csv"
    write_table(generators.integral(n_series=8, length=300, seed=3), data)
    config = TrainConfig(hidden=8, steps=60, batch=8, window=25, stateful=True)
    train(data, tmp_path / "s.pt", config, quiet=True)
    ckpt = load_checkpoint(tmp_path / "s.pt")
    assert ckpt["model"]["learned_start"] is True and float(ckpt["weights"]["start"].abs().max()) > 1e-3
    net = build_model(ckpt)
    x = torch.randn(20, 1)
    out, _ = over_series(net, x, np.array([12, 8]))  # two series end to end
    with torch.no_grad():
        for first, n in ((0, 12), (12, 8)):
            alone, _ = net(x[None, first : first + n], net.initial(1))
            from_zero, _ = net(x[None, first : first + n], torch.zeros(1, 1, 8).expand(2, 1, 1, 8).unbind())
            torch.testing.assert_close(out[first : first + n], alone[0])
            assert not torch.allclose(out[first], from_zero[0, 0])
    train(data, tmp_path / "w.pt", replace(config, stateful=False), quiet=True)
    ckpt = load_checkpoint(tmp_path / "w.pt")
    assert ckpt["model"]["learned_start"] is False and "start" not in ckpt["weights"]


def test_a_checkpoint_from_before_learned_starts_still_loads(tmp_path, cli, small_model):
    """A checkpoint of format 1 may lack model.learned_start: it starts from zero."""
    ckpt = load_checkpoint(small_model / "m.pt")
    del ckpt["model"]["learned_start"]
    ckpt["version"] = 1
    torch.save(ckpt, tmp_path / "old.pt")
    assert build_model(ckpt).start is None
    result = cli("predict", str(tmp_path / "old.pt"), str(small_model / "sine.csv"), "-o", str(tmp_path / "p.csv"))
    assert result.exit_code == 0, result.output
    assert (tmp_path / "p.csv").read_text() == cli(
        "predict", str(small_model / "m.pt"), str(small_model / "sine.csv")
    ).stdout


def test_the_summary_says_how_the_series_was_cut(sh):
    result = sh(
        "seqtool gen integral -n 1 --length 3000 | seqtool train --stateful --batch 8 --steps 30 --hidden 8 --threads 1"
    )
    assert result.returncode == 0, result.stderr.decode()
    assert "on 8 streams cut from 1 series, stateful" in result.stderr.decode()


# --- threads ----------------------------------------------------------------------------


def test_threads_follow_the_work_and_the_free_cores(monkeypatch):
    monkeypatch.setattr(threads, "cores", lambda: 8)
    monkeypatch.setattr(threads, "busy", lambda: 0)
    assert threads.choose(threads.work(ModelConfig(1, 1, "lstm", 8, 1), 4)) == 1  # a tiny model: one thread
    assert threads.choose(threads.work(ModelConfig(1, 1, "lstm", 32, 1), 32)) == 1  # the default model: one too
    assert threads.choose(threads.work(ModelConfig(1, 1, "lstm", 64, 1), 32)) == 2
    assert threads.choose(threads.work(ModelConfig(1, 1, "lstm", 256, 2), 256)) == 8
    monkeypatch.setattr(threads, "busy", lambda: 7)  # a sweep holds the other cores
    assert threads.choose(threads.work(ModelConfig(1, 1, "lstm", 256, 2), 256)) == 1
    monkeypatch.setattr(threads, "busy", lambda: 20)
    assert threads.choose(threads.work(ModelConfig(1, 1, "lstm", 256, 2), 256)) == 1


def test_train_reports_and_stores_the_threads_it_used(tmp_path, monkeypatch, capfd):
    monkeypatch.setattr(threads, "choose", lambda macs: 1)
    before = torch.get_num_threads()
    try:
        write_table(generators.sine(n_series=8, length=60), tmp_path / "d.csv")
        train(tmp_path / "d.csv", tmp_path / "m.pt", TrainConfig(hidden=8, steps=5))
        assert "on 1 thread;" in capfd.readouterr().err  # the summary
        assert load_checkpoint(tmp_path / "m.pt")["resume"]["threads"] == 1
        train(
            tmp_path / "d.csv",
            tmp_path / "m2.pt",
            TrainConfig(hidden=8, steps=5),
            threads=2 if threads.cores() > 1 else 1,
        )
        assert "on 2 threads" in capfd.readouterr().err or threads.cores() == 1
    finally:
        torch.set_num_threads(before)


def test_inference_commands_take_threads(cli, small_model):
    m, data = small_model / "m.pt", small_model / "sine.csv"
    for command in (
        ["predict", m, data],
        ["rollout", m, data],
        ["backtest", m, data, "--horizon", "3"],
        ["gradnorm", m, data],
    ):
        result = cli(*command, "--threads", "1", "-q")
        assert result.exit_code == 0, result.stderr
        assert torch.get_num_threads() == 1
        one_error_line(cli(*command, "--threads", "0", "-q"), "--threads must be a whole number in [1, ")


# --- choices that complete ----------------------------------------------------------------


def test_a_choice_is_taken_in_any_case(cli, tmp_path):
    write_table(generators.sine(n_series=4, length=60), tmp_path / "d.csv")
    result = cli(
        "train",
        tmp_path / "d.csv",
        "--cell",
        "LSTM",
        "--schedule",
        "Plateau",
        "--steps",
        "2",
        "--hidden",
        "4",
        "-q",
        "-o",
        tmp_path / "m.pt",
    )
    assert result.exit_code == 0, result.stderr
    saved = load_checkpoint(tmp_path / "m.pt")
    assert saved["model"]["cell"] == "lstm" and saved["train"]["schedule"] == "plateau"


@pytest.mark.parametrize(
    ("argv", "listed"),
    [
        (["train", "d.csv", "--cell", "foo"], "'foo' is not one of 'rnn', 'lstm', 'gru'"),
        (["train", "d.csv", "--optimizer", "rmsprop"], "'rmsprop' is not one of 'adam', 'sgd'"),
        (["train", "d.csv", "--schedule", "step"], "'step' is not one of 'cosine', 'plateau', 'none'"),
        (["train", "d.csv", "--device", "tpu"], "'tpu' is not one of 'auto', 'cpu', 'cuda'"),
        (["plot", "d.csv", "--format", "jpg"], "'jpg' is not one of 'png', 'svg', 'pdf'"),
        (["gradnorm", "--task", "lorenz"], "'lorenz' is not one of 'adding', 'sine', 'sincos', 'multisine'"),
    ],
)
def test_a_value_outside_the_choices_lists_them(cli, argv, listed):
    one_error_line(cli(*argv), listed)


def test_help_lists_the_choices(cli):  # as <a|b> or [a|b], by the version of typer
    assert "rnn|lstm|gru" in cli("train", "--help").stdout and "adam|sgd" in cli("train", "--help").stdout
    assert "png|svg|pdf" in cli("plot", "--help").stdout and "last|all" in cli("gradnorm", "--help").stdout


@pytest.mark.parametrize(
    ("shell", "start"),
    [("bash", "_seqtool_completion() {"), ("zsh", "#compdef seqtool"), ("fish", "complete --command seqtool")],
)
def test_completion_scripts_print_for_each_shell(sh, shell, start):
    result = sh(f"_TYPER_COMPLETE_TEST_DISABLE_SHELL_DETECTION=1 seqtool --show-completion {shell}")
    assert result.returncode == 0 and result.stdout.decode().startswith(start), result.stderr.decode()
    assert f"_SEQTOOL_COMPLETE=complete_{shell}" in result.stdout.decode()


def test_the_shell_completes_the_choices_of_an_option(sh):
    bash = sh("_SEQTOOL_COMPLETE=complete_bash COMP_WORDS='seqtool train --cell ' COMP_CWORD=3 seqtool")
    assert bash.stdout.decode().split() == ["rnn", "lstm", "gru"]
    zsh = sh("_SEQTOOL_COMPLETE=complete_zsh _TYPER_COMPLETE_ARGS='seqtool plot --format ' seqtool")
    assert all(f'"{f}"' in zsh.stdout.decode() for f in ("png", "svg", "pdf"))
