"""`seqtool profile`: each series' seasonal profile from its own past, as a known column."""

from __future__ import annotations

import csv
import io

import numpy as np
import pytest
from conftest import modules_loaded, one_error_line

from seqtool.config import TrainConfig
from seqtool.data.profile import seasonal_profile
from seqtool.forecast.rollout import rollout
from seqtool.training.run import train


def _by_hand(x: np.ndarray, season: int, lag: int, total: int) -> np.ndarray:
    """The definition, step by step: over the known changes into steps r <= min(t - lag,
    n - 1), the mean of those at t's phase over the mean absolute change."""
    out = np.zeros(total)
    for t in range(total):
        rs = [r for r in range(1, min(t - lag, len(x) - 1) + 1) if not np.isnan(x[r] - x[r - 1])]
        same = [x[r] - x[r - 1] for r in rs if r % season == t % season]
        spread = np.mean([abs(x[r] - x[r - 1]) for r in rs]) if rs else 0.0
        out[t] = np.mean(same) / spread if same and spread > 0 else 0.0
    return out


@pytest.mark.parametrize("season, lag", [(4, 1), (12, 18), (5, 3), (1, 2), (30, 2)])
def test_the_profile_is_its_definition_gaps_and_steps_past_the_end_included(season, lag):
    rng = np.random.default_rng(season * 100 + lag)
    x = np.cumsum(rng.normal(size=70)) + 3 * np.sin(np.arange(70) * 2 * np.pi / max(season, 2))
    x[rng.random(70) < 0.15] = np.nan
    total = 70 + lag + 3
    np.testing.assert_allclose(seasonal_profile(x, season, lag, total), _by_hand(x, season, lag, total), atol=1e-12)


def test_a_value_changes_the_profile_only_lag_steps_later_and_not_with_its_scale():
    """No forecast of at most `lag` steps reads its future through the column, and a series
    times 1000 is the same series to it."""
    rng = np.random.default_rng(0)
    season, lag, total = 12, 6, 110
    x = np.cumsum(rng.normal(size=100)) + 5 * np.sin(np.arange(100) * np.pi / 6)
    base = seasonal_profile(x, season, lag, total)
    for s in (0, 1, 37, 60, 99):
        moved = x.copy()
        moved[s] += 10.0
        changed = np.flatnonzero(np.abs(seasonal_profile(moved, season, lag, total) - base) > 1e-12)
        assert len(changed) and changed.min() >= s + lag, (s, changed[:3])
    np.testing.assert_allclose(seasonal_profile(1000 * x, season, lag, total), base, rtol=1e-12, atol=1e-14)


def test_a_flat_short_or_empty_past_gives_zeros():
    assert np.array_equal(seasonal_profile(np.full(20, 3.0), 4, 2, 25), np.zeros(25))
    assert np.array_equal(seasonal_profile(np.array([1.0, 2.0]), 12, 1, 5), np.zeros(5))  # no step of t's phase
    assert np.array_equal(seasonal_profile(np.array([1.0, 2.0]), 1, 1, 5), [0, 0, 1, 1, 1])
    assert np.array_equal(seasonal_profile(np.array([np.nan, np.nan, np.nan]), 2, 1, 4), np.zeros(4))


def _rows(text: str) -> list[dict]:
    return list(csv.DictReader(io.StringIO(text)))


