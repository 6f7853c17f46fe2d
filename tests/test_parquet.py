"""Tables through pyarrow: large CSVs read by arrow's parser exactly as the csv module reads
them, Parquet read and written by every command, and converted to a folder in batches."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest
from conftest import one_error_line

import seqtool.data.tables as tables
from seqtool.data import columnar, folders
from seqtool.data.folders import Folder
from seqtool.data.reading import read_series
from seqtool.data.tables import SeriesTable, Table, read_table, write_table
from seqtool.errors import SeqtoolError

MIXED = "series,t,x,y,note\na,0.0,0.5,1.0,first\na,0.5,0.25,,\na,1.0,-1.5,2.0,last of a\nb,0.0,3.0,,only\n"


def doubles(n: int, seed: int = 0) -> list[str]:
    """Doubles as a CSV holds them: shortest repr, 17 significant digits, exponent form,
    more digits than a double has, subnormals."""
    rng = np.random.default_rng(seed)
    bits = rng.integers(0, 2**63, n, dtype=np.uint64) | (rng.integers(0, 2, n, dtype=np.uint64) << np.uint64(63))
    values = bits.view(np.float64)
    values = values[np.isfinite(values)]
    subnormal = rng.integers(1, 2**52, n // 4, dtype=np.uint64).view(np.float64)
    return (
        [repr(float(v)) for v in values]
        + [f"{v:.17g}" for v in values[: n // 4]]
        + [f"{v:.17e}" for v in subnormal]
        + [repr(float(v)) for v in subnormal]
        + [f"{v:.25g}" for v in values[: n // 8]]
        + [f"{v:.20f}" for v in rng.normal(size=n // 8)]
    )


def test_a_large_csv_reads_every_double_as_pythons_float_bit_for_bit(tmp_path):
    cells = doubles(40_000)
    text = "x\n" + "\n".join(cells) + "\n"
    assert len(text) > tables.FAST_CSV_BYTES  # arrow's path
    table = read_table(tmp_path.joinpath("d.csv").write_text(text) and tmp_path / "d.csv")
    assert isinstance(table.columns, columnar.ArrowColumns)
    got = read_series(table).x[:, 0]
    want = np.array([float(c) for c in cells])
    assert got.view(np.uint64).tolist() == want.view(np.uint64).tolist()


@pytest.mark.parametrize(
    "bad, fragments",
    [
        ("oops", ["row 30001, column 'x': 'oops' is not a number"]),
        ("", ["row 30001, column 'x': an empty cell is not a number"]),
        ("inf", ["row 30001, column 'x': inf is not a finite number"]),
        ("1_5", []),  # Python's float reads it; so does seqtool, as before
    ],
)
def test_a_large_csv_names_the_row_of_a_bad_value(tmp_path, bad, fragments):
    rows = [f"{i},{i * 0.5 + 1e-3}" for i in range(100_000)]
    rows[30_000] = f"30000,{bad}"
    path = tmp_path / "big.csv"
    path.write_text("t,x\n" + "\n".join(rows) + "\n")
    assert path.stat().st_size > tables.FAST_CSV_BYTES
    if not fragments:
        assert read_series(path).x[30_000, 0] == 15.0 and read_series(path).x[1, 0] == 0.501
        return
    with pytest.raises(SeqtoolError) as e:
        read_series(path)
    assert all(f in str(e.value) for f in fragments), str(e.value)


def test_every_kind_of_table_round_trips_through_parquet(tmp_path):
    source = read_series((tmp_path / "m.csv").write_text(MIXED) and tmp_path / "m.csv")
    write_table(source, tmp_path / "m.parquet")
    back = read_series(tmp_path / "m.parquet")
    assert back.ids == ["a", "b"] and back.lengths.tolist() == [3, 1]
    for name in source.columns:
        np.testing.assert_array_equal(back.columns[name], source.columns[name])
    write_table(back, tmp_path / "back.csv")
    assert (tmp_path / "back.csv").read_text() == MIXED
    # a plain table (a training log): integers stay integers, NaN stays empty
    log = Table({"step": np.array([1, 2]), "val_loss": np.array([0.5, np.nan]), "phase": np.array(["a", "b"])})
    write_table(log, tmp_path / "log.parquet")
    write_table(read_table(tmp_path / "log.parquet"), tmp_path / "log.csv")
    assert (tmp_path / "log.csv").read_text() == "step,val_loss,phase\n1,0.5,a\n2,,b\n"
    # dates as text, several inputs, from arrays
    dated = SeriesTable.from_arrays([np.arange(6.0).reshape(3, 2)], x_names=("a", "b"))
    dated.columns = {"date": np.array(["2024-01-31", "2024-02-29", "2024-03-31"], dtype=object), **dated.columns}
    write_table(dated, tmp_path / "d.parquet")
    again = read_series(tmp_path / "d.parquet", x="a,b")
    assert again.columns["date"].tolist() == ["2024-01-31", "2024-02-29", "2024-03-31"]
    np.testing.assert_array_equal(again.x, dated.x)


def test_parquet_from_pandas_reads_dates_categories_and_nulls(tmp_path):
    frame = pd.DataFrame(
        {
            "series": pd.Categorical(["s1"] * 4 + ["s2"] * 4),
            "t": pd.to_datetime(["2024-01-01", "2024-02-01", "2024-03-01", "2024-04-01"] * 2),
            "value": [1.0, None, 3.0, 4.0, 10.0, 20.0, 30.0, 40.0],
            "count": np.arange(8, dtype=np.int32),
        }
    )
    frame.to_parquet(tmp_path / "p.parquet")
    table = read_series(tmp_path / "p.parquet", x="value", missing_inputs=True)
    assert table.ids == ["s1", "s2"] and table.columns["t"][:2].tolist() == ["2024-01-01", "2024-02-01"]
    assert np.isnan(table.columns["value"][1]) and table.columns["count"].dtype == np.int64


def test_the_commands_read_and_write_parquet(cli, tmp_path):
    assert cli("gen", "sine", "--n-series", "3", "--length", "40", "-o", tmp_path / "s.parquet").exit_code == 0
    assert cli("gen", "sine", "--n-series", "3", "--length", "40", "-o", tmp_path / "s.csv").exit_code == 0
    model = tmp_path / "m.pt"
    result = cli("train", tmp_path / "s.parquet", "--hidden", "4", "--steps", "5", "--window", "8", "-q", "-o", model)
    assert result.exit_code == 0, result.stderr
    for ext in ("parquet", "csv"):
        result = cli("rollout", model, tmp_path / f"s.{ext}", "--horizon", "5", "-o", tmp_path / f"r{ext}.parquet")
        assert result.exit_code == 0, result.stderr
    a, b = read_table(tmp_path / "rparquet.parquet"), read_table(tmp_path / "rcsv.parquet")
    assert list(a.columns) == list(b.columns) and len(a) == 3 * 45
    np.testing.assert_allclose(a.numbers("yhat", missing_ok=True), b.numbers("yhat", missing_ok=True), equal_nan=True)
    result = cli("info", input=(tmp_path / "s.parquet").read_bytes())  # from a pipe
    assert result.exit_code == 0 and "series:         3" in result.stdout


def test_a_bad_parquet_file_is_one_line(cli, tmp_path):
    pd.DataFrame({"x": ["1.5", "2.5", "abc"]}).to_parquet(tmp_path / "text.parquet")
    one_error_line(cli("info", tmp_path / "text.parquet"), "row 3, column 'x': 'abc' is not a number")
    pd.DataFrame({"x": [1.0, float("inf")]}).to_parquet(tmp_path / "inf.parquet")
    one_error_line(cli("info", tmp_path / "inf.parquet"), "row 2, column 'x': inf is not a finite number")
    pd.DataFrame({"x": [[1.0, 2.0], [3.0]]}).to_parquet(tmp_path / "lists.parquet")
    one_error_line(cli("info", tmp_path / "lists.parquet"), "not a readable Parquet table", "column 'x'")
    data = (tmp_path / "inf.parquet").read_bytes()
    (tmp_path / "cut.parquet").write_bytes(data[: len(data) // 2])
    one_error_line(cli("info", tmp_path / "cut.parquet"), "cut.parquet: not a readable Parquet table")
    one_error_line(cli("convert", tmp_path / "cut.parquet", "-o", tmp_path / "f.seq"), "not a readable Parquet")
    assert not (tmp_path / "f.seq").exists()


def test_convert_streams_parquet_in_batches_as_it_reads_csv(cli, tmp_path, monkeypatch):
    monkeypatch.setattr(columnar, "BATCH_ROWS", 7)  # 3 series of 40 rows: batches cut series
    cli("gen", "sine", "--n-series", "3", "--length", "40", "-o", tmp_path / "s.parquet")
    cli("gen", "sine", "--n-series", "3", "--length", "40", "-o", tmp_path / "s.csv")
    folders.convert(tmp_path / "s.parquet", tmp_path / "p.seq")
    folders.convert(tmp_path / "s.csv", tmp_path / "c.seq")
    p, c = Folder(tmp_path / "p.seq").table(), Folder(tmp_path / "c.seq").table()
    assert p.ids == c.ids and p.lengths.tolist() == [40, 40, 40]
    np.testing.assert_array_equal(p.x, c.x)
    np.testing.assert_array_equal(p.columns["t"], c.columns["t"])
    frame = pd.read_parquet(tmp_path / "s.parquet")
    frame.loc[50, "x"] = float("inf")  # in the 8th batch
    frame.to_parquet(tmp_path / "bad.parquet")
    with pytest.raises(SeqtoolError, match="row 51, column 'x'"):
        folders.convert(tmp_path / "bad.parquet", tmp_path / "b.seq")


def test_parquet_values_keep_their_kind_and_precision(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    texts = ["2020-01-01 00:00:00.5", "2020-01-01 00:00:01.25", "2020-01-01 00:00:02.0"]
    stamps = pd.to_datetime(texts, format="ISO8601")
    pq.write_table(
        pa.table({
            "series": pa.array([7, None, None], pa.int64()),  # an id with a null: text, the null empty
            "t": pa.array(stamps),
            "zoned": pa.array(stamps.tz_localize("Europe/Paris")),
            "x": pa.array([2**63 + 1, 2**63 + 2, 1], pa.uint64()),  # beyond int64: as numbers, not wrapped
            "flag": pa.array([True, False, None]),
            "nothing": pa.nulls(3),
        }),
        tmp_path / "k.parquet",
    )  # fmt: skip
    table = read_series(tmp_path / "k.parquet")
    assert table.ids == ["7", ""] and table.lengths.tolist() == [1, 2]
    assert table.columns["t"].tolist() == ["2020-01-01T00:00:00.500000", "2020-01-01T00:00:01.250000",
                                           "2020-01-01T00:00:02.000000"]  # fmt: skip
    assert table.columns["zoned"][0] == "2020-01-01T00:00:00.500000+01:00"
    assert table.x[:, 0].tolist() == [float(2**63 + 1), float(2**63 + 2), 1.0]
    assert np.array_equal(read_table(tmp_path / "k.parquet").numbers("flag", missing_ok=True), [1, 0, np.nan],
                          equal_nan=True) and table.columns["nothing"].tolist() == ["", "", ""]  # fmt: skip


@pytest.mark.parametrize(
    "frame, fragments",
    [
        (pd.DataFrame({"series": pd.Series([], dtype=str), "x": pd.Series([], dtype=float)}),
         ["a header (series, x) but no rows"]),
        (pd.DataFrame({"": [1.0], "x": [2.0]}), ["column 1 of the header has no name"]),
        (pd.DataFrame({"x": [1.0], "x ": [2.0]}), ["column name 'x' appears twice"]),
        (pd.DataFrame({"x": [1.0], "d": pd.to_timedelta([1], unit="s")}), ["column 'd' holds duration"]),
    ],
    ids=["no-rows", "no-name", "twice", "duration"],
)  # fmt: skip
def test_a_parquet_file_is_checked_as_a_csv_is(cli, tmp_path, frame, fragments):
    frame.to_parquet(tmp_path / "p.parquet")
    one_error_line(cli("info", tmp_path / "p.parquet"), *fragments)


def test_a_csv_whose_first_name_starts_par1_is_a_csv(cli, tmp_path):
    (tmp_path / "p.csv").write_text("PAR1,x\n1,2\n3,4\n")
    result = cli("info", tmp_path / "p.csv", "--x", "x", "--json")
    assert result.exit_code == 0 and '"other_columns": ["PAR1"]' in result.stdout
    assert cli("convert", tmp_path / "p.csv", "--x", "x", "-o", tmp_path / "p.seq").exit_code == 0


def test_a_training_log_in_parquet_is_parquet(tmp_path):
    from seqtool.config import TrainConfig
    from seqtool.data import generators
    from seqtool.training.run import train

    write_table(generators.sine(n_series=2, length=60, seed=0), tmp_path / "s.csv")
    config = TrainConfig(hidden=4, steps=50, window=10)
    train(tmp_path / "s.csv", tmp_path / "m.pt", config, log=tmp_path / "log.parquet", quiet=True)
    log = pd.read_parquet(tmp_path / "log.parquet")
    assert log["step"].tolist() == [25.0, 50.0] and "val_loss" in log.columns


def test_the_arrow_path_takes_only_the_nans_python_takes(tmp_path):
    rows = [f"{i},{i * 0.5 + 1e-3}" for i in range(100_000)]
    for bad in ("nan(123)", "nan()"):
        rows[500] = f"500,{bad}"
        (tmp_path / "n.csv").write_text("t,x\n" + "\n".join(rows) + "\n")
        with pytest.raises(SeqtoolError, match=rf"row 501, column 'x': '{re.escape(bad)}' is not a number"):
            read_series(tmp_path / "n.csv")
    (tmp_path / "h.csv").write_bytes(b"t,y\xff\n" + "\n".join(rows[:50_000]).encode() + b"\n")
    with pytest.raises(SeqtoolError, match="is not UTF-8 text"):
        read_table(tmp_path / "h.csv")
