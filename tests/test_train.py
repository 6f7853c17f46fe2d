"""`seqtool train`: accuracy on fixed seeds, repeatability, resume, checkpoints, failures."""

from __future__ import annotations

import json
import os
import pickle
import signal
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import BIN, faulty_source, one_error_line

from seqtool.config import TrainConfig
from seqtool.data import generators
from seqtool.data.tables import SeriesTable, write_table
from seqtool.errors import RunFailed, SeqtoolError
from seqtool.forecast.predict import predict
from seqtool.model.checkpoint import FORMAT, VERSION, build_model, load_checkpoint, save_checkpoint
from seqtool.model.network import ModelConfig, SeqModel
from seqtool.training.run import train

SMALL = dict(hidden=8, steps=60, window=20, batch=16)


def small_sine(tmp_path, n=24, seed=0) -> Path:
    path = tmp_path / f"sine{seed}.csv"
    write_table(generators.sine(n_series=n, length=30, seed=seed), path)
    return path


def weights(path) -> dict:
    return torch.load(path, weights_only=True)["weights"]


def same_weights(a, b) -> bool:
    wa, wb = weights(a), weights(b)
    return wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)


# --- accuracy on fixed seeds (the full-size runs are in bench/) -------------------------


def test_pipeline_as_written_gives_an_accurate_sine_model(sh):
    """`seqtool gen sine | seqtool train --cell lstm`, then predict and rollout on fresh data."""
    result = sh("seqtool gen sine | seqtool train --cell lstm", timeout=300)
    assert result.returncode == 0, result.stderr.decode()
    assert result.stdout.decode() == "model.pt\n"
    assert "trained lstm" in result.stderr.decode()
    fresh = "seqtool gen sine --seed 1"
    for command, name in [("predict model.pt --warmup 5", "tf"), ("rollout model.pt", "free")]:
        run = sh(f"{fresh} | seqtool {command} --metrics {name}.json > {name}.csv")
        assert run.returncode == 0, run.stderr.decode()
        assert "MSE" in run.stderr.decode()
    tmp = Path(sh("pwd").stdout.decode().strip())
    tf = json.loads((tmp / "tf.json").read_text())
    free = json.loads((tmp / "free.json").read_text())
    assert tf["mse"] <= 1e-5 and tf["warmup"] == 5
    assert free["mse"] <= 1e-4 and free["warmup"] == 10 and free["steps"] == 256 * 40


def test_sincos_stateful_learns_the_mapping(tmp_path):
    out = tmp_path / "sc.pt"
    train(generators.sincos(seed=0), out, TrainConfig(stateful=True, seed=0), quiet=True)
    _, scores = predict(out, generators.sincos(seed=1, n_series=8), warmup=5, quiet=True)
    assert scores["mse"] <= 1e-3


def test_sparse_targets_are_masked_out_of_the_loss(tmp_path):
    out = tmp_path / "add.pt"
    data = generators.adding(n_series=64, length=12, seed=0)
    result = train(data, out, TrainConfig(hidden=8, steps=40, window=12, val=0), quiet=True)
    assert np.isfinite(result.train_loss)
    _, scores = predict(out, generators.adding(n_series=10, length=12, seed=1), quiet=True)
    assert scores["steps"] == 10  # one target per series: the last step


# --- repeatability and resume -----------------------------------------------------------


def test_mae_forecasts_the_median_where_mse_forecasts_the_mean(tmp_path):
    """Values that are 0 nine times in ten and 10 otherwise, at random: the best forecast by
    squared error is their mean (about 1), by absolute error their median (0), for one
    network and for an ensemble."""
    rng = np.random.default_rng(0)
    table = SeriesTable.from_arrays([np.where(rng.random(60) < 0.1, 10.0, 0.0) for _ in range(16)])
    mean = table.x.mean()
    for loss, members in (("mse", 1), ("mae", 1), ("mae", 2)):
        config = TrainConfig(hidden=4, steps=200, window=20, batch=16, val=0, loss=loss, ensemble=members)
        train(table, tmp_path / "m.pt", config, quiet=True)
        forecast = np.nanmean(predict(tmp_path / "m.pt", table, quiet=True)[0].columns["yhat"])
        expected = mean if loss == "mse" else 0.0
        assert abs(forecast - expected) < 0.15, (loss, members, forecast, mean)


