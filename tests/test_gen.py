"""`seqtool gen`: every kind's values, seeds, formats, defaults, start-up and pipes."""

from __future__ import annotations

import inspect
import io
from datetime import date
from pathlib import Path

import numpy as np
import pytest
from conftest import modules_loaded, one_error_line

from seqtool.data import generators
from seqtool.data.reading import read_series
from seqtool.data.tables import read_table, write_table

KINDS = list(generators.KINDS)


def gen(cli, *args: str):
    """Run `seqtool gen ARGS` and read its CSV output back as series."""
    result = cli("gen", *args)
    assert result.exit_code == 0, result.stderr
    assert result.stderr == ""
    return read_series(_table(result.stdout))


def _table(text: str):
    from seqtool.data.tables import from_csv

    return from_csv(text.encode(), "<stdout>")


def test_gen_help_lists_every_kind_with_a_line(cli):
    result = cli("gen", "--help")
    assert result.exit_code == 0
    for kind in KINDS:
        line = next(row for row in result.stdout.splitlines() if f" {kind} " in row)
        assert len(line.split(kind, 1)[1].strip(" │")) > 10, line


def test_cli_defaults_are_the_library_defaults():
    """`gen KIND` has an option for each parameter that generators.COMMANDS declares, in order,
    with the generator's default, the declared help line and flags; then --output."""
    from typer.main import get_command

    from seqtool.cli import app
    from seqtool.limits import interval

    group = get_command(app).commands["gen"]
    assert group.list_commands(None) == KINDS
    for kind, declared in generators.COMMANDS.items():
        library = {name: p.default for name, p in inspect.signature(declared.function).parameters.items()}
        params = {p.name: p for p in group.get_command(None, kind).params}
        assert list(params) == [o.name for o in declared.options] + ["output"], kind
        assert {"n_series", "length", "seed"} <= set(params), kind
        for option in declared.options:
            param, name = params[option.name], (kind, option.name)
            assert library[option.name] is not inspect.Parameter.empty, name
            assert param.default == library[option.name] and type(param.default) is type(library[option.name]), name
            assert param.opts == [f"--{option.name.replace('_', '-')}"] + ([option.short] if option.short else []), name
            assert param.help == option.help.replace("{span}", interval(option.key or option.name)), name


def test_same_seed_same_bytes_other_seed_differs(cli):
    first = cli("gen", "sine", "--n-series", "4", "--seed", "1").stdout
    again = cli("gen", "sine", "--n-series", "4", "--seed", "1").stdout
    other = cli("gen", "sine", "--n-series", "4", "--seed", "2").stdout
    assert first == again and first != other
    assert first.splitlines()[0] == "series,t,x" and len(first.splitlines()) == 1 + 4 * 50


def test_sine_is_sin_of_t_over_the_span_from_any_phase(cli):
    table = gen(cli, "sine", "-n", "200", "--length", "30", "--span", "6", "--seed", "3")
    t, x = table.columns["t"], table.x[:, 0]
    np.testing.assert_allclose(x, np.sin(t), atol=1e-12)
    assert table.lengths.tolist() == [30] * 200
    starts = np.array([s[0] for s in table.split(t)])
    np.testing.assert_allclose([s[-1] - s[0] for s in table.split(t)], 6.0)
    assert starts.min() >= 0 and starts.max() < 2 * np.pi
    assert np.histogram(starts, bins=4, range=(0, 2 * np.pi))[0].min() > 30  # spread, not 3 values


def test_sine_noise_has_the_asked_std(cli):
    table = gen(cli, "sine", "-n", "100", "--noise", "0.1", "--seed", "0")
    residual = table.x[:, 0] - np.sin(table.columns["t"])
    assert 0.09 < residual.std() < 0.11


def test_multisine_mixes_frequencies_and_noise():
    clean = generators.multisine(n_series=50, seed=4)
    noisy = generators.multisine(n_series=50, seed=4, noise=0.2)
    assert 0.18 < (noisy.x - clean.x).std() < 0.22  # same phases, plus the noise
    # the spectrum of a long clean series peaks at the three frequencies
    long = generators.multisine(n_series=1, length=4000, span=400, freqs="1,2.3,3.7", seed=0)
    power = np.abs(np.fft.rfft(long.x[:, 0]))
    omega = 2 * np.pi * np.fft.rfftfreq(4000, d=400 / 3999)
    local_max = (power[1:-1] > power[:-2]) & (power[1:-1] > power[2:])
    peaks = np.flatnonzero(local_max) + 1
    top = peaks[np.argsort(power[peaks])[-3:]]
    np.testing.assert_allclose(omega[top], [3.7, 2.3, 1.0], atol=0.02)  # weakest to strongest


