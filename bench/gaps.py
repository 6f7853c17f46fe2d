"""What gaps cost (`train --gaps fill`): data/daily_temperature.csv (730 days) with 10% of
its cells emptied at random (never the last), against the same series whole.

Both models train on days 0-639 with `--time-features` and the defaults (nothing tuned:
the gap handling, carrying forward with a mask input, was chosen before any run); then
`backtest --horizon 7` from every day of the last 90 (held out), reading the table with
its gaps where the model was trained on them. Each forecast is scored against the whole
series' value, so that both are scored on the same steps. Seed s empties the cells with
seed s and trains with seed s; the ratio is of the means over seeds 0-5. Days 550-639
were a validation split (trained on days 0-549), run before the held-out days: there,
seeds 0-2 gave 1.13 (2.036, 1.635, 1.634 against 1.531, 1.616, 1.539: seed 0's gapped
model an outlier) and seeds 3-5 0.93 to 0.97, so the benchmark takes six seeds, as a
spread this wide between seeds needs for a 5% bound.

    python -m bench gaps
"""

from __future__ import annotations

import csv
import statistics
import tempfile
from pathlib import Path

import numpy as np

from .common import Row, sh

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "data" / "daily_temperature.csv"
SHARE, HORIZON, HOLD, VALIDATION = 0.1, 7, 90, 90
SEEDS = (0, 1, 2, 3, 4, 5)
TRAIN = "--x value --time-features --threads 1 -q"


def run() -> list[Row]:
    return [cost("held-out", HOLD), cost("validation", HOLD + VALIDATION)]


def cost(name: str, back: int) -> Row:
    """The gapped model's MAE over the whole one's, on the `HOLD` days that start `back`
    days before the end (trained on the days before them)."""
    rows = list(csv.reader(DATA.open()))
    header, body = rows[0], rows[1:]
    start = len(body) - back
    end = start + HOLD
    truth = [float(r[1]) for r in body]  # by step: the backtest's t, the table having none
    mae, origins = {True: [], False: []}, 0
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        for seed in SEEDS:
            holes = np.random.default_rng(seed).random(end) < SHARE
            holes[end - 1] = False
            for gapped in (False, True):
                kept = [[r[0], "" if gapped and holes[i] else r[1]] for i, r in enumerate(body[:end])]
                _write(d / "full.csv", header, kept)
                _write(d / "part.csv", header, kept[:start])
                sh(f"seqtool train part.csv {TRAIN} --seed {seed} -o m.pt", d)
                sh(f"seqtool backtest m.pt full.csv --horizon {HORIZON} --start {start} -q -o bt.csv", d)
                out = list(csv.DictReader((d / "bt.csv").open()))
                mae[gapped].append(statistics.mean(abs(float(r["yhat"]) - truth[int(r["t"])]) for r in out))
                origins = len({r["origin"] for r in out})
    whole, holed = statistics.mean(mae[False]), statistics.mean(mae[True])
    return Row(
        f"daily temperature, {name} 90 days: {HORIZON}-day MAE with 10% of cells empty / whole",
        holed / whole,
        "x",
        "<= 1.05",
        holed / whole <= 1.05,
        f"MAE {holed:.3f} against {whole:.3f} (seeds 0-5: {', '.join(f'{v:.3f}' for v in mae[True])} against "
        f"{', '.join(f'{v:.3f}' for v in mae[False])}); `seqtool train part.csv {TRAIN} --seed S` on days 0-"
        f"{start - 1}, `seqtool backtest --horizon {HORIZON} --start {start}` to day {end - 1}: {origins} origins",
    )


def _write(path: Path, header: list[str], rows: list[list[str]]) -> None:
    with path.open("w", newline="") as f:
        csv.writer(f).writerows([header, *rows])
