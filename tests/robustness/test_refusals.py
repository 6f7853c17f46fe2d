"""Mistakes refused before any work, with one line and exit 2: option bounds, runs that
cannot train, checkpoints edited by hand, data whose scale cannot be represented; and
predictions that are not numbers reported as a failed run (exit 1)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import one_error_line

from seqtool import limits
from seqtool.config import TrainConfig
from seqtool.data import generators
from seqtool.data.scaling import Scaling
from seqtool.data.tables import SeriesTable, write_table
from seqtool.errors import SeqtoolError
from seqtool.forecast.predict import predict
from seqtool.limits import LIMITS
from seqtool.training.run import train


@pytest.fixture(scope="module")
def work(small_model):
    return small_model


# --- bounds: every option, checked before the data is read ------------------------------


BAD = [
    # the failing cases of the issue first
    (["train", "D", "--epochs", "inf"], "--epochs must be a number in (0, 1e+06], got inf"),
    (["train", "D", "--threads", "-1"], "--threads must be a whole number in [1, "),  # up to the cores here
    (["train", "D", "--threads", "100000"], "--threads must be a whole number in [1, "),
    (["train", "D", "--seed", "-1"], "--seed must be a whole number in [0, 4294967295], got -1"),
    (["train", "D", "--seed", str(2**70)], "--seed must be a whole number in [0, 4294967295]"),
    (["train", "D", "--val", "-0.5"], "--val must be a number in [0, 1), got -0.5"),
    (["train", "D", "--hidden", "100000"], "--hidden must be a whole number in [1, 4096]"),
    (["train", "D", "--hidden", "4096", "--layers", "16", "--batch", "100000", "--window", "1000"], "needs about"),
    (["train", "D", "--lr", "nan"], "--lr must be a number in (0, 1e+06], got nan"),
    (["train", "D", "--clip", "1e308"], "--clip must be a number in [0, 1e+12]"),
    (["train", "D", "--dropout", "1"], "--dropout must be a number in [0, 1)"),
    (["train", "D", "--window", "4"], "--window 4 is not longer than --burn-in 4"),
    (["train", "D", "--steps", "0"], "--steps must be a whole number in [1, 1000000000], got 0"),
    (["rollout", "M", "D", "--horizon", str(10**12)], "--horizon must be a whole number in [0, 1000000000]"),
    (["rollout", "M", "D", "--horizon", "1000000000"], "a rollout of 8,000,000,480 rows needs about"),
    (["rollout", "M", "D", "--steps", "-1"], "--steps must be a whole number in [0, 1000000000], got -1"),
    (["predict", "M", "D", "--warmup", "-3"], "--warmup must be a whole number in [0, 1000000000], got -3"),
    (["plot", "D", "--dpi", "0"], "--dpi must be a whole number in [10, 1000], got 0"),
    (["plot", "D", "--size", "100000x100"], "--size must be a whole number in [50, 10000], got 100000"),
    (["gradnorm", "--length", "1000000"], "--length must be a whole number in [2, 100000]"),
    (["gradnorm", "--hidden", "4096", "--layers", "16", "--length", "100000", "--batch", "100"], "needs about"),
    (["gradnorm", "--forget-bias", "inf"], "--forget-bias must be a number in [-100, 100], got inf"),
    (["gen", "lorenz", "--dt", "1e6", "-l", "5"], "--dt must be a number in [0.001, 1], got 1000000.0"),
    (["gen", "mackey-glass", "--tau", "1e9"], "--tau must be a number in (0, 1000]"),
    (["gen", "sine", "--span", "inf"], "--span must be a number in (0, 1e+06], got inf"),
    (["gen", "multisine", "--freqs", "1,1e300"], "--freqs must be a number in [-1e+06, 1e+06], got 1e+300"),
    (["gen", "integral", "--gain", "0"], "--gain must be a number in (0, 1000], got 0.0"),
    (["gen", "sine", "-n", "10000", "-l", "100000"], "--n-series x --length must be a whole number in [1, 100000000]"),
    (["gen", "sincos", "--seed", "-5"], "--seed must be a whole number in [0, 4294967295], got -5"),
]


@pytest.mark.parametrize("args, fragment", BAD)
def test_every_option_has_bounds_checked_before_work(work, cli, args, fragment, monkeypatch):
    monkeypatch.setattr(limits, "available_memory", lambda: 16 << 30)  # "needs about": on any machine
    names = {"D": str(work / "sine.csv"), "M": str(work / "m.pt")}
    one_error_line(cli(*[names.get(a, a) for a in args]), fragment)


def test_bounds_are_shown_in_help(cli):
    shown = {
        ("train",): ["hidden", "layers", "dropout", "lr", "batch", "window", "stride", "steps", "epochs", "clip",
                     "val", "patience", "burn_in", "seed", "threads"],
        ("predict",): ["warmup"], ("rollout",): ["rollout_warmup", "free_steps", "horizon"],
        ("plot",): ["dpi", "pixels"], ("gradnorm",): ["init_scale", "forget_bias", "grad_length", "grad_batch"],
        ("gen", "sine"): ["n_series", "length", "seed", "span", "noise"], ("gen", "adding"): ["adding_length"],
        ("gen", "lorenz"): ["lorenz_dt"], ("gen", "mackey-glass"): ["tau", "mg_dt"],
        ("gen", "integral"): ["jump_prob", "gain"], ("gen", "sincos"): ["per_span"], ("gen", "multisine"): ["freq"],
    }  # fmt: skip
    for command, keys in shown.items():
        result = cli(*command, "--help")
        assert result.exit_code == 0
        text = " ".join(result.stdout.replace("│", " ").split())  # rich wraps lines in a box: join them
        for key in keys:
            assert LIMITS[key].interval() in text, (command, key)


def test_the_data_is_not_read_before_the_options_are_checked(tmp_path, cli):
    """A missing file is not looked for: the option is refused first."""
    one_error_line(cli("train", tmp_path / "absent.csv", "--window", "1"), "--window 1 is not longer than --burn-in 4")
    one_error_line(cli("train", tmp_path / "absent.csv", "--lr", "-1"), "--lr must be")


# --- runs that cannot train -------------------------------------------------------------


def test_a_run_in_which_no_step_has_a_target_is_refused(tmp_path, cli):
    """The failing cases: `--window 1` and an all-empty target column trained to "loss 0"
    with bit-identical weights, exit 0, and a raw PyTorch warning."""
    empty = tmp_path / "empty.csv"
    empty.write_text("x,y\n" + "".join(f"{i},\n" for i in range(20)))
    one_error_line(cli("train", empty, "--window", "5", "--burn-in", "0", "-o", tmp_path / "m.pt"),
                   "no step of the training split has a target (y empty)")  # fmt: skip
    sparse = tmp_path / "sparse.csv"  # a target only at the first step of the series
    sparse.write_text("x,y\n0,1\n" + "".join(f"{i},\n" for i in range(1, 20)))
    one_error_line(cli("train", sparse, "--window", "5", "--burn-in", "2", "--val", "0", "-o", tmp_path / "m.pt"),
                   "no window of 5 steps has a target after its first 2 steps (--burn-in)")  # fmt: skip
    assert not (tmp_path / "m.pt").exists()


def test_a_validation_split_without_targets_is_refused(tmp_path, cli):
    """One series: validation is its tail, which here has no target."""
    table = SeriesTable.from_arrays([np.arange(40.0)], y=[np.r_[np.sin(np.arange(36.0)), np.full(4, np.nan)]])
    write_table(table, tmp_path / "t.csv")
    one_error_line(cli("train", tmp_path / "t.csv", "--window", "10", "-o", tmp_path / "m.pt"),
                   "no step of the validation split has a target (its cells are empty", "--val 0")  # fmt: skip
    (tmp_path / "two.csv").write_text("x\n1\n2\n")
    one_error_line(cli("train", tmp_path / "two.csv", "-o", tmp_path / "m.pt"),
                   f"{tmp_path / 'two.csv'}: the series has 2 steps: too short to hold out --val 0.1")  # fmt: skip


# --- checkpoints edited by hand -----------------------------------------------------------


def _edit(ckpt: dict, path: str, value) -> dict:
    """A deep copy of `ckpt` with the field at 'a/b/c' set to `value` (or removed: ...)."""
    import copy

    edited = copy.deepcopy(ckpt)
    *parents, last = path.split("/")
    node = edited
    for key in parents:
        node = node[int(key) if key.isdigit() else key]  # the optimizer's state is keyed by number
    if value is ...:
        del node[last]
    else:
        node[last] = value
    return edited


EDITS = [
    ("norm/x_std", ..., "norm.x_std should be 1 numbers"),
    ("norm/x_mean", torch.zeros(3, dtype=torch.float64), "norm.x_mean should be 1 numbers"),
    ("norm/y_std", torch.tensor([0.0], dtype=torch.float64), "norm.y_std holds [0.0], not finite and positive"),
    ("norm", [1, 2], "no 'norm'"),
    ("model/hidden", 9, "weights.rnn.weight_ih_l0 is (32, 1), expected (36, 1)"),
    ("model/cell", "tcn", "model.cell is 'tcn'"),
    ("model/layers", -1, "model.layers is -1"),
    ("model/extra", 1, "model has fields"),
    ("data/task", "other", "data.task is 'other'"),
    ("data/x_names", ["x", "z"], "data.x_names are ['x', 'z']; model.n_in 1 is 0 inputs beside the series"),
    ("weights/head.bias", torch.tensor([float("nan")]), "weights.head.bias holds values that are not finite"),
    ("weights/head.bias", torch.zeros(2), "weights.head.bias is (2,), expected (1,)"),
]


@pytest.mark.parametrize("field, value, fragment", EDITS)
@pytest.mark.parametrize("command", ["predict", "rollout", "gradnorm"])
def test_a_checkpoint_edited_by_hand_is_refused_naming_the_field(work, tmp_path, cli, field, value, fragment, command):
    ckpt = torch.load(work / "m.pt", weights_only=True)
    torch.save(_edit(ckpt, field, value), tmp_path / "edited.pt")
    one_error_line(
        cli(command, tmp_path / "edited.pt", work / "sine.csv"), "edited.pt: damaged seqtool checkpoint", fragment
    )


RESUME_EDITS = [
    ("train/lr", -1.0, "train: --lr must be"),
    ("train/unknown", 1, "train (TrainConfig.__init__() got an unexpected keyword argument 'unknown')"),
    ("resume/optimizer", {"state": {}, "param_groups": []}, "resume.optimizer"),
    ("resume/optimizer", ..., "resume.optimizer is None"),
    ("resume/step", -4, "resume.step is -4"),
    ("resume/step", 10**6, "resume.step 1000000 is past the end of the run"),
    ("resume/torch_rng", torch.zeros(3, dtype=torch.uint8), "resume.torch_rng"),
    ("resume/weights/head.weight", torch.zeros(3, 3), "resume.weights.head.weight is (3, 3)"),
    ("resume/carry", torch.zeros(1), "resume.carry"),
    ("resume/carry", ..., "resume.carry is missing"),  # resumed without it, a run is not exact
    ("resume/best_weights", ..., "resume.best_weights is missing"),
    ("resume/torch_rng", ..., "resume.torch_rng is missing"),
    ("history", None, "history is not the list of log rows"),
    ("resume/acc", {}, "resume.acc.loss is None"),
    ("resume/best_val", "x", "resume.best_val is 'x'"),
    ("resume/threads", 2**40, "resume.threads is 1099511627776"),
    (
        "resume/optimizer/state/0/exp_avg",
        torch.zeros(7),
        "resume.optimizer (exp_avg is (7,) for a parameter of (32, 1))",
    ),
]


@pytest.mark.parametrize("field, value, fragment", RESUME_EDITS)
def test_a_resume_state_edited_by_hand_is_refused_naming_the_field(work, tmp_path, cli, field, value, fragment):
    ckpt = torch.load(work / "m.pt", weights_only=True)
    ckpt = _edit(ckpt, "train/steps", 60)  # so that there is something left to resume
    torch.save(_edit(ckpt, field, value), tmp_path / "edited.pt")
    before = (tmp_path / "edited.pt").read_bytes()
    one_error_line(
        cli("train", work / "sine.csv", "--resume", "-o", tmp_path / "edited.pt"),
        "damaged seqtool checkpoint",
        fragment,
    )
    assert (tmp_path / "edited.pt").read_bytes() == before


# --- numbers that cannot be represented, and predictions that are not numbers --------------


def _series(tmp_path, values: np.ndarray, name="s.csv"):
    path = tmp_path / name
    write_table(SeriesTable.from_arrays([values[i] for i in range(len(values))]), path)
    return path


def test_a_small_spread_around_a_large_value_is_learned_not_treated_as_constant(tmp_path):
    """The failing case: 1 + 1e-13 sin t was treated as constant. The constant test is
    relative to the values' magnitude."""
    t = np.random.default_rng(0).uniform(0, 6, (16, 1)) + np.linspace(0, 10, 40)
    values = 1 + 1e-13 * np.sin(t)
    norm = Scaling.fit([values.reshape(-1, 1)], [values.reshape(-1, 1)], next_step=True)
    assert norm.x_std[0] == pytest.approx(np.std(values), rel=1e-3)
    path = _series(tmp_path, values)
    train(path, tmp_path / "m.pt", TrainConfig(hidden=16, steps=300, window=20), quiet=True)
    table, scores = predict(tmp_path / "m.pt", path, warmup=5, quiet=True)
    assert scores["mse"] < 0.1 * np.var(values)  # far better than a constant forecast
    assert np.nanstd(table.columns["yhat"]) > 0.5e-13


