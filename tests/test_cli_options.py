"""`train`'s training options are TrainConfig's fields; gradnorm's model defaults are ModelConfig's."""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path

import pytest
from conftest import one_error_line

from seqtool.cli import app
from seqtool.config import ModelConfig, TrainConfig
from seqtool.limits import LIMITS

OPTIONS = TrainConfig.options()
OWN = [
    "out",
    "log",
    "resume",
    "device",
    "threads",
    "nproc",
    "quiet",
]  # train's options that are not settings of the run


def _flag(name: str) -> str:
    return f"--{name.replace('_', '-')}"


def _command(name: str):
    from typer.main import get_command

    from seqtool.cli import app

    return get_command(app).commands[name]


def test_train_has_an_option_per_field_in_order_then_its_own():
    params = _command("train").params
    assert [p.name for p in params] == ["data", *(f.name for f in OPTIONS), *OWN]
    assert {f.name for f in fields(TrainConfig)} - {f.name for f in OPTIONS} == {"save_every", "world_size"}
    by_name = {p.name: p for p in params}
    for f in OPTIONS:
        assert by_name[f.name].default == f.default, f.name
        assert _flag(f.name) in by_name[f.name].opts, f.name
    assert by_name["stateful"].secondary_opts == ["--no-stateful"]
    assert by_name["out"].opts == ["--out", "-o"] and by_name["quiet"].opts == ["--quiet", "-q"]


def test_every_training_option_is_in_help_with_its_line_and_default(cli, monkeypatch):
    monkeypatch.setenv("COLUMNS", "250")  # a line per option
    result = cli("train", "--help")
    assert result.exit_code == 0
    lines = result.stdout.splitlines()
    for f in OPTIONS:
        line = next(row for row in lines if row.startswith(f"│ {_flag(f.name)} "))
        text = f.metadata["help"].replace("\\[", "[")  # escaped for rich markup
        if "{span}" in text:
            text = text.replace("{span}", LIMITS[f.metadata["limit"] or f.name].interval())
        assert text in line, (f.name, line)
        if f.default is None:
            assert line.count("[default:") == text.count("[default:"), line  # none shown but the help's own
        else:
            shown = (
                ("" if f.default else "no-") + f.name.replace("_", "-") if isinstance(f.default, bool) else f.default
            )
            assert f"[default: {shown}]" in line, (f.name, line)


def test_train_help_shows_every_option_in_its_panel_in_panel_order(cli, monkeypatch):
    from seqtool.config import TRAIN_PANELS

    monkeypatch.setenv("COLUMNS", "250")
    lines = cli("train", "--help").stdout.splitlines()
    titles = [line.strip("╭─╮ ") for line in lines if line.startswith("╭─")]
    assert titles == ["Arguments", "Options", *TRAIN_PANELS]  # Options: --help alone
    named = [n for names in TRAIN_PANELS.values() for n in names]
    assert sorted(named) == sorted([f.name for f in OPTIONS] + OWN)  # each option in one panel
    for panel, names in TRAIN_PANELS.items():
        start = lines.index(next(line for line in lines if line.startswith(f"╭─ {panel} ")))
        rows = lines[start + 1 : lines.index(next(line for line in lines[start:] if line.startswith("╰")), start)]
        flags = [row.split()[1] for row in rows if row.startswith("│ --")]
        assert flags == [_flag(n) for n in names], panel


@pytest.mark.parametrize("command", [["train"], ["predict"], ["backtest"], ["info"], ["gen", "sine"], []])
def test_help_shows_no_bool_label_and_ranges_in_one_style(cli, monkeypatch, command):
    monkeypatch.setenv("COLUMNS", "250")
    text = cli(*command, "--help").stdout
    assert "--help" in text and "<bool>" not in text
    assert "x>=" not in text and "<=x" not in text and "range>" not in text  # bounds in the help, as [1, 4096]


@pytest.mark.parametrize("command", [["backtest"], ["ensemble"], ["plot"], ["gen", "sine"]])
def test_help_paragraphs_flow_as_one_line_each(cli, monkeypatch, command):
    monkeypatch.setenv("COLUMNS", "250")
    lines = [line.strip() for line in cli(*command, "--help").stdout.splitlines()]
    text = lines[: lines.index(next(line for line in lines if line.startswith("╭─")))]
    paragraphs = [p for p in "\n".join(text).split("\n\n")[1:] if p.strip()]  # after the usage line
    assert len(paragraphs) >= 2 and all("\n" not in p.strip() for p in paragraphs), paragraphs


