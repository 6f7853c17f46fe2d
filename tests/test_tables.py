"""The series-table layer: reading CSV and npz, columns and roles, exact round trips, bad input; Parquet."""

from __future__ import annotations

import io
import os
import pty
import subprocess
import sys

import numpy as np
import pytest
from conftest import BIN, one_error_line

from seqtool.data.reading import read_series
from seqtool.data.tables import SeriesTable, Table, read_table, write_table
from seqtool.errors import SeqtoolError

MIXED = "series,t,x,y,note\na,0.0,0.5,1.0,first\na,0.5,0.25,,\na,1.0,-1.5,2.0,last of a\nb,0.0,3.0,,only\n"


def write(tmp_path, name: str, text: str | bytes):
    path = tmp_path / name
    path.write_bytes(text.encode() if isinstance(text, str) else text)
    return path


def test_series_of_different_lengths_with_missing_targets(tmp_path):
    table = read_series(write(tmp_path, "m.csv", MIXED))
    assert table.ids == ["a", "b"]
    assert table.lengths.tolist() == [3, 1]
    assert table.x_names == ["x"] and table.y_names == ["y"]
    np.testing.assert_array_equal(table.x[:, 0], [0.5, 0.25, -1.5, 3.0])
    y = table.y[:, 0]
    assert np.isnan(y[[1, 3]]).all() and y[[0, 2]].tolist() == [1.0, 2.0]
    assert [s.tolist() for s in table.split(table.x[:, 0])] == [[0.5, 0.25, -1.5], [3.0]]
    padded = table.padded(table.y, np.nan)
    assert padded.shape == (2, 3, 1) and np.isnan(padded[1, 1:]).all()
    # columns seqtool does not interpret come back as they were read
    assert table.columns["note"].tolist() == ["first", "", "last of a", "only"]


def test_numbered_columns_sort_by_number_and_names_can_be_chosen(tmp_path):
    path = write(tmp_path, "n.csv", "x10,x2,x0,y1,y0,other\n1,2,3,4,5,6\n")
    table = read_series(path)
    assert table.x_names == ["x0", "x2", "x10"] and table.y_names == ["y0", "y1"]
    chosen = read_series(path, x="other,x0", y=["y1"])
    assert chosen.x_names == ["other", "x0"] and chosen.x[0].tolist() == [6.0, 3.0]
    assert chosen.y_names == ["y1"]


def test_date_value_csv_trains_with_x(tmp_path):
    table = read_series(write(tmp_path, "d.csv", "date,value\n2024-01-01,3.5\n2024-01-02,4\n"), x="value")
    assert table.x[:, 0].tolist() == [3.5, 4.0] and table.y is None
    assert table.ids == ["0"] and table.lengths.tolist() == [2]


def test_what_users_send_crlf_bom_quotes_spaces_tabs(tmp_path):
    crlf = write(tmp_path, "c.csv", b'\xef\xbb\xbfseries,x\r\n"s1","1.5"\r\ns1, 2\r\n\r\n')
    table = read_series(crlf)
    assert table.ids == ["s1"] and table.x[:, 0].tolist() == [1.5, 2.0]
    tabs = read_series(write(tmp_path, "t.tsv", "x\ty\n1\t2\n3\t\n"))
    assert tabs.x[:, 0].tolist() == [1.0, 3.0] and np.isnan(tabs.y[1, 0])


@pytest.mark.parametrize(
    "text, fragments",
    [
        ("x\n1\nabc\n", ["row 2", "column 'x'", "'abc' is not a number"]),
        ("x,y\n1,\n,2\n", ["row 2", "column 'x'", "empty cell"]),
        ("x\n1\nnan\n", ["row 2", "column 'x'", "not a finite number"]),
        ("x,y\n1,2\n-inf,3\n", ["row 2", "column 'x'", "not a finite number"]),
        ("x,y\n1,inf\n", ["row 1", "column 'y'", "not a finite number"]),
        ("a,b\n1,2\n", ["no input column", "--x", "columns: a, b"]),
        ("x,x\n1,2\n", ["'x' appears twice"]),
        ("x,\n1,2\n", ["column 2", "no name"]),
        ("x,y\n1\n", ["row 1 has 1 fields", "header has 2"]),
        ("x\n", ["no rows"]),
        ("series,x\n0,1\n1,2\n0,3\n", ["row 3", "series '0'", "contiguous"]),
        ("t,x\n0,1\n0,2\n", ["row 2", "column 't'", "does not increase"]),
        (
            "t,x\n2024-01-01T02:00Z,1\n2024-01-01T03:00+05,2\n",
            ["row 2", "2024-01-01T03:00+05 does not increase on 2024-01-01T02:00Z (as instants: 2023-12-31T22:00 and"],
        ),
    ],
)
def test_bad_tables_are_refused_with_row_and_column(tmp_path, text, fragments):
    with pytest.raises(SeqtoolError) as err:
        read_series(write(tmp_path, "bad.csv", text))
    message = str(err.value)
    assert message.startswith(str(tmp_path / "bad.csv"))
    for fragment in fragments:
        assert fragment in message