def test_the_command_adds_the_column_and_the_rows_past_each_end(cli, tmp_path):
    """Integer t stays integer, month-end dates go on by month-ends, the id repeats, the
    inputs are empty past the end and the profile is the function's."""
    months = ["2019-10-31", "2019-11-30", "2019-12-31", "2020-01-31", "2020-02-29"]
    lines = ["series,t,value,note", *(f"a,{i},{v},n{i}" for i, v in enumerate([1, 3, 2, 5, 4, 6])), "c,0,1,", "c,1,2,"]
    (tmp_path / "in.csv").write_text("\n".join(lines) + "\n")
    (tmp_path / "dates.csv").write_text("\n".join(["t,x", *(f"{d},{v}" for d, v in zip(months, [1, 3, 2, 4, 3]))]))
    result = cli("profile", tmp_path / "in.csv", "--x", "value", "--season", "2", "--lag", "1", "--ahead", "2")
    assert result.exit_code == 0, result.stderr
    rows = _rows(result.stdout)
    assert list(rows[0]) == ["series", "t", "value", "note", "value_profile"]
    a, c = [r for r in rows if r["series"] == "a"], [r for r in rows if r["series"] == "c"]
    assert [r["t"] for r in a] == [str(i) for i in range(8)] and [r["value"] for r in a[6:]] == ["", ""]
    assert [r["note"] for r in a[6:]] == ["", ""] and [r["t"] for r in c] == ["0", "1", "2", "3"]
    dated = cli("profile", tmp_path / "dates.csv", "--season", "12", "--lag", "2")
    assert dated.exit_code == 0, dated.stderr
    assert [r["t"] for r in _rows(dated.stdout)][-3:] == ["2020-02-29", "2020-03-31", "2020-04-30"]
    assert list(_rows(dated.stdout)[0]) == ["t", "x", "x_profile"]
    got = np.array([float(r["value_profile"]) for r in a])
    np.testing.assert_allclose(got, seasonal_profile(np.array([1.0, 3, 2, 5, 4, 6]), 2, 1, 8), atol=1e-15)
    assert got[7] == pytest.approx(np.mean([2.0, 3.0, 2.0]) / np.mean([2, 1, 3, 1, 2]))  # steps 1, 3, 5


def test_bad_input_is_one_line(cli, tmp_path):
    (tmp_path / "in.csv").write_text("series,t,value,value_profile\na,0,1,0\na,1,2,0\n")
    one_error_line(
        cli("profile", tmp_path / "in.csv", "--x", "value", "--season", "2", "--lag", "1"),
        "'value_profile' is there already",
    )
    one_error_line(cli("profile", tmp_path / "in.csv", "--x", "value", "--season", "2", "--lag", "0"), "--lag")
    one_error_line(cli("profile", tmp_path / "in.csv", "--x", "nope", "--season", "2", "--lag", "1"), "nope")
    out = tmp_path / "in.csv"
    one_error_line(cli("profile", out, "--x", "value", "--season", "2", "--lag", "1", "-o", out))


def test_a_model_reads_the_given_profile_past_the_end(cli, tmp_path):
    """Trained with --known value_profile and --horizon 4, a rollout writes the given rows
    back as given and forecasts from them: other profile values there, other forecasts."""
    t = np.arange(48)
    lines = ["series,t,value"]
    for s, amp in enumerate((1.0, 2.0, 3.0)):
        lines += [f"s{s},{i},{amp * np.sin(i * np.pi / 3) + 0.05 * i:.6f}" for i in t]
    (tmp_path / "in.csv").write_text("\n".join(lines) + "\n")
    assert cli("profile", tmp_path / "in.csv", "--x", "value", "--season", "6", "--lag", "4",
               "-o", tmp_path / "p.csv").exit_code == 0  # fmt: skip
    config = TrainConfig(x="value", known="value_profile", horizon=4, diff="1", hidden=8, window=20, steps=60, val=0.0)
    train(tmp_path / "p.csv", tmp_path / "m.pt", config, quiet=True)
    first, _ = rollout(tmp_path / "m.pt", tmp_path / "p.csv", horizon=4, quiet=True)
    given = [r for r in _rows((tmp_path / "p.csv").read_text()) if r["value"] == ""]
    free = first.columns["phase"] == "free"
    assert list(first.columns["value_profile"][free]) == [r["value_profile"] for r in given]  # as written
    text = (tmp_path / "p.csv").read_text().splitlines()
    moved = [line if line.split(",")[2] else ",".join(line.split(",")[:3] + ["5.0"]) for line in text[1:]]
    (tmp_path / "q.csv").write_text("\n".join([text[0], *moved]) + "\n")
    second, _ = rollout(tmp_path / "m.pt", tmp_path / "q.csv", horizon=4, quiet=True)
    assert np.abs(second.columns["yhat"][free] - first.columns["yhat"][free]).min() > 1e-6


