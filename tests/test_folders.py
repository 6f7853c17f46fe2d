"""Tables bigger than memory: `seqtool convert` streams a CSV into a table folder;
`train` reads a next-step folder in place and trains as it would from the CSV; the shuffle
and the windows need no array as long as the table."""

from __future__ import annotations

import json
import os
import subprocess
import time

import numpy as np
import pytest
import torch
from conftest import BIN, one_error_line

from seqtool.config import TrainConfig
from seqtool.data import folders, generators
from seqtool.data.examples import Rows, inputs_and_targets, split
from seqtool.data.reading import read_series
from seqtool.data.scaling import Scaling
from seqtool.data.tables import write_table
from seqtool.training.batches import Windows, _Shuffle
from seqtool.training.inplace import FolderRows
from seqtool.training.run import train


@pytest.fixture
def small_chunks(monkeypatch):
    """Chunks of 300 bytes and blocks of 16 rows, so that series cross both."""
    monkeypatch.setattr(folders, "CHUNK", 300)
    monkeypatch.setattr(folders, "BLOCK", 16)


def _ragged(tmp_path, name="r.csv"):
    """Series of 1, 5, 40 and 97 steps with t and a text column."""
    rng = np.random.default_rng(0)
    lines = ["series,t,x0,x1,note"]
    for sid, n in (("a", 40), ("b", 1), ("c", 97), ("d", 5)):
        for k in range(n):
            lines.append(f"{sid},{0.5 * k},{rng.normal():.6f},{100 + rng.normal():.4f},n{k}")
    path = tmp_path / name
    path.write_text("\n".join(lines) + "\n")
    return path


def test_convert_reads_what_the_csv_reader_reads_across_chunks(tmp_path, cli, small_chunks):
    csv = _ragged(tmp_path)
    result = cli("convert", csv, "-o", tmp_path / "r.seq")
    assert result.exit_code == 0, result.stderr
    assert result.stdout == f"{tmp_path / 'r.seq'}\n" and "143 rows of 4 series" in result.stderr
    want, got = read_series(csv), read_series(tmp_path / "r.seq")
    assert got.ids == want.ids and got.lengths.tolist() == [40, 1, 97, 5]
    assert got.x_names == ["x0", "x1"] and got.y_names == []
    np.testing.assert_array_equal(got.x, want.x)
    np.testing.assert_array_equal(got.columns["t"], want.columns["t"])
    assert np.load(tmp_path / "r.seq" / "x.npy", mmap_mode="r").shape == (143, 2)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.csv", "r.seq"]  # no temporary folder left


@pytest.mark.parametrize("end", ["\r", "\r\n"])
def test_convert_reads_the_line_ends_the_csv_reader_reads(tmp_path, cli, small_chunks, end):
    text = _ragged(tmp_path).read_text().replace("\n", end)
    (tmp_path / "ends.csv").write_bytes(text.encode())
    assert cli("convert", tmp_path / "ends.csv", "-o", tmp_path / "e.seq").exit_code == 0
    want, got = read_series(tmp_path / "ends.csv"), read_series(tmp_path / "e.seq")
    assert got.ids == want.ids and got.lengths.tolist() == [40, 1, 97, 5]
    np.testing.assert_array_equal(got.x, want.x)


def test_convert_keeps_every_column_and_rollouts_from_the_folder_write_them(tmp_path, cli, small_chunks):
    csv = _ragged(tmp_path)
    lines = csv.read_text().splitlines()
    csv.write_text("\n".join([lines[0] + ",count"] + [line + ",0005" for line in lines[1:]]) + "\n")
    assert cli("convert", csv, "-o", tmp_path / "r.seq").exit_code == 0
    want, got = read_series(csv), read_series(tmp_path / "r.seq")
    assert list(got.columns) == list(want.columns) == ["series", "t", "x0", "x1", "note", "count"]
    assert got.columns["note"].tolist() == want.columns["note"].tolist() and set(got.columns["count"]) == {"0005"}
    temperature = tmp_path / "temp.seq"
    assert cli("convert", "data/daily_temperature.csv", "--x", "value", "-o", temperature).exit_code == 0
    table = read_series(temperature)
    assert list(table.columns) == ["date", "value"]  # no series column the CSV never had
    assert table.columns["date"][[0, -1]].tolist() == ["2022-01-01", "2023-12-31"]
    meta = json.loads((temperature / "meta.json").read_text())
    meta = {k: v for k, v in meta.items() if k not in ("columns", "others")} | {"version": 1}
    (temperature / "meta.json").write_text(json.dumps(meta))  # a folder of version 1 still reads
    assert list(read_series(temperature).columns) == ["series", "value"]


