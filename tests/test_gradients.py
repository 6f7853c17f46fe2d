"""`seqtool gradnorm`: the unrolled gradients against autograd, and the classic results."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import one_error_line

from seqtool.config import TrainConfig
from seqtool.data import generators
from seqtool.data.tables import read_table, write_table
from seqtool.gradients import gradnorm, unrolled
from seqtool.model.network import ModelConfig, SeqModel
from seqtool.training.run import train


def tiny(cell: str, layers: int = 1, seed: int = 0, learned_start: bool = False) -> SeqModel:
    torch.manual_seed(seed)
    net = SeqModel(ModelConfig(n_in=2, n_out=1, cell=cell, hidden=4, layers=layers, learned_start=learned_start))
    if learned_start:
        torch.nn.init.normal_(net.start)
    return net.double().eval()


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
@pytest.mark.parametrize("learned_start", [False, True])
def test_unrolled_network_computes_what_the_module_computes(cell, learned_start):
    net = tiny(cell, layers=2, learned_start=learned_start)
    x = torch.randn(3, 7, 2, dtype=torch.float64)
    out, hs, _ = unrolled(net, x)
    expected, _ = net(x)
    torch.testing.assert_close(out, expected, rtol=1e-12, atol=1e-12)
    assert len(hs) == 2 and len(hs[0]) == 7


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
@pytest.mark.parametrize("last_only", [True, False])
def test_unrolled_gradients_equal_autograd_through_the_module(cell, last_only):
    """dL/dh_t from the unrolled loop equals autograd of a zero probe added to h_t inside
    PyTorch's own recurrent module (every path: the output at t and all later steps)."""
    net = tiny(cell)
    x = torch.randn(3, 6, 2, dtype=torch.float64)
    y = torch.randn(3, 6, 1, dtype=torch.float64)

    def loss_of(out):
        return ((out[:, -1:] - y[:, -1:]) ** 2).mean() if last_only else ((out - y) ** 2).mean()

    out, hs, _ = unrolled(net, x)
    loss_of(out).backward()
    for t in range(6):
        first, state = net.rnn(x[:, : t + 1])
        probe = torch.zeros(3, 4, dtype=torch.float64, requires_grad=True)
        h_t = first[:, -1] + probe
        carried = (h_t[None], state[1]) if cell == "lstm" else h_t[None]
        rest, _ = net.rnn(x[:, t + 1 :], carried) if t < 5 else (first[:, :0], None)
        top = torch.cat([first[:, :-1], h_t[:, None], rest], dim=1)
        loss_of(net.head(top)).backward()
        torch.testing.assert_close(hs[0][t].grad, probe.grad, rtol=1e-6, atol=1e-12)


def test_parameter_gradients_are_the_training_gradients():
    """The global parameter-gradient norm is the `grad_norm` that train --log records."""
    net = tiny("lstm").float()
    x = torch.randn(4, 9, 2)
    y = torch.randn(4, 9, 1)
    out, _, params = unrolled(net, x.double())
    ((out - y.double()) ** 2).mean().backward()
    ours = torch.sqrt(sum(p.grad.norm() ** 2 for p in params.values()))
    net.zero_grad()
    ((net(x)[0] - y) ** 2).mean().backward()
    theirs = torch.nn.utils.clip_grad_norm_(net.parameters(), float("inf"))
    assert float(ours) == pytest.approx(float(theirs), rel=1e-5)
    assert set(params) == {n for n, _ in net.named_parameters()}


def test_the_classic_result_tanh_rnn_vanishes_lstm_keeps_its_memory():
    _, reports = gradnorm(cells=("rnn", "lstm", "gru"), length=100, seed=0, quiet=True)
    ratio = {r.cell: r.ratio for r in reports}
    assert ratio["rnn"] < 1e-15 and ratio["gru"] < 1e-15
    assert ratio["lstm"] / ratio["rnn"] > 1e6  # orders of magnitude
    _, (bias0,) = gradnorm(cells=("lstm",), length=100, seed=0, forget_bias=0.0, quiet=True)
    assert bias0.ratio < ratio["lstm"] * 1e-6  # PyTorch's forget bias 0 forgets like a tanh RNN


