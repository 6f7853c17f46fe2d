"""Exploding gradients: detected and reported with the step and the norm; --clip cures them."""

from __future__ import annotations

import re

from seqtool.data import generators
from seqtool.data.tables import write_table


def test_explosion_is_reported_and_clipping_rescues_the_same_run(tmp_path, cli):
    data = tmp_path / "sine.csv"
    write_table(generators.sine(n_series=64, seed=0), data)
    run = [
        "train",
        data,
        "--cell",
        "rnn",
        "--optimizer",
        "sgd",
        "--lr",
        "0.3",
        "--steps",
        "300",
        "-o",
        tmp_path / "m.pt",
    ]
    exploded = cli(*run)
    assert exploded.exit_code == 1
    message = exploded.stderr.splitlines()[-1]
    m = re.search(r"diverged at step (\d+): loss (\S+) .*gradient norm (\S+); try --clip", message)
    assert m and int(m[1]) < 300 and float(m[3].rstrip(";")) > 1e3, message
    assert not (tmp_path / "m.pt").exists()  # nothing good to keep: nothing written
    rescued = cli(*run, "--clip", "1", "--log", tmp_path / "log.csv")
    assert rescued.exit_code == 0, rescued.stderr
    summary = rescued.stderr.splitlines()[-1]
    assert float(re.search(r"train loss (\S+),", summary)[1]) < 1e-3
    from seqtool.data.tables import read_table

    log = read_table(tmp_path / "log.csv")
    assert log.numbers("clipped").sum() > 0  # clipping did the work, and the log says so