def test_convert_keeps_targets_dates_and_reads_standard_input(tmp_path, sh):
    text = "series,t,x,y\n" + "".join(
        f"s{k // 7},2024-01-{k % 7 + 1:02d},{k},{'' if k % 3 else k / 2}\n" for k in range(21)
    )
    (tmp_path / "m.csv").write_text(text)
    done = sh("seqtool convert - -o m.seq < m.csv")
    assert done.returncode == 0, done.stderr
    want, got = read_series(tmp_path / "m.csv"), read_series(tmp_path / "m.seq")
    assert got.y_names == ["y"] and got.ids == ["s0", "s1", "s2"]
    np.testing.assert_array_equal(got.y, want.y)  # empty targets stay NaN
    np.testing.assert_array_equal(got.columns["t"], want.columns["t"])  # dates stay dates


@pytest.mark.parametrize(
    "text, fragments",
    [
        (
            "series,x\n" + "a,1\n" * 40 + "b,2\n" * 40 + "a,3\n",
            ["row 81: series 'a' continues after other series", "started at row 1"],
        ),
        ("series,x\n" + "a,1\n" * 60 + "a,oops\n", ["row 61, column 'x'", "not a number"]),
        ("series,t,x\n" + "".join(f"a,{k},1\n" for k in range(50)) + "a,3,1\n", ["column 't'", "does not increase"]),
        ("series,x\n", ["no rows"]),
    ],
)
def test_convert_names_the_row_of_the_whole_file(tmp_path, cli, small_chunks, text, fragments):
    (tmp_path / "bad.csv").write_text(text)
    one_error_line(cli("convert", tmp_path / "bad.csv", "-o", tmp_path / "bad.seq"), *fragments)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.csv"]  # nothing written


def test_convert_refuses_an_existing_folder_and_train_a_folder_of_something_else(tmp_path, cli):
    write_table(generators.sine(n_series=2, length=30, seed=0), tmp_path / "s.csv")
    (tmp_path / "s.seq").mkdir()
    one_error_line(cli("convert", tmp_path / "s.csv", "-o", tmp_path / "s.seq"), "exists")
    for name, to in (("dangling.seq", "missing.seq"), ("deep.seq", "nowhere/x.seq"), ("linked.seq", "s.seq")):
        (tmp_path / name).symlink_to(to)
        one_error_line(cli("convert", tmp_path / "s.csv", "-o", tmp_path / name), f"{name}: is a link; convert writes")
    one_error_line(
        cli("train", tmp_path / "s.seq", "-o", tmp_path / "m.pt"), "not a seqtool table folder", "seqtool convert"
    )
    assert cli("convert", tmp_path / "s.csv", "-o", tmp_path / "t.seq").exit_code == 0
    one_error_line(
        cli("train", tmp_path / "t.seq", "--x", "value", "-o", tmp_path / "m.pt"), "holds x columns x", "--x value"
    )


def test_a_killed_convert_leaves_a_folder_that_the_next_convert_removes(tmp_path, cli):
    """SIGKILL gives no time to clean: the next convert to the same name removes the
    temporary folder once its process is gone."""
    proc = subprocess.Popen([BIN / "seqtool", "convert", "-", "-o", "t.seq"], cwd=tmp_path, stdin=subprocess.PIPE)
    proc.stdin.write(b"x\n" + b"1.0\n" * 1000)
    proc.stdin.flush()
    deadline = time.monotonic() + 60
    while not list(tmp_path.iterdir()):
        assert proc.poll() is None and time.monotonic() < deadline
        time.sleep(0.01)
    proc.kill()
    proc.wait()
    assert [p.name.split(".")[1:3] for p in tmp_path.iterdir()] == [["t", "seq"]]
    write_table(generators.sine(n_series=2, length=30, seed=0), tmp_path / "s.csv")
    assert cli("convert", tmp_path / "s.csv", "-o", tmp_path / "t.seq").exit_code == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.csv", "t.seq"]