def test_large_recurrent_weights_explode_backwards(cli, tmp_path):
    result = cli("gradnorm", "--cell", "rnn", "--init-scale", "3", "--summary", tmp_path / "s.json",
                 "-o", tmp_path / "g.csv")  # fmt: skip
    assert result.exit_code == 0, result.stderr
    assert "exploding" in result.stderr
    summary = json.loads((tmp_path / "s.json").read_text())["rnn"]
    assert summary["ratio_first_to_last"] > 1 and summary["verdict"] == "exploding"
    assert summary["largest_singular_value"]["weight_hh_l0"] > 1
    table = read_table(tmp_path / "g.csv")
    g = table.numbers("grad_norm")
    assert g[0] > g[-1]  # larger at t=1 than at t=T: it grows backwards in time


def test_float64_keeps_gradients_below_float32_range():
    table, (rnn,) = gradnorm(cells=("rnn",), length=400, seed=0, quiet=True)
    first = float(table.numbers("grad_norm")[0])
    assert 0 < first < 1e-38  # float32 would report 0 here


def test_table_columns_and_spread():
    table, _ = gradnorm(cells=("lstm",), layers=2, length=20, batch=8, quiet=True)
    assert list(table.columns) == ["cell", "layer", "t", "grad_norm", "grad_norm_lo", "grad_norm_hi"]
    assert len(table) == 2 * 20
    assert table.columns["layer"].tolist()[:20] == ["0"] * 20
    g, lo, hi = (table.numbers(n) for n in ("grad_norm", "grad_norm_lo", "grad_norm_hi"))
    assert (lo <= hi).all() and (lo > 0).all()


def test_pipe_into_plot_as_written(sh):
    result = sh("seqtool gradnorm --cell rnn,lstm,gru --length 100 | seqtool plot -o g.png")
    assert result.returncode == 0, result.stderr.decode()
    lines = result.stderr.decode().splitlines()
    assert [line.split(":")[1].strip().split()[1] for line in lines] == ["rnn", "lstm", "gru"]
    assert all("vanishing" in line for line in lines)


def test_a_trained_checkpoint_on_its_data(tmp_path, cli):
    data = tmp_path / "sine.csv"
    write_table(generators.sine(n_series=16, length=30, seed=0), data)
    train(data, tmp_path / "m.pt", TrainConfig(hidden=8, steps=30, window=20, cell="gru"), quiet=True)
    both = cli("gradnorm", tmp_path / "m.pt", data, "-q")
    only_model = cli("gradnorm", tmp_path / "m.pt", "--task", "sine", "--length", "30", "-q")
    for result in (both, only_model):
        assert result.exit_code == 0, result.stderr
        rows = result.stdout.splitlines()
        assert rows[0] == "cell,layer,t,grad_norm,grad_norm_lo,grad_norm_hi"
        assert {r.split(",")[0] for r in rows[1:]} == {"gru"}
    assert len(both.stdout.splitlines()) == 1 + 30


def test_a_next_step_model_is_judged_at_its_last_step_with_a_target(tmp_path, cli):
    """The last step of a next-step table predicts nothing: its gradient is 0, and the
    verdict compares t=1 with the step before (it said "inf: exploding")."""
    data = tmp_path / "sine.csv"
    write_table(generators.sine(n_series=16, length=30, seed=0), data)
    train(data, tmp_path / "m.pt", TrainConfig(hidden=8, steps=30, window=20), quiet=True)
    result = cli("gradnorm", tmp_path / "m.pt", data, "--summary", tmp_path / "s.json")
    assert result.exit_code == 0, result.stderr
    assert float(result.stdout.splitlines()[-1].split(",")[3]) == 0.0  # t=30: no target
    summary = json.loads((tmp_path / "s.json").read_text())["lstm"]
    assert 0 < summary["ratio_first_to_last"] < float("inf") and summary["grad_norm_last"] > 0
    assert "of that at t=29:" in result.stderr


@pytest.mark.parametrize(
    "args, fragments",
    [
        (["--cell", "rnn,tcn"], ["--cell takes rnn, lstm, gru"]),
        (["--loss", "mean"], ["'mean' is not one of 'last', 'all'"]),
        (["--init-scale", "-1"], ["--init-scale must be a number in (0, 1000], got -1.0"]),
        (["--task", "lorenz"], ["'lorenz' is not one of 'adding', 'sine', 'sincos', 'multisine'"]),
        (["a.csv", "b.csv", "c.csv"], ["at most a MODEL and a DATA"]),
    ],
)
def test_bad_gradnorm_options(cli, args, fragments):
    one_error_line(cli("gradnorm", *args), *fragments)
