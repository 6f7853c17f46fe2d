"""Calendars that continue right: the dates a rollout writes past a table's end, in the
table's own format, and dates with a UTC offset read by their written clock."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from conftest import one_error_line

from seqtool.data.dates import clock_of, continued, dates_of
from seqtool.data.timefeatures import TimeFeatures

BERLIN_SPRING = [  # the clocks go forward from 02:00 to 03:00 on 2024-03-31
    "2024-03-30T18:00+01:00", "2024-03-30T19:00+01:00", "2024-03-30T20:00+01:00", "2024-03-30T21:00+01:00",
    "2024-03-30T22:00+01:00", "2024-03-30T23:00+01:00", "2024-03-31T00:00+01:00", "2024-03-31T01:00+01:00",
    "2024-03-31T03:00+02:00", "2024-03-31T04:00+02:00", "2024-03-31T05:00+02:00", "2024-03-31T06:00+02:00",
]  # fmt: skip
TABLES = {  # the table's t column, and the dates after its end, written by hand
    "month-end": (
        pd.date_range("2013-09-30", periods=16, freq=pd.offsets.MonthEnd()).strftime("%Y-%m-%d"),
        ["2015-01-31", "2015-02-28", "2015-03-31", "2015-04-30"],
    ),
    "month-start": (
        pd.date_range("2013-09-01", periods=16, freq=pd.offsets.MonthBegin()).strftime("%Y-%m-%d"),
        ["2015-01-01", "2015-02-01", "2015-03-01", "2015-04-01"],
    ),
    "quarterly": (
        pd.date_range("2011-03-31", periods=16, freq=pd.offsets.QuarterEnd(startingMonth=12)).strftime("%Y-%m-%d"),
        ["2015-03-31", "2015-06-30", "2015-09-30", "2015-12-31"],
    ),
    "business days": (  # ends on Thursday 2024-03-14
        pd.bdate_range("2024-02-22", periods=16).strftime("%Y-%m-%d"),
        ["2024-03-15", "2024-03-18", "2024-03-19", "2024-03-20"],
    ),
    "hourly with an offset, across a clock change": (
        BERLIN_SPRING,
        ["2024-03-31T07:00+02:00", "2024-03-31T08:00+02:00", "2024-03-31T09:00+02:00", "2024-03-31T10:00+02:00"],
    ),
    "hourly, a space and seconds": (
        pd.date_range("2024-12-31 12:00", periods=12, freq=pd.offsets.Hour()).strftime("%Y-%m-%d %H:%M:%S"),
        ["2025-01-01 00:00:00", "2025-01-01 01:00:00", "2025-01-01 02:00:00", "2025-01-01 03:00:00"],
    ),
    "year-month": (
        pd.date_range("2023-01-01", periods=12, freq=pd.offsets.MonthBegin()).strftime("%Y-%m"),
        ["2024-01", "2024-02", "2024-03", "2024-04"],
    ),
    "irregular: the last spacing": (
        [
            "2024-01-01",
            "2024-01-02",
            "2024-01-04",
            "2024-01-07",
            "2024-01-11",
            "2024-01-16",
            "2024-01-22",
            "2024-01-29",
            "2024-02-06",
            "2024-02-15",
            "2024-02-25",
            "2024-02-27",
        ],  # fmt: skip
        ["2024-02-29", "2024-03-02", "2024-03-04", "2024-03-06"],
    ),
    "integers": ([str(i) for i in range(3, 15)], ["15", "16", "17", "18"]),
    "month-end, a month missing": (
        [
            d
            for d in pd.date_range("2023-01-31", periods=13, freq=pd.offsets.MonthEnd()).strftime("%Y-%m-%d")
            if d != "2023-06-30"
        ],
        ["2024-02-29", "2024-03-31", "2024-04-30", "2024-05-31"],
    ),
    "business days, a holiday": (
        [d for d in pd.bdate_range("2024-02-21", periods=17).strftime("%Y-%m-%d") if d != "2024-03-01"],
        ["2024-03-15", "2024-03-18", "2024-03-19", "2024-03-20"],
    ),
    "the 30th, through February": (
        pd.date_range("2023-05-01", periods=12, freq=pd.offsets.MonthBegin())
        .strftime("%Y-%m-30")
        .str.replace("2024-02-30", "2024-02-29"),
        ["2024-05-30", "2024-06-30", "2024-07-30", "2024-08-30"],
    ),
    "seconds with an offset": (
        pd.date_range("2024-01-01", periods=12, freq=pd.offsets.Second(15)).strftime("%Y-%m-%dT%H:%M:%S+02:00"),
        [
            "2024-01-01T00:03:00+02:00",
            "2024-01-01T00:03:15+02:00",
            "2024-01-01T00:03:30+02:00",
            "2024-01-01T00:03:45+02:00",
        ],
    ),  # fmt: skip
    "month-ends, the last one on the 15th": (
        [*pd.date_range("2023-01-31", periods=12, freq=pd.offsets.MonthEnd()).strftime("%Y-%m-%d"), "2024-01-15"],
        ["2024-01-31", "2024-02-29", "2024-03-31", "2024-04-30"],
    ),
    "business days, the last one a Saturday": (
        [*pd.bdate_range("2024-02-26", periods=11).strftime("%Y-%m-%d"), "2024-03-16"],
        ["2024-03-18", "2024-03-19", "2024-03-20", "2024-03-21"],
    ),
    "an offset in hours": (
        pd.date_range("2024-01-01", periods=12, freq=pd.offsets.Hour()).strftime("%Y-%m-%dT%H:%M+05"),
        ["2024-01-01T12:00+05", "2024-01-01T13:00+05", "2024-01-01T14:00+05", "2024-01-01T15:00+05"],
    ),
}


def _write(path, times) -> None:
    x = np.sin(np.arange(len(times)) / 3.0)
    path.write_text("t,x\n" + "".join(f"{t},{v}\n" for t, v in zip(times, x)))


@pytest.mark.parametrize("kind", list(TABLES))
def test_a_rollout_continues_the_tables_own_calendar_in_its_own_format(sh, cli, small_model, tmp_path, kind):
    """From the CSV, and from its table folder (which keeps the dates as written)."""
    times, after = TABLES[kind]
    _write(tmp_path / "t.csv", times)
    result = sh(f"seqtool rollout {small_model / 'm.pt'} t.csv --horizon 4 -q")
    assert result.returncode == 0, result.stderr
    written = [line.split(",")[0] for line in result.stdout.decode().splitlines()[1:]]
    assert written == [*map(str, times), *after]
    assert cli("convert", tmp_path / "t.csv", "-o", tmp_path / "t.seq").exit_code == 0
    folder = cli("rollout", small_model / "m.pt", tmp_path / "t.seq", "--horizon", "4", "-q")
    assert [line.split(",")[0] for line in folder.stdout.splitlines()[1:]] == written


def test_two_dates_go_on_by_whole_months_or_by_their_spacing():
    """Too few dates for a frequency: a month apart on the same day, whole months (the 30th
    is the last day of February); else the spacing."""
    months = np.array(["2023-11-30T06:00", "2023-12-30T06:00"], dtype=object)
    assert continued(months, 3).tolist() == ["2024-01-30T06:00", "2024-02-29T06:00", "2024-03-30T06:00"]
    assert continued(np.array(["2023-11-01", "2023-12-01"], dtype=object), 3).tolist() == [
        "2024-01-01", "2024-02-01", "2024-03-01",
    ]  # fmt: skip
    assert continued(np.array(["2024-02-27", "2024-02-28"], dtype=object), 2).tolist() == ["2024-02-29", "2024-03-01"]


def test_dates_with_an_offset_keep_their_written_clock_for_calendar_features():
    column = np.array(BERLIN_SPRING[7:10], dtype=object)  # 01:00+01:00, 03:00+02:00, 04:00+02:00
    assert clock_of(column).astype("datetime64[m]").astype(str).tolist() == [
        "2024-03-31T01:00", "2024-03-31T03:00", "2024-03-31T04:00",
    ]  # fmt: skip
    assert dates_of(column).astype(str).tolist() == ["2024-03-31T00:00", "2024-03-31T01:00", "2024-03-31T02:00"]
    hours = TimeFeatures("t", (("days", 1.0),))
    at_three = hours.of(np.array(["2024-01-01T03:00"], dtype="datetime64[m]"))
    assert np.allclose(hours.of(hours.times(column))[1], at_three[0])  # 03:00 local, not 01:00 UTC


def test_a_column_mixing_dates_with_and_without_an_offset_is_refused(sh, small_model, tmp_path):
    _write(tmp_path / "t.csv", [*BERLIN_SPRING[:6], "2024-03-31T00:00", *BERLIN_SPRING[7:]])
    one_error_line(
        sh(f"seqtool rollout {small_model / 'm.pt'} t.csv --horizon 2"),
        "t.csv: column 't': dates with and without a UTC offset",
        "row 7: '2024-03-31T00:00'",
    )


def test_an_integer_t_stays_an_integer_through_a_table_folder_and_every_command(sh, small_model, tmp_path):
    _write(tmp_path / "t.csv", [str(i) for i in range(3, 15)])
    model = small_model / "m.pt"
    assert sh("seqtool convert t.csv -o folder").returncode == 0
    assert '"t": "integer"' in (tmp_path / "folder" / "meta.json").read_text()
    for command, last in [
        (f"seqtool rollout {model} folder --horizon 2 -q", "16"),
        (f"seqtool predict {model} t.csv -q", "14"),
        (f"seqtool backtest {model} t.csv --horizon 2 --start 10 -q", "14"),
    ]:
        result = sh(command)
        assert result.returncode == 0, result.stderr
        lines = result.stdout.decode().splitlines()
        t = lines[0].split(",").index("t")
        assert [line.split(",")[t] for line in lines[1:]][-1] == last, command
        assert all("." not in line.split(",")[t] for line in lines[1:]), command


def test_only_text_that_starts_as_an_iso_date_is_a_date(sh, small_model, tmp_path):
    """Ids and years (`0005`, `2020`) are not dates: such a column is empty past the end, and
    --time-features without a time column says so in one line; year-months are dates."""
    for text in ["0005", "2020", "12", "2020/01/31"]:
        assert dates_of(np.array([text, text], dtype=object)) is None, text
    assert dates_of(np.array(["2020-01", "2020-02"], dtype=object)).astype(str).tolist() == ["2020-01-01", "2020-02-01"]
    rows = "".join(f"0005,{np.sin(i / 3)}\n" for i in range(12))
    (tmp_path / "station.csv").write_text("station,x\n" + rows)
    result = sh(f"seqtool rollout {small_model / 'm.pt'} station.csv --horizon 2 -q")
    assert result.returncode == 0, result.stderr
    assert [line.split(",")[0] for line in result.stdout.decode().splitlines()[-3:]] == ["0005", "", ""]
    one_error_line(
        sh("seqtool train station.csv --time-features --steps 2 -o m.pt"), "--time-features needs a time column"
    )


def test_time_features_of_year_months_train_and_roll_on_by_months(sh, tmp_path):
    _write(tmp_path / "t.csv", pd.date_range("2020-01-01", periods=36, freq=pd.offsets.MonthBegin()).strftime("%Y-%m"))
    trained = sh("seqtool train t.csv --time-features --hidden 4 --window 6 --steps 5 -q -o m.pt")
    assert trained.returncode == 0, trained.stderr
    result = sh("seqtool rollout m.pt t.csv --horizon 2 -q")
    assert result.returncode == 0, result.stderr
    assert [line.split(",")[0] for line in result.stdout.decode().splitlines()[-2:]] == ["2023-01", "2023-02"]


def test_a_series_of_one_row_goes_on_by_one_step_and_a_bad_date_is_named(sh, small_model, tmp_path):
    """A one-row series: its integer t goes on by 1, its dates by a day; a carried column
    mixing dates with and without an offset is text; in `t`, a cell that is not a date
    among dates is named."""
    rows = [f"a,{i},2024-01-{i + 1:02d}{'T00:00Z' if i == 0 else ''},{np.sin(i / 3)}" for i in range(12)]
    rows.append("b,5,2024-03-31T00:00+02:00,0.5")
    (tmp_path / "p.csv").write_text("series,t,note,x\n" + "\n".join(rows) + "\n")
    result = sh(f"seqtool rollout {small_model / 'm.pt'} p.csv --horizon 2 -q")
    assert result.returncode == 0, result.stderr
    lines = [line.split(",")[:3] for line in result.stdout.decode().splitlines()]
    assert [r for r in lines if r[0] == "b"] == [
        ["b", "5", "2024-03-31T00:00+02:00"],
        ["b", "6", "2024-04-01T00:00+02:00"],
        ["b", "7", "2024-04-02T00:00+02:00"],
    ]
    assert [r[2] for r in lines if r[0] == "a"][-3:] == ["2024-01-12", "", ""]  # mixed offsets: text, empty after
    (tmp_path / "d.csv").write_text("t,x\n2024-01-01,0.5\n")
    result = sh(f"seqtool rollout {small_model / 'm.pt'} d.csv --horizon 2 -q")
    assert [line.split(",")[0] for line in result.stdout.decode().splitlines()[1:]] == [
        "2024-01-01", "2024-01-02", "2024-01-03",
    ]  # fmt: skip
    _write(tmp_path / "bad.csv", [*pd.date_range("2024-01-01", periods=12).strftime("%Y-%m-%d")[:9], "2024-13-30"])
    one_error_line(
        sh(f"seqtool rollout {small_model / 'm.pt'} bad.csv --horizon 2"), "row 10, column 't': '2024-13-30'"
    )


def test_an_integer_t_of_series_of_different_lengths_goes_to_npz_without_a_warning(sh, small_model, tmp_path):
    rows = [f"a,{i},{np.sin(i / 3)}" for i in range(12)] + [f"b,{i},{np.cos(i / 3)}" for i in range(15)]
    (tmp_path / "t.csv").write_text("series,t,x\n" + "\n".join(rows) + "\n")
    result = sh(f"seqtool rollout {small_model / 'm.pt'} t.csv --horizon 2 -q -o p.npz")
    assert result.returncode == 0 and result.stderr == b"", result.stderr
    t = np.load(tmp_path / "p.npz")["t"]
    assert t.dtype.kind == "i" and t[0, :14].tolist() == list(range(14)) and t[1].tolist() == list(range(17))
