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

from seqtool.config import CELLS, ModelConfig
from seqtool.limits import cores

# Multiply-adds per time step of the recurrence that pay for one more thread. Measured on
# 2 cores, whole `train` commands on sine, 1 thread against 2: an LSTM of 32 units at batch
# 32 (135k) the same (10.7 s, 10.9 s), the long series slower on 2 (25.0 s, 26.3 s); 64
# units (532k) 1.25x faster on 2, 128 units (2.1M) 1.2x. bench/threads.py.
MACS_PER_THREAD = 300_000


def work(model: ModelConfig, batch: int) -> int:
    """Multiply-adds of one time step of the recurrence, over the batch."""
    gates = max(1, len(CELLS[model.cell].gates))
    h = model.width
    return batch * gates * h * ((h + model.n_in) + (model.layers - 1) * 2 * h)


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
    """Set torch's thread count: `threads` where given (--threads, checked by the command),
    else `choose(macs)`."""
    import torch  # lazily: distributed.end, at every command's exit, reads this module

    n = threads or choose(macs)
    torch.set_num_threads(n)
    return n
