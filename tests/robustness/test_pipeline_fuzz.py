"""A property test of the whole pipeline on real-looking tables: random ids, number and
text columns, dates of every unit and offset, gaps, through convert -> info -> train ->
rollout -> backtest. Every command ends with exit 0 or one `seqtool: error:` line (exit
2), never "unexpected"; every column of the table survives, as it was written, and the
folder gives what its CSV gives."""

from __future__ import annotations

import csv
import io
import itertools
import json
import math
import os
import re

import numpy as np
import pandas as pd
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from seqtool.cli import app

EXAMPLES = int(os.environ.get("SEQTOOL_FUZZ_EXAMPLES", 30))  # tables tried; each runs six commands in this process
PIPELINE = settings(max_examples=EXAMPLES, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])  # fmt: skip
DATES = [  # (pandas frequency, how the dates are written)
    (pd.offsets.MonthBegin(), "%Y-%m"), (pd.offsets.Day(), "%Y-%m-%d"), (pd.offsets.MonthEnd(), "%Y-%m-%d"),
    (pd.offsets.BDay(), "%Y-%m-%d"), (pd.offsets.YearBegin(), "%Y"), (pd.offsets.Hour(), "%Y-%m-%dT%H:%M"),
    (pd.offsets.Hour(), "%Y-%m-%d %H:%M:%S"), (pd.offsets.Minute(15), "%Y-%m-%dT%H:%M+02:00"),
    (pd.offsets.Second(), "%Y-%m-%dT%H:%M:%SZ"), (pd.offsets.Hour(), "%Y-%m-%dT%H:%M-05:30"),
    (pd.offsets.Milli(250), "%Y-%m-%dT%H:%M:%S.%f"),
]  # fmt: skip
OTHERS = {  # a column seqtool does not read: its cells for the rows of a series
    "code": lambda rng, n: [f"{int(rng.integers(0, 99)):04d}"] * n,  # an id with leading zeros
    "count": lambda rng, n: [str(k + int(rng.integers(-5, 100))) for k in range(n)],
    "level": lambda rng, n: [repr(float(v)) for v in rng.normal(size=n)],
    "note": lambda rng, n: [rng.choice(["ok", "a, b", 'say "hi"', "é", ""]) for _ in range(n)],
}


@st.composite
def tables(draw) -> tuple[list[list[str]], bool]:
    """(rows of a CSV, header first; whether it has a time column named t)."""
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    ids = draw(st.sampled_from([["a", "b", "c"], ["007", "08", "9"], ["1", "2", "3"], None]))
    n = 1 if ids is None else draw(st.integers(1, 3))
    lengths = draw(st.lists(st.integers(8, 16), min_size=n, max_size=n))
    time = draw(st.sampled_from(["none", "integers", "numbers", *range(len(DATES))]))
    time_name = draw(st.sampled_from(["t", "date"])) if time != "none" else None
    others = draw(st.lists(st.sampled_from(sorted(OTHERS)), unique=True, max_size=3))
    scale = draw(st.sampled_from([1e-3, 1.0, 1e4]))
    gaps = draw(st.integers(0, 2))
    columns = {"series": [], time_name: [], "x": [], **{name: [] for name in others}}
    for i, length in enumerate(lengths):
        columns["series"] += [ids[i] if ids else ""] * length
        if time in ("integers", "numbers"):
            start, step = int(rng.integers(-50, 3000)), 1 if time == "integers" else 0.25
            columns[time_name] += [str(start + step * k) for k in range(length)]
        elif time != "none":
            freq, form = DATES[time]
            when = pd.date_range(
                str(rng.choice(["2020-01-01", "1999-12-31 22:00", "2024-03-30"])), periods=length, freq=freq
            )
            columns[time_name] += [d.strftime(form)[: -3 if form.endswith("%f") else None] for d in when]
        x = scale * (np.sin(np.arange(length) / 2.0 + i) + 0.1 * rng.normal(size=length))
        cells = [repr(float(v)) for v in x]
        for k in rng.choice(np.arange(1, length - 1), size=gaps, replace=False):
            cells[k] = ""
        columns["x"] += cells
        for name in others:
            columns[name] += OTHERS[name](rng, length)
    names = [name for name in columns if name and (name != "series" or ids)]
    order = draw(st.permutations(names))
    return [order, *map(list, zip(*(columns[name] for name in order)))], time_name == "t"


