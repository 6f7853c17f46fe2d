"""Calibration of the distribution heads (issue 15): `seqtool gen sine --noise 0.1` trained
with `--loss gaussian`, three training seeds, judged on a fresh table (--seed 101):

- the learned one-step scale (the 80% interval's mean width / 2.563) within 15% of 0.1;
- the 80% interval covering 75-85% of the fresh one-step truths.

The free-running paths (`rollout --samples`) are not built yet: no rows for them.
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
from pathlib import Path

from .common import BIN, Row

ENV = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
Z80 = 1.2815515655446004  # the standard normal's 90% quantile: an 80% interval is mean +- Z80 sigma


def _sh(command: str, cwd: Path) -> None:
    subprocess.run(["bash", "-o", "pipefail", "-c", command], cwd=cwd, env=ENV, check=True, capture_output=True)


def run() -> list[Row]:
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        _sh("seqtool gen sine --noise 0.1 --seed 101 -o fresh.csv", d)
        for seed in (0, 1, 2):
            _sh(f"seqtool gen sine --noise 0.1 --seed {seed} | seqtool train --loss gaussian --seed {seed} -o g{seed}.pt", d)
            _sh(f"seqtool predict g{seed}.pt fresh.csv --level 80 --metrics m{seed}.json -q > /dev/null", d)
            m = json.loads((d / f"m{seed}.json").read_text())
            sigma = m["width"] / (2 * Z80)
            what = f"`seqtool gen sine --noise 0.1 --seed {seed} | seqtool train --loss gaussian --seed {seed}`; fresh --seed 101, {m['steps']} steps"
            rows.append(Row(f"seed {seed}: learned one-step scale", sigma, "", "0.085-0.115", abs(sigma / 0.1 - 1) <= 0.15, what))
            rows.append(Row(f"seed {seed}: 80% interval coverage", m["coverage"], "", "0.75-0.85", 0.75 <= m["coverage"] <= 0.85, f"CRPS {m['crps']:.4f}, MAE {m['mae']:.4f}"))
    return rows