def test_point_losses_by_hand():
    """The mean squared and absolute errors over the steps with a target; an ensemble's is
    the sum of its members' own."""
    out, y = torch.tensor([[1.0, -2.0, 0.5]]), torch.tensor([[0.0, 1.0, float("nan")]])
    for loss, expected in (("mse", (1 + 9) / 2), ("mae", (1 + 3) / 2)):
        head = SeqModel(ModelConfig(n_in=1, n_out=3, hidden=2, loss=loss)).head
        value, count = head.loss(out, y)
        assert count == 2 and value.item() == pytest.approx(expected)
        pair = SeqModel(ModelConfig(n_in=1, n_out=1, hidden=2, loss=loss, members=2)).head
        both = torch.tensor([[[1.0, 4.0], [-2.0, 0.0]]])  # [batch, steps, members]
        value, count = pair.loss(both, torch.tensor([[[0.0], [1.0]]]))
        assert count == 2 and value.item() == pytest.approx(expected + (16 + 1 if loss == "mse" else 4 + 1) / 2)


def test_same_seed_same_weights_other_seed_differs(tmp_path):
    data = small_sine(tmp_path)
    for name, seed in [("a", 0), ("b", 0), ("c", 1)]:
        train(data, tmp_path / f"{name}.pt", TrainConfig(**SMALL, seed=seed), quiet=True)
    assert same_weights(tmp_path / "a.pt", tmp_path / "b.pt")
    assert not same_weights(tmp_path / "a.pt", tmp_path / "c.pt")