def test_unknown_column_for_x_or_y(tmp_path):
    path = write(tmp_path, "u.csv", "x,y\n1,2\n")
    with pytest.raises(SeqtoolError, match=r"no column 'z' for --y \(columns: x, y\)"):
        read_series(path, y="z")
    with pytest.raises(SeqtoolError, match="both an input and a target"):
        read_series(path, x="x,y")


def test_not_a_table(tmp_path):
    with pytest.raises(SeqtoolError, match="not UTF-8"):
        read_table(write(tmp_path, "r.bin", bytes(range(128, 256)) * 10))
    with pytest.raises(SeqtoolError, match="no such file"):
        read_table(tmp_path / "missing.csv")
    with pytest.raises(SeqtoolError, match="is a folder"):
        read_table(tmp_path)
    with pytest.raises(SeqtoolError, match="empty input"):
        read_table(write(tmp_path, "e.csv", "\n\n"))


def test_npz_with_pickled_objects_is_refused_without_unpickling(tmp_path):
    path = tmp_path / "evil.npz"
    np.savez(path, columns=np.array(["x"]), col_x=np.array([object()], dtype=object))
    with pytest.raises(SeqtoolError, match="not a seqtool npz table"):
        read_table(path)


@pytest.mark.parametrize("command", [["info"], ["train", "--steps", "1"], ["predict", "{model}"]])
def test_a_checkpoint_given_as_the_table_is_named_one(cli, small_model, command):
    model = small_model / "m.pt"
    argv = [a.format(model=model) for a in command]
    one_error_line(cli(*argv, model), f"{model}: a checkpoint (a trained model), not a table")


def test_csv_npz_csv_round_trip_is_byte_exact(tmp_path):
    text = MIXED.replace("0.25", "0.1").replace("-1.5", "1e-300")
    source = read_series(write(tmp_path, "m.csv", text))
    write_table(source, tmp_path / "m.npz")
    write_table(read_series(tmp_path / "m.npz"), tmp_path / "back.csv")
    assert (tmp_path / "back.csv").read_text() == text
    # the npz holds the [series, step, feature] arrays of the contract
    npz = np.load(tmp_path / "m.npz", allow_pickle=False)
    assert npz["x"].shape == (2, 3, 1) and npz["lengths"].tolist() == [3, 1]
    assert npz["series"].tolist() == ["a", "b"] and npz["x_names"].tolist() == ["x"]


def test_plain_tables_round_trip_through_npz(tmp_path):
    table = Table({"epoch": np.array([1.0, 2.0]), "val_loss": np.array([0.5, np.nan])})
    write_table(table, tmp_path / "log.npz")
    write_table(read_table(tmp_path / "log.npz"), tmp_path / "log.csv")
    assert (tmp_path / "log.csv").read_text() == "epoch,val_loss\n1.0,0.5\n2.0,\n"


def test_npz_remembers_chosen_columns(tmp_path):
    table = read_series(write(tmp_path, "d.csv", "date,value\n2024-01-01,3.5\n"), x="value")
    write_table(table, tmp_path / "d.npz")
    again = read_series(tmp_path / "d.npz")
    assert again.x_names == ["value"] and again.columns["date"].tolist() == ["2024-01-01"]


def test_from_arrays_builds_series_and_t():
    table = SeriesTable.from_arrays([np.zeros(3), np.ones(2)], t=[np.arange(3.0), np.arange(2.0)])
    assert list(table.columns) == ["series", "t", "x"]
    assert table.columns["series"].tolist() == ["0", "0", "0", "1", "1"]