def test_a_constant_column_is_scaled_by_its_magnitude():
    norm = Scaling.fit([np.full((10, 1), 5.0)], [np.full((10, 1), 5.0)], next_step=True)
    assert norm.x_mean[0] == 5.0 and norm.x_std[0] == 5.0
    zeros = Scaling.fit([np.zeros((10, 1))], [np.zeros((10, 1))], next_step=True)
    assert zeros.x_std[0] == 1.0


def test_values_whose_scale_cannot_be_represented_are_refused(tmp_path, cli):
    """The failing cases: values around 1e300 gave yhat = -inf, values around 1e-300 were
    predicted 300 orders of magnitude off; both with exit 0."""
    t = np.linspace(0, 10, 40)[None, :] + np.arange(4)[:, None]
    huge = _series(tmp_path, 1e300 * np.sin(t), "huge.csv")
    one_error_line(
        cli("train", huge, "--window", "10", "-o", tmp_path / "m.pt"), "column 'x' holds 1e+300", "rescale it"
    )
    tiny = _series(tmp_path, 1e-300 * np.sin(t), "tiny.csv")
    one_error_line(
        cli("train", tiny, "--window", "10", "-o", tmp_path / "m.pt"), "column 'x' varies by only", "rescale it"
    )
    assert not (tmp_path / "m.pt").exists()


