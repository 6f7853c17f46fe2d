"""How many CPU threads torch gets: as many as one step's work pays for, and no more than
the cores free now.

torch's default, a thread per core, is slow for a small model and collapses when processes
share the cores (a `make -j` sweep): each spinning thread waits for a core another process
holds. bench/threads.py measures both. On the CPU a training's last bits depend on the
thread count, so `train` reports and stores the count it used (`--resume` uses it again;
`--threads N` repeats a run exactly on a busy machine).
"""

from __future__ import annotations

import os
import statistics
import time

from .config import CELLS
from .limits import check_all, cores

# Multiply-adds per time step of the recurrence that pay for one more thread. Measured on
# 2 cores (bench/threads.py): an LSTM of 32 x batch 32 (135k) runs 1.4x faster on 2 threads;
# 16 x batch 64 (70k) or 32 x batch 16 (67k) gain under 5%, and smaller models lose.
MACS_PER_THREAD = 100_000


def work(cell: str, hidden: int, layers: int, batch: int, n_in: int) -> int:
    """Multiply-adds of one time step of the recurrence, over the batch."""
    gates = max(1, len(CELLS[cell].gates))
    return batch * gates * hidden * ((hidden + n_in) + (layers - 1) * 2 * hidden)


def busy() -> int:
    """Other threads that want a core now (the median of a few looks at the run queue; the
    one-minute load average where the run queue cannot be read)."""
    try:
        looks = []
        for i in range(5):
            with open("/proc/loadavg") as f:
                looks.append(int(f.read().split()[3].split("/")[0]) - 1)  # not this one
            if i < 4:
                time.sleep(0.005)
        return max(0, int(statistics.median(looks)))
    except (OSError, ValueError, IndexError):
        try:
            return int(os.getloadavg()[0])
        except OSError:
            return 0


def choose(macs: int) -> int:
    """Threads for a step of `macs` multiply-adds: one per MACS_PER_THREAD, within the free cores."""
    wanted = 1 + macs // MACS_PER_THREAD
    if wanted == 1:
        return 1
    return max(1, min(wanted, cores() - busy()))


def use(threads: int | None, macs: int) -> int:
    """Set torch's thread count: `threads` where given (--threads), else `choose(macs)`."""
    import torch

    check_all(threads=threads)
    n = threads or choose(macs)
    torch.set_num_threads(n)
    return n
