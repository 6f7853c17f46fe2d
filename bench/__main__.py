"""Run the benchmarks, print a table, and update their sections of bench/RESULTS.md.

python -m bench                  # all of them (make bench)
python -m bench startup          # only those named
"""

from __future__ import annotations

import datetime
import re
import sys
from pathlib import Path

from . import (
    accuracy,
    bigtable,
    calibration,
    competition,
    conformal,
    distributed,
    export,
    forecasting,
    gaps,
    gpu,
    kernels,
    known,
    memory,
    speed,
    startup,
    tables,
    threads,
)
from .common import Row, machine

BENCHMARKS = {
    "startup": startup.run,
    "accuracy": accuracy.run,
    "speed": speed.run,
    "memory": memory.run,
    "forecasting": forecasting.run,
    "threads": threads.run,
    "distributed": distributed.run,
    "gpu": gpu.run,
    "bigtable": bigtable.run,
    "calibration": calibration.run,
    "kernels": kernels.run,
    "competition": competition.run,
    "conformal": conformal.run,
    "known": known.run,
    "gaps": gaps.run,
    "tables": tables.run,
    "export": export.run,
}
RESULTS = Path(__file__).parent / "RESULTS.md"
HEADER = "# Benchmark results\n\nEach section is rewritten by `python -m bench NAME` (all of them: `make bench`).\n"


def table(rows: list[Row]) -> str:
    lines = ["| benchmark | measured | target | pass | note |", "| --- | --- | --- | --- | --- |"]
    for r in rows:
        note = r.note.replace("|", "\\|")  # a pipe inside a cell, escaped for Markdown tables
        lines.append(
            f"| {r.name} | {f'{r.value:.3g} {r.unit}'.strip()} | {r.target} | "
            f"{'PASS' if r.passed else 'FAIL'} | {note} |"
        )
    return "\n".join(lines)


def update_results(sections: dict[str, str]) -> None:
    old = RESULTS.read_text() if RESULTS.exists() else HEADER
    kept = dict(re.findall(r"^## (\S+)\n(.*?)(?=^## |\Z)", old, flags=re.S | re.M))
    kept.update(sections)
    body = "".join(f"## {name}\n{kept[name].rstrip()}\n\n" for name in BENCHMARKS if name in kept)
    RESULTS.write_text(HEADER + "\n" + body)


def main(argv: list[str]) -> int:
    chosen = argv or list(BENCHMARKS)
    unknown = [n for n in chosen if n not in BENCHMARKS]
    if unknown:
        print(f"unknown benchmark(s): {', '.join(unknown)}; choose from {', '.join(BENCHMARKS)}", file=sys.stderr)
        return 2
    sections, failed = {}, 0
    for name in chosen:
        print(f"running {name} ...", file=sys.stderr, flush=True)
        rows = BENCHMARKS[name]()
        if not rows:  # it cannot run here (gpu without CUDA): the section recorded stays
            print(f"{name}: nothing to measure on this machine; bench/RESULTS.md keeps its section", file=sys.stderr)
            continue
        text = table(rows)
        print(f"\n{name}\n{text}\n", flush=True)
        stamp = datetime.datetime.now().strftime("%Y-%m-%d %H:%M")
        sections[name] = f"\nCommand: `python -m bench {name}`; run {stamp} on {machine()}.\n\n{text}\n"
        failed += sum(not r.passed for r in rows)
    update_results(sections)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