def test_inputs_too_far_from_the_training_data_are_refused(work, tmp_path, cli):
    far = _series(tmp_path, np.full((1, 20), 1e60))
    for command in ("predict", "rollout"):
        one_error_line(
            cli(command, work / "m.pt", far), "column 'x': 1e+60 is", "standard deviations from the training data"
        )


def test_predictions_that_are_not_numbers_are_a_failed_run(work, tmp_path, cli):
    """The failing case: a model whose outputs are NaN said "no known targets to score", exit 0."""
    ckpt = torch.load(work / "m.pt", weights_only=True)
    weights = {**ckpt["weights"], "head.weight": torch.full_like(ckpt["weights"]["head.weight"], 3e38)}
    torch.save({**ckpt, "weights": weights}, tmp_path / "overflow.pt")  # finite weights, infinite outputs
    for command in ("predict", "rollout"):
        result = cli(command, tmp_path / "overflow.pt", work / "sine.csv")
        assert result.exit_code == 1, result.stderr
        assert result.stderr.splitlines() == [result.stderr.splitlines()[0]]
        assert "overflow.pt: the model's" in result.stderr and "are not finite" in result.stderr


def test_a_truth_too_large_to_square_is_refused_at_predict(tmp_path, cli):
    """The failing case of a review: a truth of 1e300 gave an MSE of inf and "Infinity" in
    the --metrics JSON. Training refuses such values; predict and rollout now too."""
    table = generators.sincos(n_series=4, length=40, seed=0)
    write_table(table, tmp_path / "sc.csv")
    train(tmp_path / "sc.csv", tmp_path / "sc.pt", TrainConfig(hidden=8, steps=10, window=10), quiet=True)
    table.columns["y"] = table.columns["y"] * 1e300
    write_table(table, tmp_path / "big.csv")
    one_error_line(cli("predict", tmp_path / "sc.pt", tmp_path / "big.csv", "--metrics", tmp_path / "m.json"),
                   "column 'y' holds 1e+300", "rescale it")  # fmt: skip
    assert not (tmp_path / "m.json").exists()


def test_options_of_fresh_models_are_refused_beside_a_model(work, cli):
    one_error_line(cli("gradnorm", work / "m.pt", "--cell", "rnn", "--hidden", "4"),
                   "--cell, --hidden: for fresh models only", "brings its own")  # fmt: skip


def test_an_empty_input_list_says_so(work, cli):
    one_error_line(cli("info", work / "sine.csv", "--x", ""), "--x names no column")


def test_library_calls_check_their_options_too(work):
    with pytest.raises(SeqtoolError, match="--hidden must be a whole number"):
        train(work / "sine.csv", work / "x.pt", TrainConfig(hidden=2.5), quiet=True)
    with pytest.raises(SeqtoolError, match="--warmup must be"):
        predict(work / "m.pt", work / "sine.csv", warmup=-1)