def test_sincos_maps_sin_to_cos_at_30_points_per_pi(cli):
    table = gen(cli, "sincos", "-n", "2", "--length", "90", "--seed", "5")
    t = table.columns["t"]
    np.testing.assert_allclose(table.x[:, 0], np.sin(t), atol=1e-12)
    np.testing.assert_allclose(table.y[:, 0], np.cos(t), atol=1e-12)
    np.testing.assert_allclose(np.diff(table.split(t)[0]), np.pi / 30)


def test_integral_follows_its_recurrence_on_every_row(cli):
    table = gen(cli, "integral", "--length", "2000", "--seed", "0")
    assert len(table.lengths) == 32 and set(table.lengths.tolist()) == {2000}
    for u, y in zip(table.split(table.x[:, 0]), table.split(table.y[:, 0])):
        previous = np.concatenate([[0.0], y[:-1]])  # y[-1] = 0
        np.testing.assert_allclose(y, np.clip(previous + 0.1 * (u - 0.5), 0, 1), atol=1e-12)
        jumps = np.flatnonzero(np.diff(u) != 0)
        assert 140 < len(jumps) < 260  # about 0.1 per step
        assert u.min() >= 0 and u.max() < 1
        assert 0 < (y == 0).mean() < 0.6 and (y == 1).any()  # it saturates at both ends


def test_adding_has_two_markers_and_one_target(cli):
    table = gen(cli, "adding", "--length", "100", "-n", "300", "--seed", "7")
    assert table.x_names == ["x0", "x1"] and table.lengths.tolist() == [100] * 300
    for x, y in zip(table.split(table.x), table.split(table.y[:, 0])):
        marks = np.flatnonzero(x[:, 1])
        assert len(marks) == 2 and marks[0] < 50 <= marks[1]
        assert set(np.unique(x[:, 1])) == {0.0, 1.0}
        assert np.isnan(y[:-1]).all()
        assert y[-1] == pytest.approx(x[marks, 0].sum(), abs=1e-15)
    always_one = np.nanmean((table.y[:, 0] - 1.0) ** 2)
    assert 0.13 < always_one < 0.2  # always predicting 1: about 0.167


def test_lorenz_follows_the_lorenz_equations(cli):
    table = gen(cli, "lorenz", "--length", "2000", "--dt", "0.01", "--seed", "2")
    s = table.x
    assert table.x_names == ["x0", "x1", "x2"]
    derivative = (s[2:] - s[:-2]) / 0.02
    x, y, z = s[1:-1].T
    expected = np.stack([10 * (y - x), x * (28 - z) - y, x * y - 8 / 3 * z], axis=1)
    assert np.abs(derivative - expected).max() < 0.05 * np.abs(expected).max()
    assert s[:, 0].min() < -10 and s[:, 0].max() > 10 and s[:, 2].min() > 0  # both wings


def test_mackey_glass_is_bounded_and_not_periodic(cli):
    table = gen(cli, "mackey-glass", "--length", "1500", "--seed", "1")
    x = table.x[:, 0]
    assert x.min() > 0.2 and x.max() < 1.5 and x.std() > 0.15
    lag = 1 + np.argmax([np.corrcoef(x[:-k], x[k:])[0, 1] for k in range(1, 400)])
    assert np.corrcoef(x[:-lag], x[lag:])[0, 1] < 0.99  # chaotic: no lag repeats it


@pytest.mark.parametrize("seed", [0, 1, 7])
def test_trend_ends_above_all_of_its_first_half(seed):
    x = generators.trend(n_series=50, seed=seed).x[:, 0].reshape(50, 240)
    assert (x[:, -24:].min(axis=1) > x[:, :120].max(axis=1) + 1.0).all()  # a model must extrapolate