def test_the_blocks_moments_standardise_as_the_training_rows_would(tmp_path, small_chunks):
    """Scaling from the folder's block moments equals Scaling.fit on the same training part:
    whole series held out, and one series' head (a block cut by the tail)."""
    folders.convert(_ragged(tmp_path), tmp_path / "r.seq")
    folder, table = folders.Folder(tmp_path / "r.seq"), read_series(tmp_path / "r.csv")
    xs, ys = inputs_and_targets(table, "next-step")
    (train_x, train_y), _ = split(xs, ys, 0.25, 3)
    starts, lengths, _, _ = folder.split(TrainConfig(val=0.25, seed=3))
    got, want = folder.scaling(starts, lengths), Scaling.fit(train_x, train_y, True)
    np.testing.assert_allclose(got.x_mean, want.x_mean, rtol=1e-12)
    np.testing.assert_allclose(got.x_std, want.x_std, rtol=1e-12)
    write_table(generators.sine(n_series=1, length=203, seed=1), tmp_path / "one.csv")
    folders.convert(tmp_path / "one.csv", tmp_path / "one.seq")
    one = folders.Folder(tmp_path / "one.seq")
    starts, lengths, val, lead = one.split(TrainConfig(val=0.1, window=10))
    assert lengths.tolist() == [183] and lead == 183 and len(val.x) == 203  # the lead-in: all 100 windows there are
    xs, ys = inputs_and_targets(read_series(tmp_path / "one.csv"), "next-step")
    want = Scaling.fit([xs[0][:183]], [ys[0][:183]], True)
    np.testing.assert_allclose(one.scaling(starts, lengths).x_std, want.x_std, rtol=1e-12)


def test_folder_rows_give_the_rows_and_next_step_targets_of_the_table_in_memory(tmp_path):
    folders.convert(_ragged(tmp_path), tmp_path / "r.seq")
    folder, table = folders.Folder(tmp_path / "r.seq"), read_series(tmp_path / "r.csv")
    xs, ys = inputs_and_targets(table, "next-step")
    scaling = Scaling.fit(xs, ys, True)
    memory = Rows.of(xs, ys, scaling)
    rows = FolderRows(folder, folder.offsets[:-1], folder.lengths, scaling, "cpu")
    index = torch.arange(143).reshape(11, 13)
    for got, want in zip(rows.take(index), memory.take(index)):
        torch.testing.assert_close(got, want, equal_nan=True, rtol=0, atol=0)
    first, stop = np.array([0, 0, 35, 40, 41, 130]), np.array([40, 39, 45, 41, 143, 143])
    assert rows.targets_in(first, stop).tolist() == memory.targets_in(first, stop).tolist() == [39, 39, 8, 0, 100, 11]
    assert rows.target_count() == memory.target_count() == 139


@pytest.mark.parametrize("options", ["--window 20", "--stateful --window 10", "--val 0 --window 30 --stride 7"])
def test_training_from_a_folder_is_training_from_the_csv(tmp_path, sh, options):
    """The same batches and the same standardisation: the same weights, through real pipes."""
    done = sh(
        "seqtool gen sine -n 12 --length 150 --seed 4 | tee s.csv | seqtool convert - -o s.seq 2>/dev/null"
        f" && seqtool train s.csv {options} --steps 60 --hidden 8 --threads 1 -o csv.pt -q"
        f" && seqtool train s.seq {options} --steps 60 --hidden 8 --threads 1 -o seq.pt -q",
        timeout=180,
    )
    assert done.returncode == 0, done.stderr
    a, b = (torch.load(tmp_path / f"{n}.pt", weights_only=True) for n in ("csv", "seq"))
    for k in a["weights"]:
        torch.testing.assert_close(a["weights"][k], b["weights"][k], rtol=0, atol=1e-6)
    assert a["history"][-1]["train_loss"] == pytest.approx(b["history"][-1]["train_loss"], rel=1e-4)