@pytest.mark.parametrize("mode", ["windows", "stateful", "cut"])
def test_sigint_then_resume_ends_at_the_same_weights(tmp_path, sh, mode):
    """A real process, interrupted by SIGINT mid-run, resumes to an uninterrupted run's
    weights; "cut": one long series cut into streams that hand their state on each epoch."""
    data = small_sine(tmp_path, n=64)
    if mode == "cut":
        write_table(generators.integral(n_series=1, length=4000, seed=0), data := tmp_path / "long.csv")
    steps = 600 if mode == "cut" else 1500
    flags = (
        f"--hidden 16 --steps {steps} --window 10 --threads 1 "
        + {"windows": "", "stateful": "--stateful", "cut": "--stateful --batch 8"}[mode]
    )
    straight = sh(f"seqtool train {data} {flags} -o straight.pt -q", timeout=300)
    assert straight.returncode == 0, straight.stderr
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    proc = subprocess.Popen(
        ["seqtool", "train", str(data), *flags.split(), "-o", "cut.pt", "--log", "cut.csv"],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    line = proc.stderr.readline()
    while mode == "cut" and line.startswith("seqtool: step") and int(line.split()[2].split("/")[0]) < 75:
        line = proc.stderr.readline()  # past the first epoch, so that states were handed on
    assert line.startswith("seqtool: step")  # training has started
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    last = err.splitlines()[-1]
    assert last.startswith("seqtool: stopped: SIGINT at step") and "--resume" in last
    saved = load_checkpoint(tmp_path / "cut.pt")
    assert 0 < saved["resume"]["step"] < steps
    assert mode != "cut" or saved["resume"]["step"] > 50
    so_far = [float(r.split(",")[1]) for r in (tmp_path / "cut.csv").read_text().splitlines()[1:]]
    assert so_far == [float(row["step"]) for row in saved["history"]]  # the log grew row by row
    resumed = sh(f"seqtool train {data} --resume -o cut.pt -q --log cut.csv", timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    assert same_weights(tmp_path / "straight.pt", tmp_path / "cut.pt")
    log = (tmp_path / "cut.csv").read_text().splitlines()
    assert log[0] == "epoch,step,train_loss,val_loss,lr,grad_norm,clipped,seconds"
    assert [float(r.split(",")[1]) for r in log[1:]] == [
        float(k) for k in range(25, steps + 1, 25)
    ]  # continued, once each


def test_resume_takes_settings_from_the_checkpoint(tmp_path, cli):
    data = small_sine(tmp_path)
    out = tmp_path / "m.pt"
    train(data, out, TrainConfig(**{**SMALL, "clip": 0.5, "lr": 0.003}), quiet=True)
    saved = load_checkpoint(out)
    assert saved["train"]["clip"] == 0.5 and saved["train"]["lr"] == 0.003
    one_error_line(cli("train", data, "--resume", "-o", out, "--lr", "0.1"), "--resume", "drop --lr")
    result = cli("train", data, "--resume", "-o", out, "-q")
    assert result.exit_code == 0 and result.stdout == f"{out}\n"  # already done: nothing to do
    other = small_sine(tmp_path, seed=5)
    with pytest.raises(SeqtoolError, match="data differs"):
        train(other, out, resume=True, quiet=True)


# --- checkpoints --------------------------------------------------------------------------


def test_checkpoint_is_plain_weights_only_data(tmp_path):
    out = tmp_path / "m.pt"
    umask = os.umask(0o022)  # a hardened machine's 077 would give 0600 to every new file
    try:
        train(small_sine(tmp_path), out, TrainConfig(**SMALL, cell="gru"), quiet=True)
    finally:
        os.umask(umask)
    ckpt = torch.load(out, weights_only=True)
    assert ckpt["format"] == FORMAT and ckpt["version"] == VERSION == 2
    assert ckpt["model"]["cell"] == "gru" and ckpt["data"]["task"] == "next-step"
    assert ckpt["data"]["x_names"] == ["x"]
    assert isinstance(ckpt["resume"]["torch_rng"], torch.Tensor)
    assert set(ckpt["norm"]) == {"x_mean", "x_std", "y_mean", "y_std"}
    assert oct(out.stat().st_mode & 0o777) != oct(0o600)  # not mkstemp's private mode


def test_lstm_forget_gate_bias_starts_at_one():
    model = SeqModel(ModelConfig(n_in=2, n_out=1, cell="lstm", hidden=5, layers=2))
    for layer in range(2):
        b_ih = getattr(model.rnn, f"bias_ih_l{layer}")
        b_hh = getattr(model.rnn, f"bias_hh_l{layer}")
        assert torch.equal((b_ih + b_hh)[5:10], torch.ones(5))
        assert not torch.equal(b_ih[:5], torch.ones(5))  # other gates keep PyTorch's init


def test_pickle_that_runs_code_is_refused_without_running(tmp_path, cli):
    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    evil = tmp_path / "evil.pt"
    with open(evil, "wb") as f:
        pickle.dump({"format": FORMAT, "version": 1, "x": Payload()}, f)
    result = cli("predict", evil, small_sine(tmp_path))
    one_error_line(result, "evil.pt", "not a seqtool checkpoint")
    assert not marker.exists()


def test_interrupted_checkpoint_write_keeps_the_previous(tmp_path, monkeypatch):
    out = tmp_path / "m.pt"
    train(small_sine(tmp_path), out, TrainConfig(**SMALL), quiet=True)
    before = out.read_bytes()

    def crash(obj, f, *args, **kwargs):
        f.write(b"half a checkpo")
        raise KeyboardInterrupt

    monkeypatch.setattr(torch, "save", crash)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint({"model": {}}, out)
    assert out.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.pt", "sine0.csv"]


def test_damaged_and_future_checkpoints_are_refused(tmp_path):
    out = tmp_path / "m.pt"
    train(small_sine(tmp_path), out, TrainConfig(**SMALL), quiet=True)
    ckpt = torch.load(out, weights_only=True)
    torch.save({**ckpt, "version": 99}, tmp_path / "future.pt")
    with pytest.raises(SeqtoolError, match="version 99 is newer"):
        load_checkpoint(tmp_path / "future.pt")
    for version in (True, 1.0, "2", 0, -1, None):
        torch.save({**ckpt, "version": version}, tmp_path / "odd.pt")
        with pytest.raises(SeqtoolError, match=r"not a seqtool checkpoint \(format version"):
            load_checkpoint(tmp_path / "odd.pt")
    torch.save({**ckpt, "model": {**ckpt["model"], "hidden": 9}}, tmp_path / "bad.pt")
    with pytest.raises(SeqtoolError, match="damaged seqtool checkpoint"):
        build_model(load_checkpoint(tmp_path / "bad.pt"), name="bad.pt")
    (tmp_path / "cut.pt").write_bytes(out.read_bytes()[:500])
    with pytest.raises(SeqtoolError, match="not a seqtool checkpoint"):
        load_checkpoint(tmp_path / "cut.pt")


def test_format_1_may_lack_the_later_fields_and_format_2_may_not(tmp_path):
    """Format 1 files may lack model.learned_start, model.loss and resume.acc.steps: they
    predict and resume. In format 2 each is required."""
    data, out = small_sine(tmp_path), tmp_path / "m.pt"
    train(data, out, TrainConfig(**{**SMALL, "steps": 20}), quiet=True)
    ckpt = torch.load(out, weights_only=True)
    for key in ("learned_start", "loss"):
        del ckpt["model"][key]
    del ckpt["resume"]["acc"]["steps"]
    torch.save({**ckpt, "version": 2}, tmp_path / "bad.pt")
    with pytest.raises(SeqtoolError, match=r"damaged seqtool checkpoint: model has fields \['cell'"):
        load_checkpoint(tmp_path / "bad.pt")
    for steps in ("x", None, -1):  # may be missing in format 1, never wrong
        acc = {**ckpt["resume"]["acc"], "steps": steps}
        torch.save({**ckpt, "version": 1, "resume": {**ckpt["resume"], "acc": acc}}, tmp_path / "odd.pt")
        with pytest.raises(SeqtoolError, match=r"resume.acc.steps is .*, expected a non-negative number"):
            train(data, tmp_path / "odd.pt", resume=True, quiet=True)
    torch.save({**ckpt, "version": 1, "train": {**ckpt["train"], "steps": 40}}, out)
    assert predict(out, data, quiet=True)[1]["steps"] > 0
    train(data, out, resume=True, quiet=True)
    again = load_checkpoint(out)
    assert again["version"] == 2 and again["model"]["learned_start"] is False and again["model"]["loss"] == "mse"
    assert again["resume"]["step"] == 40 and again["resume"]["acc"]["steps"] >= 0


def test_a_carried_state_of_other_streams_is_refused_on_resume(tmp_path):
    """A stateful checkpoint whose carried state holds other streams than the run reads
    (a file of format 1 may come from a seqtool that cut a long series otherwise) is
    refused in one line."""
    data, out = tmp_path / "long.csv", tmp_path / "m.pt"
    write_table(generators.integral(n_series=1, length=3000, seed=0), data)
    train(data, out, TrainConfig(hidden=8, steps=80, window=10, batch=8, stateful=True), quiet=True)
    ckpt = torch.load(out, weights_only=True)
    carry = tuple(c[:, :5] for c in ckpt["resume"]["carry"])
    torch.save({**ckpt, "resume": {**ckpt["resume"], "carry": carry}}, out)
    with pytest.raises(SeqtoolError, match=r"resume.carry holds the state of 5 streams, where this run reads 8"):
        train(data, out, resume=True, quiet=True)


# --- failures -----------------------------------------------------------------------------


def test_diverging_run_exits_1_and_keeps_the_earlier_checkpoint(tmp_path, cli):
    data = small_sine(tmp_path)
    out = tmp_path / "m.pt"
    train(data, out, TrainConfig(**SMALL), quiet=True)
    before = out.read_bytes()
    result = cli("train", data, "--cell", "rnn", "--lr", "1e3", "--window", "20", "-o", out, "-q")
    assert result.exit_code == 1
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("seqtool: error: training diverged at step")
    assert "--clip" in lines[0] and "--lr" in lines[0]
    assert out.read_bytes() == before  # diverged before any good step: the old file stays


def test_divergence_after_progress_saves_the_last_good_state(tmp_path):
    data = small_sine(tmp_path)
    out = tmp_path / "m.pt"

    def poisoned(step, batch):  # a NaN appears in a batch at step 40
        x, y, t0 = batch
        return (x * float("nan"), y, t0) if step == 40 else batch

    with pytest.raises(RunFailed, match="diverged at step 41.*last good state \\(step 25\\)"):
        train(data, out, TrainConfig(**SMALL), quiet=True, source=faulty_source(poisoned))
    assert load_checkpoint(out)["resume"]["step"] == 25


@pytest.mark.parametrize(
    "args, fragments",
    [
        (["--window", "100"], ["shorter than --window 100", "longest: 30"]),
        (["--cell", "transformer"], ["'transformer' is not one of 'rnn', 'lstm', 'gru'"]),
        (["--schedule", "step"], ["--schedule"]),
        (["--steps", "10", "--epochs", "2"], ["--steps or --epochs"]),
        (["--val", "1.5"], ["--val"]),
        (["--x", "value"], ["no column 'value'"]),
        (["--season", "30"], ["--season 30 is as long as the longest series (30 steps)", "no seasonal naive"]),
    ],
)
def test_bad_training_options(tmp_path, cli, args, fragments):
    one_error_line(cli("train", small_sine(tmp_path), "-o", tmp_path / "m.pt", *args), *fragments)
    assert not (tmp_path / "m.pt").exists()


def test_log_rows_and_plain_progress(tmp_path, cli):
    result = cli("train", small_sine(tmp_path), "-o", tmp_path / "m.pt", "--log", tmp_path / "log.csv",
                 "--hidden", "8", "--steps", "100", "--window", "20", "--clip", "0.001")  # fmt: skip
    assert result.exit_code == 0, result.stderr
    progress = [line for line in result.stderr.splitlines() if line.startswith("seqtool: step")]
    assert progress[0].startswith("seqtool: step 25/100") and progress[-1].startswith("seqtool: step 100/100")
    assert result.stderr.splitlines()[-1].startswith("seqtool: trained lstm (1 x 8)")
    from seqtool.data.tables import read_table

    log = read_table(tmp_path / "log.csv")
    assert list(log.columns) == ["epoch", "step", "train_loss", "val_loss", "lr", "grad_norm", "clipped", "seconds"]
    assert log.numbers("step").tolist() == [25, 50, 75, 100]
    assert (log.numbers("clipped") == 25).all()  # clip 0.001 clips every step (grad norms stay above 0.01)
    assert (np.diff(log.numbers("lr")) < 0).all()  # cosine decay


def test_quiet_train_prints_only_the_path(tmp_path, cli):
    result = cli(
        "train", small_sine(tmp_path), "-o", tmp_path / "m.pt", "-q", "--hidden", "8", "--steps", "30", "--window", "20"
    )
    assert result.exit_code == 0 and result.stderr == "" and result.stdout == f"{tmp_path / 'm.pt'}\n"


def test_cli_defaults_are_the_library_defaults():
    import inspect

    from typer.main import get_command

    from seqtool.cli import app
    from seqtool.config import TrainConfig

    command = get_command(app).commands["train"]
    library = TrainConfig()
    for param in command.params:
        if hasattr(library, param.name) and param.name != "steps":
            assert param.default == getattr(library, param.name), param.name
    for name in ("predict", "rollout"):
        function = getattr(__import__(f"seqtool.forecast.{name}", fromlist=[name]), name)
        defaults = {k: p.default for k, p in inspect.signature(function).parameters.items()}
        for param in get_command(app).commands[name].params:
            if param.name in defaults and param.name not in ("data", "model"):
                assert param.default == defaults[param.name], (name, param.name)


def test_steps_without_targets_are_left_out_of_the_logged_averages(tmp_path):
    """A stateful run over a long and a short series: the short stream's chunks past its
    end have no target. Their steps teach nothing and are not averaged in as a loss of 0:
    an interval with no target at all logs NaN."""
    from seqtool.data.tables import SeriesTable, read_table

    t = np.arange(300) * 0.2
    write_table(SeriesTable.from_arrays([np.sin(t), np.sin(t[:10])]), tmp_path / "ragged.csv")
    config = TrainConfig(hidden=8, steps=120, window=5, batch=1, stateful=True, val=0)
    train(tmp_path / "ragged.csv", tmp_path / "m.pt", config, log=tmp_path / "log.csv", quiet=True)
    log = read_table(tmp_path / "log.csv")
    loss, grad = log.numbers("train_loss", True), log.numbers("grad_norm", True)
    assert np.isnan(loss).any() and (np.isnan(loss) == np.isnan(grad)).all()
    assert (loss[~np.isnan(loss)] > 0).all()


def test_stateful_burn_in_longer_than_a_chunk_spans_the_chunks(tmp_path):
    """With --stateful, --burn-in K leaves out the first K steps of each stream even when
    they span several chunks: targets only at steps 4 and 5, --window 4 --burn-in 6: nothing
    to learn, refused; --burn-in 4: trained."""
    from seqtool.data.tables import SeriesTable

    y = np.full(12, np.nan)
    y[4:6] = 1.0
    write_table(SeriesTable.from_arrays([np.arange(12.0)] * 3, y=[y] * 3), tmp_path / "t.csv")
    config = dict(hidden=4, steps=6, window=4, stateful=True, val=0)
    with pytest.raises(SeqtoolError, match="no stream has a target after its first 6 steps"):
        train(tmp_path / "t.csv", tmp_path / "m.pt", TrainConfig(**config, burn_in=6), quiet=True)
    result = train(tmp_path / "t.csv", tmp_path / "m.pt", TrainConfig(**config, burn_in=4), quiet=True)
    assert result.train_loss > 0


@pytest.mark.parametrize("suffix", [".csv", ".npz"])
def test_the_log_grows_during_the_run(tmp_path, suffix):
    """At each evaluation the log holds every row so far (a CSV appended and flushed, an npz
    rewritten), so `tail -f` and `seqtool plot` follow a run; at the end it is the table."""
    from seqtool.data.tables import read_table
    from seqtool.training.report import history_table

    seen = {}

    def peek(step, batch):
        if step in (60, 110):
            seen[step] = read_table(tmp_path / f"log{suffix}").numbers("step").tolist()
        return batch

    config = TrainConfig(hidden=8, steps=125, window=10, batch=8)
    train(
        small_sine(tmp_path),
        tmp_path / "m.pt",
        config,
        log=tmp_path / f"log{suffix}",
        quiet=True,
        source=faulty_source(peek),
    )
    assert seen == {60: [25.0, 50.0], 110: [25.0, 50.0, 75.0, 100.0]}
    history = load_checkpoint(tmp_path / "m.pt")["history"]
    write_table(history_table(history), tmp_path / f"whole{suffix}")
    grown, whole = read_table(tmp_path / f"log{suffix}"), read_table(tmp_path / f"whole{suffix}")
    assert list(grown.columns) == list(whole.columns)
    for name in whole.columns:
        assert np.array_equal(grown.numbers(name, True), whole.numbers(name, True), equal_nan=True), name
    if suffix == ".csv":
        assert (tmp_path / "log.csv").read_bytes() == (tmp_path / "whole.csv").read_bytes()


def test_a_resume_field_is_declared_in_one_place(tmp_path):
    """A field added to `RunState` alone is saved, loaded and checked with the others: a real
    run's state round-trips with it, and a bad value of it is refused by name."""
    from dataclasses import field, make_dataclass

    from seqtool.model.checkpoint import Damaged
    from seqtool.training.state import RunState

    train(small_sine(tmp_path), tmp_path / "m.pt", TrainConfig(**{**SMALL, "steps": 5}), quiet=True)
    ckpt = load_checkpoint(tmp_path / "m.pt")
    assert RunState.from_dict(ckpt["resume"]).to_dict().keys() == ckpt["resume"].keys()
    Extended = make_dataclass("Extended", [("tokens", int, field(default=0))], bases=(RunState,))
    state = Extended.from_dict({**ckpt["resume"], "tokens": 7})
    assert (state.tokens, state.step) == (7, 5)
    saved = state.to_dict()
    assert saved["tokens"] == 7 and set(saved) == set(ckpt["resume"]) | {"tokens"}
    Extended.check(saved, ckpt, Damaged("m.pt"))
    with pytest.raises(
        SeqtoolError, match=r"^m\.pt: damaged seqtool checkpoint: resume\.tokens is -1, expected a non-negative int$"
    ):
        Extended.check({**saved, "tokens": -1}, ckpt, Damaged("m.pt"))
    with pytest.raises(SeqtoolError, match=r"resume\.tokens is None, expected a non-negative int"):
        Extended.check(ckpt["resume"], ckpt, Damaged("m.pt"))