def test_trend_season_shows_at_its_period():
    for period in (12, 7):
        x = generators.trend(n_series=20, period=period, seed=3).x[:, 0].reshape(20, 240)
        t = np.arange(240)
        for series in x:
            detrended = series - np.polyval(np.polyfit(t, series, 1), t)
            assert np.corrcoef(detrended[:-period], detrended[period:])[0, 1] > 0.9
            assert np.corrcoef(detrended[:-3], detrended[3:])[0, 1] < 0.7
            assert (series[period:] - series[:-period]).std() < 0.5 * np.diff(series).std()
        naive = np.mean(np.diff(x, axis=1) ** 2)
        assert naive > 5 * 0.1**2  # repeating the last value is far worse than the noise floor


def test_trend_is_slope_plus_a_sine_plus_the_asked_noise(cli):
    table = gen(cli, "trend", "-n", "30", "--slope", "0.2", "--amplitude", "3", "--noise", "0", "--seed", "4")
    t, x = table.columns["t"], table.x[:, 0]
    assert table.x_names == ["x"] and table.y_names == [] and table.lengths.tolist() == [240] * 30
    angle = 2 * np.pi * np.arange(240) / 12
    basis = np.stack([np.sin(angle), np.cos(angle)], axis=1)
    phases = []
    for times, season in zip(table.split(t), table.split(x - 0.2 * t)):
        np.testing.assert_array_equal(times, np.arange(240))
        (a, b), *_ = np.linalg.lstsq(basis, season, rcond=None)
        np.testing.assert_allclose(basis @ [a, b], season, atol=1e-9)  # a sine of period 12
        assert np.hypot(a, b) == pytest.approx(3, abs=1e-9)
        phases.append(np.arctan2(b, a))
    assert np.ptp(np.mod(phases, 2 * np.pi)) > np.pi  # the phase differs between series
    noisy = generators.trend(n_series=30, slope=0.2, amplitude=3, noise=0.5, seed=4)
    assert 0.48 < (noisy.x[:, 0] - x).std() < 0.52  # same phases, plus the noise


def test_trend_same_seed_same_values_other_seed_differs():
    first, again, other = (generators.trend(n_series=3, seed=s).x for s in (5, 5, 6))
    np.testing.assert_array_equal(first, again)
    assert not np.allclose(first, other)


def test_airline_csv_is_the_box_jenkins_series_g():
    path = Path(__file__).resolve().parent.parent / "data" / "airline.csv"
    lines = path.read_text().splitlines()
    assert lines[0] == "date,value" and len(lines) == 1 + 144
    dates = [date.fromisoformat(line.split(",")[0]) for line in lines[1:]]
    months = [12 * (d.year - 1949) + d.month - 1 for d in dates]
    assert months == list(range(144)) and {d.day for d in dates} == {1}
    table = read_series(path, x="value")
    values = table.x[:, 0]
    assert table.lengths.tolist() == [144] and values.sum() == 40363
    assert values[:12].tolist() == [112, 118, 132, 129, 121, 135, 148, 148, 136, 119, 104, 118]
    assert values[-12:].tolist() == [417, 391, 419, 461, 472, 535, 622, 606, 508, 461, 390, 432]


@pytest.mark.parametrize("kind", KINDS)
def test_npz_equals_csv_for_every_kind(cli, tmp_path, kind):
    options = ["-n", "3", "--length", "60", "--seed", "9"]
    assert cli("gen", kind, *options, "-o", tmp_path / "a.npz").exit_code == 0
    assert cli("gen", kind, *options, "-o", tmp_path / "a.csv").exit_code == 0
    csv_text = (tmp_path / "a.csv").read_text()
    assert csv_text == cli("gen", kind, *options).stdout  # -o a.csv is what stdout gets
    from_npz, from_csv = read_table(tmp_path / "a.npz"), read_series(tmp_path / "a.csv")
    assert list(from_npz.columns) == list(from_csv.columns)
    for name, column in read_series(from_npz).columns.items():
        np.testing.assert_array_equal(column, from_csv.columns[name])
    write_table(read_series(from_npz), tmp_path / "back.csv")
    assert (tmp_path / "back.csv").read_text() == csv_text