def test_write_refuses_unknown_extension_and_keeps_old_file(tmp_path):
    table = Table({"x": np.array([1.0])})
    with pytest.raises(SeqtoolError, match="unknown table format '.xlsx'"):
        write_table(table, tmp_path / "a.xlsx")
    target = tmp_path / "keep.csv"
    target.write_text("old\n")
    with pytest.raises(SeqtoolError, match="folder"):
        write_table(table, tmp_path / "nope" / "a.csv")
    assert target.read_text() == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["keep.csv"]  # no temporary file left


def test_read_from_stdin_csv_and_npz_bytes(tmp_path, monkeypatch):
    write_table(read_series(write(tmp_path, "m.csv", MIXED)), tmp_path / "m.npz")
    for payload in [MIXED.encode(), (tmp_path / "m.npz").read_bytes()]:
        monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(payload)))
        table = read_series("-")
        assert table.ids == ["a", "b"] and table.source == "<stdin>"


# --- through the command line --------------------------------------------------------


def test_info_shows_what_seqtool_sees(cli, tmp_path):
    result = cli("info", write(tmp_path, "m.csv", MIXED))
    assert result.exit_code == 0, result.stderr
    lines = dict(line.split(":", 1) for line in result.stdout.splitlines())
    assert lines["series"].strip() == "2" and lines["inputs"].strip() == "x"
    assert "targets at 2 of 4 steps" in lines["task"]
    assert lines["other columns"].strip() == "note"


def test_info_json_is_one_object_of_typed_values(cli, tmp_path):
    import json

    result = cli("info", write(tmp_path, "m.csv", MIXED.replace("a,0.5,0.25,,", "a,0.5,,,")), "--json")
    assert result.exit_code == 0, result.stderr
    seen = json.loads(result.stdout)
    assert seen == {
        "source": str(tmp_path / "m.csv"), "rows": 4, "series": 2, "length": {"min": 1, "median": 2, "max": 3},
        "inputs": ["x"], "targets": ["y"], "time": "t", "other_columns": ["note"],
        "task": "sequence mapping x -> y, targets at 2 of 4 steps (empty cells are left out)",
        "gaps": {"cells": 1, "series": 1},
    }  # fmt: skip


def test_info_reads_piped_npz(sh):
    result = sh("seqtool gen adding -n 3 -o a.npz && cat a.npz | seqtool info")
    assert result.returncode == 0, result.stderr
    assert "series:         3" in result.stdout.decode()


@pytest.mark.parametrize(
    "args, stdin, fragments",
    [
        (["info", "missing.csv"], None, ["missing.csv: no such file"]),
        (["info"], "", ["<stdin>: empty input"]),
        (["info", "-"], "x\n1\noops\n", ["row 2", "column 'x'", "'oops'"]),
        (["info"], "x,y\n1,2\nnan,3\nnan,4\n", ["a gap of 2 steps (rows 2 to 3) in a series of 3"]),
        (["info"], "x,y\ninf,2\n", ["row 1", "column 'x'", "not a finite number"]),
        (["info"], "date,value\n2024-01-01,1\n", ["no input column", "--x"]),
        (["info", "--x", "value"], "date,value\n2024-01-01,1\n2024-01-02,?\n", ["row 2", "'value'"]),
    ],
)
def test_bad_input_is_one_line_and_exit_2(cli, tmp_path, monkeypatch, args, stdin, fragments):
    monkeypatch.chdir(tmp_path)
    one_error_line(cli(*args, input=stdin), *fragments)


def test_debug_shows_the_traceback(cli, tmp_path):
    result = cli("--debug", "info", tmp_path / "missing.csv")
    assert result.exit_code == 2
    assert "Traceback" in result.stderr and result.stderr.rstrip().endswith("no such file")


def test_stdin_on_a_terminal_is_an_error_not_a_hang(tmp_path):
    parent, child = pty.openpty()
    try:
        result = subprocess.run([BIN / "seqtool", "info"], stdin=child, capture_output=True, timeout=30, cwd=tmp_path)
    finally:
        os.close(parent)
        os.close(child)
    one_error_line(result, "stdin is a terminal")
