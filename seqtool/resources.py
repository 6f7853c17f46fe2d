"""The cores and the memory this process may use: its CPU affinity and /proc/meminfo, each
cut to the limits of its cgroups (v2 `cpu.max`, `memory.max` less what is used; v1
`cpu.cfs_quota_us`, `memory.limit_in_bytes` less what is used), so that in a container
(`docker run --cpus 2 --memory 4g`) threads and memory checks see the container's share,
not the host's. Used is `memory.current` (v1 `memory.usage_in_bytes`) less the inactive
file cache of `memory.stat`, which the kernel reclaims before it refuses memory. A cgroup
file that cannot be read as expected is no limit: these run at every start.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

CGROUP = Path("/sys/fs/cgroup")
PROC_CGROUP = Path("/proc/self/cgroup")
UNLIMITED = 1 << 60  # v1 writes "no limit" as a number near 2**63


def _folders(controller: str) -> list[Path]:
    """This process's cgroup folders for `controller`, its own first, then each above it
    up to the mount's root (a folder that is not there, as in a container whose cgroup
    is mounted as the root, is skipped)."""
    try:
        lines = PROC_CGROUP.read_text(errors="replace").splitlines()
    except OSError:
        return []
    for line in lines:
        number, controllers, path = (line.split(":", 2) + ["", ""])[:3]
        if number == "0" and (CGROUP / "cgroup.controllers").exists():  # v2: one hierarchy
            base = CGROUP
        elif controller in controllers.split(","):  # v1: the controller's own
            base = CGROUP / controller
        else:
            continue
        parts = [p for p in path.strip().split("/") if p]
        found = [base.joinpath(*parts[:n]) for n in range(len(parts), -1, -1)]
        return [f for f in found if _is_dir(f)]
    return []


def _is_dir(path: Path) -> bool:
    try:
        return path.is_dir()
    except (OSError, ValueError):  # a name too long, a NUL byte
        return False


def _number(path: Path, field: int = 0) -> int | None:
    """A cgroup file's value `field` (0: the first); None where it is absent, unreadable,
    not a whole number, or `max`."""
    try:
        text = path.read_text(errors="replace").split()
        return int(text[field]) if len(text) > field and text[field] != "max" else None
    except (OSError, ValueError, IndexError):
        return None


def _inactive_file(folder: Path) -> int:
    """The reclaimable file cache that a cgroup's usage counts (`memory.stat`), else 0."""
    try:
        for line in (folder / "memory.stat").read_text(errors="replace").splitlines():
            key, _, value = line.partition(" ")
            if key in ("inactive_file", "total_inactive_file"):
                return max(0, int(value))
    except (OSError, ValueError):
        pass
    return 0


def cgroup_cores() -> float | None:
    """The CPU time the cgroups allow, in cores (1.5: one and a half); None without a limit."""
    allowed = []
    for folder in _folders("cpu"):
        v2 = folder / "cpu.max"
        if v2.exists():
            quota, period = _number(v2), _number(v2, 1) or 100_000
        else:
            quota, period = _number(folder / "cpu.cfs_quota_us"), _number(folder / "cpu.cfs_period_us")
        if quota is not None and quota > 0 and period and period > 0:
            try:
                allowed.append(quota / period)
            except OverflowError:  # a quota of hundreds of digits: no limit
                continue
    return min(allowed, default=None)


def cgroup_memory() -> int | None:
    """Bytes the cgroups still allow (limit less usage, at the tightest level); None without a limit."""
    left = []
    for folder in _folders("memory"):
        limit = _number(folder / "memory.max")
        used = _number(folder / "memory.current")
        if limit is None and used is None:
            limit, used = _number(folder / "memory.limit_in_bytes"), _number(folder / "memory.usage_in_bytes")
        if limit is not None and limit < UNLIMITED:
            left.append(max(0, limit - max(0, (used or 0) - _inactive_file(folder))))
    return min(left, default=None)


def cores() -> int:
    """The cores this process may run on (affinity), no more than its cgroups allow (rounded
    up: 1.5 cores run two threads): more torch threads than these only slow it down."""
    try:
        n = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        n = os.cpu_count() or 1
    quota = _probe(cgroup_cores)
    return n if quota is None else max(1, min(n, math.ceil(quota)))


def available_memory() -> int:
    """Bytes this process could still allocate: MemAvailable (else the physical memory),
    no more than its cgroups have left."""
    free = None
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    free = int(line.split()[1]) * 1024
                    break
    except (OSError, ValueError, IndexError):
        pass
    if free is None:
        try:
            free = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
        except (ValueError, OSError, AttributeError):
            free = 1 << 62
    limit = _probe(cgroup_memory)
    return free if limit is None else min(free, limit)


def _probe(read):
    """A cgroup reading, or None (no limit) for whatever a strange cgroup tree raises."""
    try:
        return read()
    except Exception:  # at every start: a limit not read is the host's, never a crash
        return None
