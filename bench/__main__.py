"""Run every benchmark, print a table, and write bench/RESULTS.md.

    python -m bench            # all benchmarks
    python -m bench startup    # only those named
"""

from __future__ import annotations

import datetime
import sys
from pathlib import Path

from . import startup
from .common import Row, machine

BENCHMARKS = {"startup": startup.run}
RESULTS = Path(__file__).parent / "RESULTS.md"


def main(argv: list[str]) -> int:
    chosen = argv or list(BENCHMARKS)
    rows: list[Row] = []
    for name in chosen:
        print(f"running {name} ...", file=sys.stderr)
        rows += BENCHMARKS[name]()
    lines = [
        "| benchmark | measured | target | pass | note |",
        "| --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        mark = "PASS" if r.passed else "FAIL"
        lines.append(f"| {r.name} | {r.value:.3g} {r.unit} | {r.target} | {mark} | {r.note} |")
    table = "\n".join(lines)
    print(table)
    stamp = datetime.datetime.now().strftime("%Y-%m-%d %H:%M")
    cmd = " ".join(["python -m bench", *argv])
    RESULTS.write_text(
        f"# Benchmark results\n\nCommand: `{cmd}` (all of them: `make bench`)\n\n"
        f"Run: {stamp} on {machine()}\n\n{table}\n"
    )
    return 0 if all(r.passed for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
