"""Training on a GPU: samples per second on the CPU and on the GPU for three
model sizes, in one run on one machine, and the sine accuracy target on the GPU.

Throughput is from the training seconds of each run's log (start-up left out), with
--val 0. The CPU runs use the threads seqtool chooses (the free cores it pays to use).
Only on a machine with CUDA: elsewhere it gives no rows, and RESULTS.md keeps the last.

Mixed precision was measured here (commit 8da5b0f, `--precision bf16`, torch's autocast,
which runs cuDNN's LSTM in float16) and left out of seqtool: slower at every size.
"""

from __future__ import annotations

import json
import re
import tempfile
from pathlib import Path

from .common import Row, sh

MODELS = {  # name: (options, steps)
    "LSTM 32 x batch 32 (the default)": ("--hidden 32 --batch 32", 300),
    "LSTM 64 x batch 256": ("--hidden 64 --batch 256", 300),
    "LSTM 256 x batch 1024": ("--hidden 256 --batch 1024", 60),
}
WINDOW = 50
MODES = {"CPU": "--device cpu", "GPU": "--device cuda"}


def _samples_per_second(d: Path, options: str, steps: int) -> float:
    sh(f"seqtool train d.csv {options} --window {WINDOW} --steps {steps} --val 0 -o m.pt --log log.csv -q", d)
    seconds = float((d / "log.csv").read_text().splitlines()[-1].split(",")[-1])  # the training seconds, unrounded
    return steps * int(re.search(r"--batch (\d+)", options).group(1)) * WINDOW / seconds


def run() -> list[Row]:
    import torch

    if not torch.cuda.is_available():
        return []
    card = torch.cuda.get_device_name(0)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        sh("seqtool gen sine -n 1024 --length 400 -o d.csv", d)
        for model, (options, steps) in MODELS.items():
            rate = {mode: _samples_per_second(d, f"{options} {flags}", steps) for mode, flags in MODES.items()}
            note = f"{card}; {steps} steps of {WINDOW}-step windows: " + ", ".join(
                f"{m} {r:,.0f} samples/s" for m, r in rate.items()
            )
            rows.append(Row(f"{model}: GPU / CPU", rate["GPU"] / rate["CPU"], "x", "beside", True, note))
        done = sh("seqtool gen sine | seqtool train --cell lstm --device cuda -o s.pt 2>&1 >/dev/null", d)
        seconds = float(re.search(r"in ([\d.]+) s", done.stdout).group(1))
        sh("seqtool gen sine --seed 1 | seqtool rollout s.pt --warmup 10 --metrics m.json -q > /dev/null", d)
        mse = json.loads((d / "m.json").read_text())["mse"]
        what = f"`seqtool gen sine | seqtool train --cell lstm --device cuda`, trained in {seconds:.1f} s"
        rows.append(
            Row(
                "sine LSTM on the GPU, free-running MSE",
                mse,
                "",
                "<= 1e-4",
                mse <= 1e-4,
                f"{what}; fresh --seed 1, 40 steps after a 10-step warm-up",
            )
        )
    return rows