def test_profile_starts_without_torch(tmp_path):
    (tmp_path / "in.csv").write_text("t,x\n0,1\n1,2\n2,4\n")
    assert modules_loaded(["profile", tmp_path / "in.csv", "--season", "2", "--lag", "1"]) == []


def test_odd_tables_keep_their_columns_and_huge_values_stay_finite(cli, tmp_path):
    """A column named phase is carried, a column y can be profiled, values near the float
    limit give the profile of the same series scaled down, dates past year 9999 are one line."""
    (tmp_path / "a.csv").write_text("series,t,y,phase\na,0,1,p\na,1,3,q\na,2,2,r\n")
    rows = _rows(cli("profile", tmp_path / "a.csv", "--x", "y", "--season", "2", "--lag", "1").stdout)
    assert [r["phase"] for r in rows] == ["p", "q", "r", ""] and float(rows[3]["y_profile"]) == pytest.approx(4 / 3)
    x = np.array([1.0, -1.0, 0.5, -0.5, 1.0, -1.0, 0.25, -0.75])
    np.testing.assert_allclose(seasonal_profile(1e308 * x, 2, 1, 10), seasonal_profile(x, 2, 1, 10), atol=1e-14)
    (tmp_path / "d.csv").write_text("t,x\n9999-10-31,1\n9999-11-30,2\n9999-12-31,3\n")
    one_error_line(cli("profile", tmp_path / "d.csv", "--season", "2", "--lag", "1"), "9999-12-31")


def test_whole_numbers_and_other_dates_are_carried_and_t_stops_where_dates_end(cli, tmp_path):
    """Parquet's integers come back whole, another column of dates that cannot go on is
    empty past the end, dates written to the nanosecond stop before they wrap (one line)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    big = 2**60 + 1
    table = {"t": [0, 1, 2], "x": [1.0, 2.0, 4.0], "store": [17, 17, 17], "big": [big] * 3}
    pq.write_table(pa.table({**table, "until": ["2024-01-01", "9999-12-31", "9999-12-31"]}), tmp_path / "i.parquet")
    result = cli("profile", tmp_path / "i.parquet", "--season", "2", "--lag", "1", "--ahead", "2")
    assert result.exit_code == 0, result.stderr
    rows = _rows(result.stdout)
    assert [r["store"] for r in rows] == ["17"] * 3 + [""] * 2 and rows[0]["big"] == str(big)
    assert [r["until"] for r in rows][2:] == ["9999-12-31", "", ""]
    ns = "".join(f"2262-04-0{d}T00:00:00.000000000,{d}\n" for d in (5, 6, 7))
    (tmp_path / "ns.csv").write_text("t,x\n" + ns)
    one_error_line(cli("profile", tmp_path / "ns.csv", "--season", "2", "--lag", "10"), "2262-04-11")


def test_a_rollout_refuses_a_model_column_named_phase(cli, tmp_path):
    (tmp_path / "p.csv").write_text("t,phase\n" + "".join(f"{i},{np.sin(i / 3):.4f}\n" for i in range(40)))
    trained = cli("train", tmp_path / "p.csv", "--x", "phase", "--hidden", "4", "--steps", "5", "--window", "10",
                  "--val", "0", "-q", "-o", tmp_path / "m.pt")  # fmt: skip
    assert trained.exit_code == 0, trained.stderr
    one_error_line(cli("rollout", tmp_path / "m.pt", tmp_path / "p.csv", "--horizon", "3"), "'phase'")


def test_the_function_returns_the_table_and_writes_only_where_asked(tmp_path, capsys):
    from seqtool import profile

    (tmp_path / "in.csv").write_text("series,t,x\na,0,1\na,1,3\nb,0,2\nb,1,2\nb,2,5\n")
    table = profile(tmp_path / "in.csv", season=1, lag=1, ahead=3)
    assert capsys.readouterr().out == "" and table.lengths.tolist() == [5, 6]
    np.testing.assert_array_equal(table.columns["x_profile"][:5], [0, 0, 1, 1, 1])