@pytest.mark.parametrize(
    "args, fragments",
    [
        (["gen", "nosuch"], ["unknown kind 'nosuch'", "sine", "mackey-glass"]),
        (["gen", "sine", "--length", "-5"], ["--length must be a whole number in [1, 1000000000], got -5"]),
        (["gen", "sine", "--n-series", "0"], ["--n-series must be a whole number in [1, 10000000]"]),
        (["gen", "adding", "--length", "1"], ["--length must be a whole number in [2,"]),
        (["gen", "sine", "--noise", "-1"], ["--noise"]),
        (["gen", "integral", "--jump-prob", "2"], ["--jump-prob"]),
        (["gen", "multisine", "--freqs", "1,a"], ["--freqs"]),
        (["gen", "trend", "--period", "1"], ["--period must be a whole number in [2, 1000000], got 1"]),
        (["gen", "trend", "--amplitude", "-1"], ["--amplitude must be a number in [0, 1e+06], got -1.0"]),
        (["gen", "trend", "--slope", "inf"], ["--slope must be a number in [-1e+06, 1e+06], got inf"]),
        (["gen", "trend", "--period", "1.5"], ["'--period'", "integer"]),
        (["gen", "sine", "-o", "x.xlsx"], ["unknown table format '.xlsx'"]),
        (["gen", "sine", "--lenght", "5"], ["No such option", "--lenght", "seqtool gen sine --help"]),
        (["gen", "sine", "--length", "five"], ["'--length'", "integer"]),
    ],
)
def test_bad_gen_options(cli, tmp_path, monkeypatch, args, fragments):
    monkeypatch.chdir(tmp_path)
    result = cli(*args)
    one_error_line(result, *fragments)
    assert result.stdout == "" and list(tmp_path.iterdir()) == []


# --- real processes -------------------------------------------------------------------


def test_head_of_a_pipe(sh):
    result = sh("seqtool gen sine --n-series 4 --seed 1 | head -3; echo ${PIPESTATUS[@]} >&2")
    lines = result.stdout.decode().splitlines()
    assert lines[0] == "series,t,x" and len(lines) == 3 and lines[1].startswith("0,")
    assert result.stderr.decode() == "0 0\n"


def test_closed_pipe_ends_quietly_with_0(sh):
    result = sh("set -o pipefail; seqtool gen sine --n-series 20000 | head -1; echo $? ${PIPESTATUS[@]} >&2")
    assert result.stdout.decode() == "series,t,x\n"
    assert result.stderr.decode() == "0 0 0\n"  # quiet: no traceback, no message, success


def test_python_m_seqtool_and_the_script_agree(sh):
    result = sh("python -m seqtool gen adding -n 2 > a.csv && seqtool gen adding -n 2 | cmp - a.csv")
    assert result.returncode == 0, result.stderr


def test_gen_and_help_do_not_import_torch_matplotlib_or_pandas():
    argvs = (["--help"], ["gen", "--help"], ["gen", "sine", "-n", "1"])
    assert modules_loaded(*argvs, modules=("torch", "matplotlib", "pandas")) == []


def test_generate_is_the_command_as_a_function(cli):
    table = generators.generate("adding", n_series=2, length=10, seed=3)
    buffer = io.StringIO()
    from seqtool.data.tables import _write_csv

    _write_csv(table.columns, buffer)
    assert buffer.getvalue() == cli("gen", "adding", "-n", "2", "-l", "10", "--seed", "3").stdout
    with pytest.raises(Exception, match="unknown kind"):
        generators.generate("nope")


def test_panel_series_differ_in_scale_end_together_and_stay_positive():
    table = generators.panel(n_series=200, length=120, seed=3)
    x, t = table.x[:, 0], table.columns["t"]
    levels = np.array([np.median(part) for part in table.split(x)])
    assert (x > 0).all()
    assert levels.max() / levels.min() > 300  # tens to tens of thousands: one scale fits none
    ends = t[table.offsets[1:] - 1]
    assert (ends == 119).all()  # every series ends at the last step; the shorter ones began later
    short = table.lengths < 120
    assert 0.1 < short.mean() < 0.4 and table.lengths.min() >= 40
    again = generators.panel(n_series=200, length=120, seed=3)
    assert np.array_equal(again.x, table.x) and not np.array_equal(generators.panel(n_series=200, seed=4).x, table.x)


def test_panel_season_shows_at_its_period():
    table = generators.panel(n_series=100, length=240, period=7, short=0, noise=0.01, seed=1)
    logs = np.log(table.x[:, 0]).reshape(100, 240)
    detrended = logs - np.array([np.polyval(np.polyfit(np.arange(240), s, 1), np.arange(240)) for s in logs])
    lag = lambda k: np.mean([np.corrcoef(s[:-k], s[k:])[0, 1] for s in detrended])  # noqa: E731
    assert lag(7) > 0.5 and lag(7) > lag(3) + 0.5