def test_one_long_series_trains_in_place_with_a_bounded_validation(tmp_path, monkeypatch):
    monkeypatch.setattr(folders, "VAL_ROWS", 300)
    write_table(generators.sine(n_series=1, length=20_000, seed=2), tmp_path / "long.csv")
    folders.convert(tmp_path / "long.csv", tmp_path / "long.seq")
    result = train(tmp_path / "long.seq", tmp_path / "m.pt", TrainConfig(hidden=16, steps=300, window=20), quiet=True)
    assert result.val_loss < 0.01  # a sine is learned; validation read 2000 + 300 rows, not the series
    ckpt = torch.load(tmp_path / "m.pt", weights_only=True)
    assert ckpt["data"]["source"] == str(tmp_path / "long.seq") and ckpt["model"]["n_in"] == 1


def test_a_folder_with_targets_or_differencing_is_read_into_memory_and_trains(tmp_path):
    write_table(generators.sincos(n_series=6, length=80, seed=0), tmp_path / "sc.csv")
    folders.convert(tmp_path / "sc.csv", tmp_path / "sc.seq")
    config = TrainConfig(hidden=8, steps=40, window=20, stateful=True)
    a = train(tmp_path / "sc.csv", tmp_path / "a.pt", config, quiet=True)
    b = train(tmp_path / "sc.seq", tmp_path / "b.pt", config, quiet=True)
    assert a.train_loss == b.train_loss and a.val_loss == b.val_loss


