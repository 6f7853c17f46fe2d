"""Reading tables: a million rows of CSV and of Parquet, and `convert` of a large CSV.

The baseline is seqtool's own csv-module reader (the path that small and irregular CSVs
still take), timed in the same run on the same file; its values are the reference the
arrow path must equal bit for bit.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from .common import BIN, Row, command

COPIES = 5  # convert's CSV: the million-row table five times over (214 MB)


def _median_time(run, repeats: int = 3) -> float:
    run()  # imports and the page cache warmed: what a command pays once is not a read
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def run() -> list[Row]:
    import seqtool.data.tables as tables
    from seqtool.data.generators import sine
    from seqtool.data.reading import read_series
    from seqtool.data.tables import write_table

    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        table = sine(n_series=1000, length=1000, span=200, seed=0)
        csv, parquet = d / "big.csv", d / "big.parquet"
        write_table(table, csv)
        write_table(table, parquet)
        fast = read_series(csv)
        csv_s = _median_time(lambda: read_series(csv))
        parquet_s = _median_time(lambda: read_series(parquet))
        limit = tables.FAST_CSV_BYTES
        tables.FAST_CSV_BYTES = 1 << 62  # the csv module's path, for every size
        try:
            slow = read_series(csv)
            module_s = _median_time(lambda: read_series(csv), repeats=1)
        finally:
            tables.FAST_CSV_BYTES = limit
        same = (
            all(
                fast.columns[n].dtype == slow.columns[n].dtype
                and (fast.columns[n].view(np.uint64) == slow.columns[n].view(np.uint64)).all()
                for n in ("t", "x")
            )
            and (fast.columns["series"] == slow.columns["series"]).all()
        )
        from_parquet = read_series(parquet)
        same_parquet = all((from_parquet.columns[n] == fast.columns[n]).all() for n in fast.columns)

        body = csv.read_bytes()
        header, rows = body.split(b"\n", 1)
        big = d / "big5.csv"
        with open(big, "wb") as f:
            f.write(header + b"\n")
            for k in range(COPIES):  # each copy's series ids made new: k_0, k_1, ...
                f.write(f"{k}_".encode() + rows[:-1].replace(b"\n", f"\n{k}_".encode()) + b"\n")
        times = []
        for k in range(3):
            start = time.perf_counter()
            command(str(BIN / "seqtool"), "convert", str(big), "-o", str(d / f"c{k}.seq"))()
            times.append(time.perf_counter() - start)
        convert_s = statistics.median(times)
        mb = big.stat().st_size / 1e6
        csv_mb, parquet_mb = csv.stat().st_size / 1e6, parquet.stat().st_size / 1e6
    return [
        Row("read 1,000,000 rows (CSV)", csv_s, "s", "<= 0.5 s", csv_s <= 0.5,
            f"{1e6 / csv_s:,.0f} rows/s, {csv_mb:.0f} MB; `read_series(path)` warm, median of 3"),
        Row("read 1,000,000 rows (CSV): csv module / arrow", module_s / csv_s, "x", "reported", True,
            f"the csv module's path on the same file: {module_s:.2f} s; values bit for bit the same: {same}"),
        Row("read 1,000,000 rows (Parquet)", parquet_s, "s", "<= 0.2 s", parquet_s <= 0.2 and same_parquet,
            f"{parquet_mb:.0f} MB; the same table as the CSV's: {same_parquet}"),
        Row("CSV values equal to the csv module's", float(same), "", "1 (bit for bit)", same,
            "t and x of every row compared as bits; series ids as text"),
        Row("convert a CSV, whole command", mb / convert_s, "MB/s", ">= 80 MB/s", mb / convert_s >= 80,
            f"`seqtool convert big5.csv -o c.seq`: {mb:.0f} MB ({COPIES:,} x 1,000,000 rows) in {convert_s:.2f} s "
            "(median of 3, start-up included)"),
    ]  # fmt: skip
