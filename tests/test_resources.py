"""Cores and memory within a container's cgroup limits, read from fake cgroup files."""

from __future__ import annotations

import os

import pytest

from seqtool import resources


def fake(tmp_path, monkeypatch, proc: str, files: dict[str, str]) -> None:
    """A /sys/fs/cgroup made of `files` (paths under it) and a /proc/self/cgroup of `proc`."""
    root = tmp_path / "cgroup"
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    (tmp_path / "self").write_text(proc)
    monkeypatch.setattr(resources, "CGROUP", root)
    monkeypatch.setattr(resources, "PROC_CGROUP", tmp_path / "self")
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(16)), raising=False)
    meminfo = tmp_path / "meminfo"
    meminfo.write_text("MemTotal:       64000000 kB\nMemAvailable:   50000000 kB\n")
    real_open = open
    monkeypatch.setattr("builtins.open", lambda f, *a, **k: real_open(meminfo if f == "/proc/meminfo" else f, *a, **k))


V2 = {"cgroup.controllers": "cpu memory\n"}


@pytest.mark.parametrize(
    "cpu_max, cores",
    [("200000 100000\n", 2), ("150000 100000\n", 2), ("50000 100000\n", 1), ("max 100000\n", 16), ("800000 100000", 8)],
)
def test_v2_cpu_max_caps_the_cores(tmp_path, monkeypatch, cpu_max, cores):
    fake(tmp_path, monkeypatch, "0::/app\n", {**V2, "app/cpu.max": cpu_max})
    assert resources.cores() == cores


def test_v2_memory_is_the_limit_less_what_is_used_at_the_tightest_level(tmp_path, monkeypatch):
    files = {
        **V2,
        "memory.max": "max\n",
        "app/memory.max": str(4 << 30),  # docker --memory 4g
        "app/memory.current": str(1 << 30),
        "app/job/memory.max": "max\n",
        "app/job/memory.current": str(1 << 30),
    }
    fake(tmp_path, monkeypatch, "0::/app/job\n", files)
    assert resources.available_memory() == 3 << 30
    files["app/memory.max"] = str(64 << 30)  # a limit above MemAvailable: MemAvailable
    fake(tmp_path, monkeypatch, "0::/app/job\n", files)
    assert resources.available_memory() == 50000000 * 1024


def test_v2_in_a_cgroup_namespace_reads_the_root(tmp_path, monkeypatch):
    files = {**V2, "cpu.max": "300000 100000\n", "memory.max": "1000", "memory.current": "1"}
    fake(tmp_path, monkeypatch, "0::/\n", files)
    assert resources.cores() == 3 and resources.available_memory() == 999


def test_v1_quota_and_memory_limit(tmp_path, monkeypatch):
    proc = "5:memory:/docker/abc\n4:cpu,cpuacct:/docker/abc\n0::/\n"
    files = {
        "cpu/docker/abc/cpu.cfs_quota_us": "250000\n",
        "cpu/docker/abc/cpu.cfs_period_us": "100000\n",
        "memory/docker/abc/memory.limit_in_bytes": str(2 << 30),
        "memory/docker/abc/memory.usage_in_bytes": str(512 << 20),
        "memory/memory.limit_in_bytes": "9223372036854771712\n",  # v1's "no limit"
    }
    fake(tmp_path, monkeypatch, proc, files)
    assert resources.cores() == 3 and resources.available_memory() == (2 << 30) - (512 << 20)


def test_v1_without_limits_and_no_cgroups_at_all(tmp_path, monkeypatch):
    files = {"cpu/cpu.cfs_quota_us": "-1\n", "cpu/cpu.cfs_period_us": "100000\n"}
    fake(tmp_path, monkeypatch, "4:cpu,cpuacct:/\n", files)
    assert resources.cores() == 16 and resources.available_memory() == 50000000 * 1024
    monkeypatch.setattr(resources, "PROC_CGROUP", tmp_path / "missing")
    assert resources.cgroup_cores() is None and resources.cgroup_memory() is None


def test_the_memory_check_refuses_by_the_containers_memory(tmp_path, monkeypatch):
    from seqtool.errors import SeqtoolError
    from seqtool.limits import fits_in_memory

    fake(tmp_path, monkeypatch, "0::/\n", {**V2, "memory.max": str(4 << 30), "memory.current": "0"})
    fits_in_memory(3 << 30, "the run")
    with pytest.raises(SeqtoolError, match="needs about 5 GB of memory and 4 GB is available"):
        fits_in_memory(5 << 30, "the run")


@pytest.mark.parametrize(
    "proc, files",
    [
        ("0::/\n", {**V2, "cpu.max": "abc 100000.0\n", "memory.max": "x"}),
        ("0::/\n", {**V2, "cpu.max": "9" * 400 + " 100000\n"}),
        ("0::/" + "a/" * 3000 + "\n", V2),
        ("\xff\xfe:::\n", V2),
    ],
    ids=["not-numbers", "huge-quota", "long-path", "odd-bytes"],
)
def test_a_strange_cgroup_is_no_limit_not_a_crash(tmp_path, monkeypatch, proc, files):
    fake(tmp_path, monkeypatch, proc, files)
    assert resources.cores() == 16 and resources.available_memory() == 50000000 * 1024


def test_the_file_cache_a_cgroup_counts_is_not_used_memory(tmp_path, monkeypatch):
    stat = "anon 1000\nfile 3000000000\ninactive_file 2000000000\nactive_file 1000000000\n"
    files = {**V2, "memory.max": str(4 << 30), "memory.current": str((4 << 30) - 50_000_000), "memory.stat": stat}
    fake(tmp_path, monkeypatch, "0::/\n", files)
    assert resources.available_memory() == 2_000_000_000 + 50_000_000