@pytest.mark.parametrize("n", [1, 2, 3, 7, 64, 65, 1000, 4099])
def test_the_shuffle_is_a_permutation_that_changes_each_epoch(n, monkeypatch):
    whole = _Shuffle(5, n)(0, np.arange(n))
    assert sorted(whole.tolist()) == list(range(n))
    if n > 7:
        assert not np.array_equal(whole, _Shuffle(5, n)(1, np.arange(n)))
        assert not np.array_equal(whole, _Shuffle(6, n)(0, np.arange(n)))
    monkeypatch.setattr(_Shuffle, "CACHED", 0)  # uncached: computed at the positions asked
    at = np.array([n - 1, 0, n // 2])
    np.testing.assert_array_equal(_Shuffle(5, n)(0, at), whole[at])


def test_windows_are_found_by_arithmetic_as_listed_one_by_one():
    lengths = np.array([3, 50, 7, 23, 10])
    x = [np.zeros((n, 1)) for n in lengths]
    rows = Rows.of(x, x, Scaling.fit(x, x, True))
    w = Windows(rows, window=10, stride=4, batch=4, seed=0)
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    listed = []
    for i, n in enumerate(lengths.tolist()):
        if n >= 10:
            s = list(range(0, n - 10 + 1, 4))
            s += [n - 10] if s[-1] != n - 10 else []
            listed += [offsets[i] + k for k in s]
    assert w.count == len(listed) and w.first(np.arange(w.count)).tolist() == listed


# --- found by review -------------------------------------------------------------------------


def test_a_short_header_quotes_dates_of_any_century_and_blank_chunks_survive_the_chunks(tmp_path, cli, small_chunks):
    """A header of 2 bytes, a quoted cell with a line break, blank lines where a chunk
    ends, dates before 1678: as the whole-file reader reads them."""
    (tmp_path / "x.csv").write_text("x\n" + "".join(f"{k}\n" for k in range(200)))
    (tmp_path / "q.csv").write_text(
        "series,x,note\n" + "".join(f'a,{k},"two\nlines"\n' for k in range(60)) + "\n" * 400
    )
    (tmp_path / "d.csv").write_text("t,x\n" + "".join(f"{1659 + k}-01-01,{k}\n" for k in range(120)))
    for name in ("x", "q", "d"):
        assert cli("convert", tmp_path / f"{name}.csv", "-o", tmp_path / f"{name}.seq").exit_code == 0, name
        want, got = read_series(tmp_path / f"{name}.csv"), read_series(tmp_path / f"{name}.seq")
        np.testing.assert_array_equal(got.x, want.x)
        assert got.lengths.tolist() == want.lengths.tolist()
    assert read_series(tmp_path / "d.seq").columns["t"][:2].tolist() == ["1659-01-01", "1660-01-01"]


def test_every_command_reads_a_folder(tmp_path, cli, small_model):
    assert cli("convert", small_model / "sine.csv", "-o", tmp_path / "s.seq").exit_code == 0
    for command in (
        ["predict", small_model / "m.pt"],
        ["rollout", small_model / "m.pt"],
        ["backtest", small_model / "m.pt", "--horizon", "3"],
    ):
        via_csv = cli(*command, small_model / "sine.csv", "-q")
        via_folder = cli(*command, tmp_path / "s.seq", "-q")
        assert via_folder.exit_code == 0 and via_folder.stdout == via_csv.stdout, command[0]
    assert cli("info", tmp_path / "s.seq", "--y", "").exit_code == 0  # --y "": no targets, as a CSV
    from_folder, from_csv = tmp_path / "f.png", tmp_path / "c.png"
    assert cli("plot", tmp_path / "s.seq", "-o", from_folder).exit_code == 0
    assert cli("plot", small_model / "sine.csv", "-o", from_csv).exit_code == 0
    assert from_folder.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and from_folder.stat().st_size > 10_000
    one_error_line(cli("convert", small_model / "sine.csv", "-o", "-"), "convert writes a table folder, not a stream")
    assert not os.path.exists("-")  # (in the working folder, where a folder named - would go)


@pytest.mark.parametrize(
    "damage, fragment",
    [
        (lambda d: (d / "series.npy").unlink(), "series.npy"),
        (lambda d: np.save(d / "series.npy", np.array(["a"])), "series.npy"),
        (lambda d: np.save(d / "moments.npy", np.zeros(3)), "moments.npy"),
        (lambda d: np.save(d / "offsets.npy", np.array([0, 50, 20, 120])), "offsets.npy"),
        (lambda d: np.save(d / "x.npy", np.zeros((120, 1), np.int32)), "x.npy"),
        (lambda d: (d / "meta.json").write_text('{"format": "seqtool-table", "version": 1}'), "meta.json"),
        (lambda d: os.truncate(d / "other0.txt", 50), "other0.ends.npy does not fit"),
        (lambda d: (d / "other0.txt").write_bytes(b"\xff" * (d / "other0.txt").stat().st_size), "not UTF-8"),
    ],
)
def test_a_damaged_folder_is_refused_in_one_line(tmp_path, cli, damage, fragment):
    write_table(generators.sine(n_series=3, length=40, seed=0), tmp_path / "s.csv")
    lines = (tmp_path / "s.csv").read_text().splitlines()
    (tmp_path / "s.csv").write_text("\n".join([lines[0] + ",note", *(f"{li},n{k}" for k, li in enumerate(lines[1:]))]))
    folders.convert(tmp_path / "s.csv", tmp_path / "s.seq")
    damage(tmp_path / "s.seq")
    for command in (["info"], ["train", "-o", tmp_path / "m.pt"]):
        one_error_line(cli(*command[:1], tmp_path / "s.seq", *command[1:]), "a damaged table folder", fragment)


def test_inputs_changed_by_hand_are_refused_before_training_and_resuming(tmp_path, cli):
    """A NaN written into x.npy (where the moments count no gap) is refused before a run
    starts, fresh or resumed (it would end as "diverged"); other numbers written over an
    interrupted run's data are refused by --resume, which recomputes the sha256."""
    write_table(generators.sine(n_series=8, length=40, seed=0), tmp_path / "s.csv")
    folders.convert(tmp_path / "s.csv", tmp_path / "s.seq")
    train = lambda *flags: cli("train", tmp_path / "s.seq", *flags, "-o", tmp_path / "m.pt")  # noqa: E731
    assert train("--steps", "4", "--hidden", "4").exit_code == 0
    x = np.load(tmp_path / "s.seq" / "x.npy", mmap_mode="r+")
    x[100, 0] = np.nan
    x.flush()
    for flags in (["--steps", "4"], ["--resume"]):
        one_error_line(
            train(*flags), "s.seq: x.npy row 101 holds NaN, which convert did not write", "convert the table"
        )
    x[100, 0] = np.inf
    x.flush()
    one_error_line(train("--steps", "4"), "s.seq: x.npy row 101 holds inf, which convert did not write")
    x[100, 0] = 0.25
    x.flush()
    one_error_line(train("--resume"), "s.seq: x.npy is not what convert wrote (its sha256 is not meta.json's)")
    assert train("--steps", "4", "--hidden", "4").exit_code == 0  # a fresh run on the edited data is the user's to ask
    folders.convert(tmp_path / "s.csv", tmp_path / "t.seq")
    assert cli("train", tmp_path / "t.seq", "--steps", "4", "--hidden", "4", "-o", tmp_path / "t.pt").exit_code == 0
    moments = np.load(tmp_path / "t.seq" / "moments.npy", mmap_mode="r+")
    moments[:, 0, 1] += 5
    moments.flush()
    one_error_line(
        cli("train", tmp_path / "t.seq", "--resume", "-o", tmp_path / "t.pt"), "moments.npy is not the moments of x.npy"
    )
    one_error_line(
        cli("train", tmp_path / "t.seq", "-o", tmp_path / "t.seq" / "m.pt"), "t.seq/m.pt is inside", "an input"
    )
    (tmp_path / "big.csv").write_text("t,x\n" + "".join(f"{10**17 + k},{k}\n" for k in range(20)))
    one_error_line(cli("convert", tmp_path / "big.csv", "-o", tmp_path / "big.seq"), "whole numbers beyond 2**53")


def test_gaps_go_through_convert_and_a_folder_with_gaps_trains_as_its_csv(tmp_path, cli):
    """Empty input cells are kept as NaN (the moments do not count them); such a folder is
    read into memory, where gaps are filled and marked as the CSV's are: the same weights."""
    write_table(generators.sine(n_series=6, length=40, seed=0), tmp_path / "g.csv")
    lines = [line.split(",") for line in (tmp_path / "g.csv").read_text().splitlines()]
    for row in (5, 47, 48, 200):
        lines[row][-1] = ""
    (tmp_path / "g.csv").write_text("\n".join(",".join(line) for line in lines) + "\n")
    assert cli("convert", tmp_path / "g.csv", "-o", tmp_path / "g.seq").exit_code == 0
    flags = ["--steps", "20", "--hidden", "4", "--window", "10", "--threads", "1", "-q"]
    for name in ("g.csv", "g.seq"):
        assert cli("train", tmp_path / name, *flags, "-o", tmp_path / f"{name}.pt").exit_code == 0
    a, b = (torch.load(tmp_path / f"g.{n}.pt", weights_only=True) for n in ("csv", "seq"))
    assert a["data"]["gaps"] is True and b["data"]["gaps"] is True
    for k in a["weights"]:
        torch.testing.assert_close(a["weights"][k], b["weights"][k], rtol=0, atol=1e-6)
    refused = cli("train", tmp_path / "g.seq", "--gaps", "refuse", "-o", tmp_path / "c.pt")
    one_error_line(refused, "g.seq: row 5, column 'x': an empty cell is not a number")


def test_errors_name_rows_of_the_whole_file_and_a_csv_may_begin_with_pk(tmp_path, cli, monkeypatch):
    monkeypatch.setattr(folders, "CHUNK", 40)
    (tmp_path / "b.csv").write_text("series,x\n" + "c,1\n" * 30 + "a,1\n" * 5 + "b,1\n" * 5 + "a,1\n" * 3)
    one_error_line(cli("convert", tmp_path / "b.csv", "-o", tmp_path / "b.seq"), "series 'a'", "started at row 31")
    (tmp_path / "pk.csv").write_text("PKxx,x\n1,2\n")
    assert cli("convert", tmp_path / "pk.csv", "-o", tmp_path / "pk.seq").exit_code == 0


def test_plot_of_a_folder_named_dot_draws_beside_it_and_of_another_folder_says_so(
    tmp_path, cli, small_model, monkeypatch
):
    assert cli("convert", small_model / "sine.csv", "-o", tmp_path / "s.seq").exit_code == 0
    monkeypatch.chdir(tmp_path / "s.seq")
    assert cli("plot", ".").exit_code == 0 and (tmp_path / "s.png").stat().st_size > 10_000
    monkeypatch.chdir(tmp_path)
    one_error_line(cli("plot", "."), "a folder, but not a seqtool table folder")