def _said(result, *allowed: int) -> int:
    """The exit code, which must be allowed; an error is one `seqtool: error:` line (its
    gist an event: `--hypothesis-show-statistics` tells what was refused how often)."""
    assert result.exit_code in allowed, (result.exit_code, result.stderr, result.exception)
    if result.exit_code == 2:
        lines = result.stderr.splitlines()
        assert len(lines) == 1 and lines[0].startswith("seqtool: error: "), result.stderr
        assert "unexpected" not in lines[0], lines[0]
        event(re.sub(r"[\d.]+|'[^']*'", "_", lines[0].split(": ", 3)[-1])[:90])
    return result.exit_code


def _rows(text: str) -> list[list[str]]:
    return list(csv.reader(io.StringIO(text)))


@PIPELINE
@given(tables(), st.booleans())
def test_every_column_survives_the_pipeline_or_is_refused_in_one_line(tmp_path_factory, table, features):
    from typer.testing import CliRunner

    rows, has_t = table
    run = lambda *args: CliRunner().invoke(app, [str(a) for a in args])  # noqa: E731
    folder = tmp_path_factory.mktemp("pipeline")
    with open(folder / "t.csv", "w", newline="") as f:
        csv.writer(f).writerows(rows)
    if _said(run("convert", folder / "t.csv", "-o", folder / "t.seq"), 0, 2):
        assert _said(run("info", folder / "t.csv"), 0, 2) == 2  # what convert refuses, the reader refuses
        return
    info = json.loads(run("info", folder / "t.seq", "--json").stdout)
    assert info["other_columns"] == [n for n in rows[0] if n not in ("series", "t", "x")]
    flags = [
        "--steps",
        "3",
        "--hidden",
        "4",
        "--window",
        "6",
        "--burn-in",
        "1",
        "--val",
        "0",
        "-q",
        "-o",
        folder / "m.pt",
    ]
    if _said(run("train", folder / "t.seq", *flags, *(["--time-features"] if features and has_t else [])), 0, 2):
        return
    model = folder / "m.pt"
    rolled = [run("rollout", model, folder / name, "--horizon", "2", "--warmup", "2") for name in ("t.seq", "t.csv")]
    if _said(rolled[0], 0, 2):
        assert _said(rolled[1], 0, 2) == 2, rolled[1].stdout[:300]
        return
    assert _said(rolled[1], 0) == 0
    out, csv_out = _rows(rolled[0].stdout), _rows(rolled[1].stdout)
    header = rows[0]
    assert out[0] == [*header, "yhat", "phase"]
    for a, b in zip(out, csv_out):  # the folder gives what its CSV gives
        assert a[:-2] == b[:-2] and a[-1] == b[-1]
        assert a[-2] == b[-2] or math.isclose(float(a[-2]), float(b[-2]), rel_tol=1e-6, abs_tol=1e-9)
    key = (lambda r: r[header.index("series")]) if "series" in header else (lambda r: "")
    data, future, k = [], [], 1
    for n in [len(list(group)) for _, group in itertools.groupby(rows[1:], key=key)]:
        data, future, k = data + out[k : k + n], future + out[k + n : k + n + 2], k + n + 2
    assert k == len(out)
    x = header.index("x")
    for line, row in zip(data, rows[1:], strict=True):  # every cell as written; x as the same number
        assert line[:x] + line[x + 1 : -2] == row[:x] + row[x + 1 :]
        assert line[x] == row[x] == "" or float(line[x]) == float(row[x])
    for line in future:  # past the end: no input, no invented value; the time goes on
        assert [line[header.index(name)] for name in OTHERS if name in header] == [""] * len(set(OTHERS) & set(header))
        assert line[x] == "" and ("t" not in header or line[header.index("t")] != "")
    _said(run("backtest", model, folder / "t.seq", "--horizon", "2", "--start", "0.5"), 0, 2)
    event("through every command")
