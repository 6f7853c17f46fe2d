"""A covariate known in advance (`train --known`) on real data: Victoria's hourly electricity
demand with its temperature (data/victoria_demand.csv, 56 days).

Day-ahead forecasts: the network trains on the first 42 days (their last 10% held out for
validation, as by default); `backtest --horizon 24 --stride 24` then forecasts each day of a
later week from the midnight before, reading that day's temperature (the actual one,
standing for a weather forecast) where the model has `--known temperature`. Both models
have `--time-features` (hour of day, day of week) and training's defaults: nothing was
tuned. Beside them, the seasonal naive: the same hour a day before. Days 43-49 are a
validation week (looked at while the benchmark was written: window 168 was tried there
and not kept), days 50-56 the held-out week. MAE in GW, mean of 3 seeds.

    python -m bench known
"""

from __future__ import annotations

import json
import statistics
import tempfile
from pathlib import Path

from .common import Row, sh

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "data" / "victoria_demand.csv"
DAY = 24
TRAIN_DAYS, VALIDATION_DAYS = 42, 7
SEEDS = (0, 1, 2)
FLAGS = "--x demand --time-features -q"


def run() -> list[Row]:
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        sh(f"head -n {TRAIN_DAYS * DAY + 1} {DATA} > train.csv", d)
        for name, first in (("validation week", TRAIN_DAYS), ("held-out week", TRAIN_DAYS + VALIDATION_DAYS)):
            runs = {known: [_mae(d, known, seed, first * DAY) for seed in SEEDS] for known in (False, True)}
            mae = {known: [m for m, _ in got] for known, got in runs.items()}
            plain, with_known = statistics.mean(mae[False]), statistics.mean(mae[True])
            rows.append(
                Row(
                    f"victoria demand, {name}: day-ahead MAE with --known temperature / without",
                    with_known / plain,
                    "x",
                    "< 1",
                    with_known < plain,
                    f"MAE {with_known:.3f} GW against {plain:.3f} (seeds {', '.join(map(str, SEEDS))}: "
                    f"{', '.join(f'{v:.3f}' for v in mae[True])} against {', '.join(f'{v:.3f}' for v in mae[False])}); "
                    f"{VALIDATION_DAYS} origins x {DAY} h; the same hour a day before: MAE {runs[True][0][1]:.3f}",
                )
            )
    return rows


def _mae(d: Path, known: bool, seed: int, start: int) -> tuple[float, float]:
    """Day-ahead MAE from the midnights of the 7 days after `start`, by a model trained on
    the first TRAIN_DAYS (with or without the temperature), and the seasonal naive's."""
    model = f"{'known' if known else 'plain'}{seed}.pt"
    if not (d / model).exists():
        extra = " --known temperature" if known else ""
        sh(f"seqtool train train.csv {FLAGS}{extra} --seed {seed} -o {model}", d)
    sh(
        f"head -n {start + VALIDATION_DAYS * DAY + 1} {DATA} > upto.csv && seqtool backtest {model} upto.csv "
        f"--horizon {DAY} --stride {DAY} --start {start} --season {DAY} --metrics m.json -q > /dev/null",
        d,
    )
    m = json.loads((d / "m.json").read_text())
    return m["mae"], m["seasonal_naive"]["mae"]