def test_the_command_list_has_one_line_a_command(cli, monkeypatch):
    monkeypatch.setenv("COLUMNS", "100")
    lines = cli("--help").stdout.splitlines()
    start = lines.index(next(line for line in lines if line.startswith("╭─ Commands")))
    rows = lines[start + 1 : lines.index(next(line for line in lines[start:] if line.startswith("╰")), start)]
    commands = len(app.registered_commands) + len(app.registered_groups)
    assert len(rows) == commands and all(row.split()[1][0].isalpha() for row in rows), rows  # no row carried on


def test_nproc_out_of_range_is_one_line(cli):
    one_error_line(cli("train", "--nproc", "0"), "--nproc must be a whole number in [1, 1024], got 0")


# a value other than the default for every training option
GIVEN = {
    "cell": "gru", "loss": "gaussian", "hidden": 8, "layers": 2, "dropout": 0.25, "lr": 0.003, "optimizer": "sgd",
    "batch": 7, "window": 20, "stride": 3, "steps": 11, "epochs": 1.5, "clip": 0.5, "schedule": "plateau", "val": 0.2,
    "patience": 5, "stateful": True, "burn_in": 2, "seed": 9, "x": "a,b", "y": "c", "diff": "1,12", "log_values": True,
    "scale": "series", "horizon": 3, "ensemble": 2, "part": "2/2", "season": 12, "time_features": True,
    "period": "7,365.25", "known": "price,promo",
    "static": "region",
    "gaps": "refuse",
}  # fmt: skip


def _argv(values: dict) -> list[str]:
    argv: list[str] = []
    for name, value in values.items():
        argv += [_flag(name)] if value is True else [_flag(name), str(value)]
    return argv


@pytest.fixture
def captured(monkeypatch):
    """seqtool.training.run.train replaced by a recorder of what the command passes it."""
    import seqtool.training.run

    calls: list[tuple] = []

    class Result:
        path = Path("model.pt")

    def record(data, out, config, **kwargs):
        calls.append((data, out, config, kwargs))
        return Result()

    monkeypatch.setattr(seqtool.training.run, "train", record)
    return calls


def test_the_config_built_from_flags_is_the_one_asked_for(cli, captured):
    assert set(GIVEN) == {f.name for f in OPTIONS}
    assert all(GIVEN[f.name] != f.default for f in OPTIONS)  # so that each field is tested
    result = cli("train", "t.csv", *_argv(GIVEN), "-o", "m.pt", "--threads", "1", "-q")
    assert result.exit_code == 0, result.stderr
    [(data, out, config, kwargs)] = captured
    assert config == TrainConfig(**GIVEN)
    assert (data, out) == ("t.csv", Path("m.pt"))
    assert kwargs == {"resume": False, "log": None, "quiet": True, "device": "auto", "threads": 1}


def test_no_flags_is_the_default_config(cli, captured):
    assert cli("train").exit_code == 0
    [(data, out, config, kwargs)] = captured
    assert config == TrainConfig() and (data, out) == (None, Path("model.pt"))
    assert kwargs == {"resume": False, "log": None, "quiet": False, "device": "auto", "threads": None}


def test_resume_refuses_each_training_option_given(cli, captured, tmp_path):
    one_error_line(cli("train", "--resume", "-o", tmp_path / "m.pt", "--hidden", "8"), "--resume", "drop --hidden")
    result = cli("train", "--resume", "-o", tmp_path / "m.pt", *_argv(GIVEN))
    one_error_line(result, "--resume")
    assert len(result.stderr.split("; drop ")[1].split(", ")) == len(OPTIONS)
    for f in OPTIONS:  # the default, given explicitly, is refused too
        value = {
            "stateful": "--stateful",
            "steps": "10",
            "window": "50",
            "epochs": "1",
            "x": "x",
            "y": "y",
            "diff": "1",
            "horizon": "1",
            "ensemble": "1",
            "part": "1/1",
            "season": "12",
            "time_features": "--time-features",
            "period": "7",
            "known": "price",
        }.get(f.name, str(f.default))
        argv = [value] if value.startswith("--") else [_flag(f.name), value]
        one_error_line(cli("train", "--resume", "-o", tmp_path / "m.pt", *argv), "--resume", f"drop {_flag(f.name)}")
    result = cli("train", "--resume", "-o", tmp_path / "m.pt", "-q", "--device", "cpu", "--threads", "1")
    assert result.exit_code == 0 and captured[-1][3]["resume"] is True  # not training options


def test_gradnorm_model_defaults_are_the_model_config_defaults():
    params = {p.name: p for p in _command("gradnorm").params}
    assert params["hidden"].default == ModelConfig.hidden
    assert params["layers"].default == ModelConfig.layers
