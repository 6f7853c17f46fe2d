"""Defaults that serve: the thread count train chooses, alone and three at
once, against --threads 1; one long series cut into streams, against one stream.

Targets: three default trainings at once take at most 1.2x the time of the same three
with --threads 1; one alone is no slower than with --threads 1 (sine default, and the
long series); `seqtool gen integral -n 1 --length 100000 | seqtool train --stateful`
reaches MAE <= 0.01 on a fresh 1,500-step series in at most 30 s of training.
"""

from __future__ import annotations

import json
import re
import subprocess
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from .common import ENV, Row, interleaved

RUNS = {  # name: (data command, train options)
    "sine default": ("seqtool gen sine -o d.csv", ""),
    "long series": ("seqtool gen integral -n 1 --length 100000 -o d.npz", "--stateful"),
}


def _train(d: Path, data: str, options: str, out: str) -> str:
    """Run a `train` command; its summary line."""
    done = subprocess.run(
        f"seqtool train {data} {options} -o {out}",
        shell=True,
        cwd=d,
        env=ENV,
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stderr.strip().splitlines()[-1]


def _seconds(summary: str) -> float:
    """The training seconds a summary line reports."""
    return float(re.search(r"in ([\d.]+) s", summary).group(1))


def _three(d: Path, data: str, options: str) -> None:
    """Three trainings started together."""
    with ThreadPoolExecutor(3) as pool:
        list(pool.map(lambda i: _train(d, data, options, f"m{i}.pt"), range(3)))


def _mae(d: Path, model: str, seed: int = 1) -> float:
    cmd = (
        f"seqtool gen integral -n 1 --length 1500 --seed {seed} "
        f"| seqtool predict {model} -q --metrics m.json -o /dev/null"
    )
    subprocess.run(cmd, shell=True, cwd=d, env=ENV, check=True)
    return json.loads((d / "m.json").read_text())["mae"]


def run() -> list[Row]:
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        for name, (make, options) in RUNS.items():
            subprocess.run(make, shell=True, cwd=d, env=ENV, check=True)
            data = make.split()[-1]
            summary = {}
            alone = interleaved({
                "one": lambda: _train(d, data, f"{options} --threads 1", "one.pt"),  # noqa: B023 (interleaved calls it at once)
                "auto": lambda: summary.update(line=_train(d, data, options, "auto.pt")),  # noqa: B023 (called at once)
            }, repeats=3)  # fmt: skip
            chosen = re.search(r"on (\d+ threads?)", summary["line"]).group(1)
            rows.append(Row(f"{name}: alone, default threads / --threads 1", alone["auto"] / alone["one"], "x",
                            "<= 1.0", alone["auto"] <= alone["one"] * 1.02 or chosen == "1 thread",
                            f"median of 3: {alone['auto']:.1f} s ({chosen} chosen"
                            f"{': the same command, the ratio is noise' if chosen == '1 thread' else ''})"
                            f" vs {alone['one']:.1f} s, whole command"))  # fmt: skip
            three = interleaved(
                {"one": lambda: _three(d, data, f"{options} --threads 1"), "auto": lambda: _three(d, data, options)},  # noqa: B023 (called at once)
                repeats=1,
            )
            rows.append(Row(f"{name}: three at once, default / --threads 1", three["auto"] / three["one"], "x",
                            "<= 1.2", three["auto"] <= 1.2 * three["one"],
                            f"{three['auto']:.1f} s vs {three['one']:.1f} s for all three"))  # fmt: skip
            if name == "long series":
                mae, seconds = _mae(d, "auto.pt"), _seconds(summary["line"])
                others = ", ".join(f"{_mae(d, 'auto.pt', seed):.4f}" for seed in (2, 3))
                rows.append(Row("long series cut into 32 streams: MAE on a fresh 1,500-step series", mae, "",
                                "<= 0.01 in <= 30 s", mae <= 0.01 and seconds <= 30,
                                f"`seqtool gen integral -n 1 --length 100000 | seqtool train --stateful`, "
                                f"{seconds:.1f} s of training; fresh seeds 2, 3: {others}; "
                                f"{summary['line'].split(';')[0]}"))  # fmt: skip
                line = _train(d, data, "--stateful --batch 1", "single.pt")
                rows.append(
                    Row(
                        "long series, one stream (--batch 1, before the cut): MAE",
                        _mae(d, "single.pt"),
                        "",
                        "beside",
                        True,
                        f"{_seconds(line):.1f} s of training",
                    )
                )
                line = _train(d, data, "--stateful --steps 4000", "longer.pt")
                mae = _mae(d, "longer.pt")
                rows.append(
                    Row(
                        "long series cut into streams, --steps 4000: MAE",
                        mae,
                        "",
                        "<= 0.01",
                        mae <= 0.01,
                        f"{_seconds(line):.1f} s of training",
                    )
                )
    return rows
