"""Faults: signals at any moment, a full disk, a removed folder, hostile checkpoints, pipes."""

from __future__ import annotations

import errno
import os
import pty
import random
import signal
import subprocess
import time
from pathlib import Path

import pytest
import torch
from conftest import BIN, faulty_source, one_error_line

from seqtool.config import TrainConfig
from seqtool.data import generators
from seqtool.data.tables import write_table
from seqtool.errors import RunFailed
from seqtool.model.checkpoint import load_checkpoint
from seqtool.training.run import train

CONFIG = dict(hidden=8, steps=200, window=10, batch=16, save_every=0.0)


def data(tmp_path) -> Path:
    path = tmp_path / "sine.csv"
    write_table(generators.sine(n_series=24, length=30, seed=0), path)
    return path


def straight_then_started(tmp_path, sh, path, flags: str) -> subprocess.Popen:
    """Train straight.pt uninterrupted, then start the same run into cut.pt (to be stopped)."""
    assert sh(f"seqtool train {path} {flags} -o straight.pt -q", timeout=300).returncode == 0
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    return subprocess.Popen(["seqtool", "train", str(path), *flags.split(), "-o", "cut.pt"], cwd=tmp_path,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip


def same(a, b) -> bool:
    wa, wb = torch.load(a, weights_only=True)["weights"], torch.load(b, weights_only=True)["weights"]
    return all(torch.equal(wa[k], wb[k]) for k in wa)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_at_a_random_moment_then_resume(tmp_path, sh, sig):
    path = data(tmp_path)
    proc = straight_then_started(tmp_path, sh, path, "--hidden 16 --steps 1200 --window 10 --threads 1")
    assert proc.stderr.readline().startswith("seqtool: step")
    time.sleep(random.Random(sig).uniform(0, 0.5))
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=120)
    if proc.returncode == 0:  # it finished before the signal: nothing to resume
        assert same(tmp_path / "straight.pt", tmp_path / "cut.pt")
        return
    assert proc.returncode == 130 and err.splitlines()[-1].startswith(f"seqtool: stopped: {sig.name}")
    assert sh("seqtool train sine.csv --resume -o cut.pt -q", timeout=300).returncode == 0
    assert same(tmp_path / "straight.pt", tmp_path / "cut.pt")


def test_full_disk_keeps_the_last_good_checkpoint_and_resume_finishes(tmp_path, monkeypatch):
    path = data(tmp_path)
    train(path, tmp_path / "straight.pt", TrainConfig(**CONFIG), quiet=True)
    real_replace, calls = os.replace, []

    def full_disk(src, dst):
        calls.append(dst)
        if len(calls) == 3:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_replace(src, dst)

    monkeypatch.setattr(os, "replace", full_disk)
    with pytest.raises(RunFailed, match="No space left on device.*previous file is untouched"):
        train(path, tmp_path / "cut.pt", TrainConfig(**CONFIG), quiet=True)
    monkeypatch.setattr(os, "replace", real_replace)
    assert load_checkpoint(tmp_path / "cut.pt")["resume"]["step"] == 50  # the second save
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cut.pt", "sine.csv", "straight.pt"]
    train(path, tmp_path / "cut.pt", resume=True, quiet=True)
    assert same(tmp_path / "straight.pt", tmp_path / "cut.pt")


@pytest.mark.parametrize(("name", "patience", "last"), [("log.csv", 0, False), ("log.npz", 0, False),
                                                     ("log.csv", 0, True), ("log.csv", 1, True)])  # fmt: skip
def test_a_log_that_can_no_longer_be_written_saves_the_run_and_resume_ends_it_as_it_would_have(
    tmp_path, monkeypatch, name, patience, last
):
    """A full disk met by the growing --log (a CSV appended to, or an npz rewritten) ends the
    run with exit 1, as a signal would: saved at that step, resumable, to the same end, at
    the last step or the one where --patience stops the run too."""
    from seqtool.data import tables
    from seqtool.training import report

    path, cut = data(tmp_path), tmp_path / "cut.pt"
    config = TrainConfig(**CONFIG, patience=patience)
    straight = train(path, tmp_path / "straight.pt", config, quiet=True)
    fail_at = straight.steps if last else 75
    written = report.csv_text if name.endswith(".csv") else tables.write_table
    calls = []

    def full_disk(*args, **kwargs):
        calls.append(1)
        if len(calls) == fail_at // 25 + 1:  # the rows already there, then one row each 25 steps
            raise OSError(errno.ENOSPC, "No space left on device")
        return written(*args, **kwargs)

    monkeypatch.setattr(report, "csv_text" if name.endswith(".csv") else "write_table", full_disk)
    with pytest.raises(RunFailed) as e:
        train(path, cut, config, log=tmp_path / name, quiet=True)
    assert str(e.value) == (
        f"{tmp_path / name}: cannot write: No space left on device; saved a resumable checkpoint to "
        f"{cut}; continue with: seqtool train DATA --resume -o {cut}"
    )
    assert load_checkpoint(cut)["resume"]["step"] == fail_at
    monkeypatch.undo()
    resumed = train(path, cut, resume=True, log=tmp_path / name, quiet=True)
    assert (resumed.steps, resumed.stopped, resumed.best_step) == (straight.steps, straight.stopped, straight.best_step)
    assert same(tmp_path / "straight.pt", cut)
    ckpt, whole = load_checkpoint(cut), load_checkpoint(tmp_path / "straight.pt")
    assert ckpt["resume"]["done"] and len(ckpt["history"]) == len(whole["history"])


def test_an_npz_log_whose_folder_is_removed_mid_run_saves_the_run_first(tmp_path):
    import shutil

    path, out, logs = data(tmp_path), tmp_path / "m.pt", tmp_path / "logs"
    logs.mkdir()

    def remove_folder(step, batch):
        if step == 60:
            shutil.rmtree(logs)
        return batch

    with pytest.raises(RunFailed, match=f"folder {logs} does not exist; saved a resumable checkpoint to {out};"):
        train(path, out, TrainConfig(**CONFIG), log=logs / "log.npz", quiet=True, source=faulty_source(remove_folder))
    assert load_checkpoint(out)["resume"]["step"] == 75


def test_a_log_whose_reader_goes_or_a_disk_too_full_for_the_checkpoint_too_says_so_in_one_line(tmp_path, sh):
    write_table(generators.sine(n_series=24, length=30, seed=0), tmp_path / "sine.csv")
    os.mkfifo(tmp_path / "fifo")
    run = "seqtool train sine.csv --hidden 8 --window 10 --threads 1 --steps 1500 -q"
    result = sh(f"head -c 300 fifo > /dev/null & {run} -o m.pt --log fifo")
    assert result.returncode == 1, result.stderr
    assert result.stderr.decode().splitlines() == [
        "seqtool: error: fifo: cannot write: its reader has gone (a closed pipe); saved a resumable checkpoint "
        "to m.pt; continue with: seqtool train DATA --resume -o m.pt"
    ]
    assert sh("seqtool train sine.csv --resume -q -o m.pt").returncode == 0
    result = sh(f"ulimit -f 4; {run} -o full.pt --log full.csv")
    assert result.returncode == 1, result.stderr
    assert result.stderr.decode().splitlines() == [
        "seqtool: error: full.csv: cannot write: File too large; the run could not be saved either: full.pt: "
        "cannot write: File too large"
    ]
    assert not (tmp_path / "full.pt").exists()


@pytest.mark.parametrize(
    "command",
    ["train sine.csv --hidden 64 --steps 2 -o out", "convert sine.csv -o out", "convert ids.csv -o out"],
)
def test_a_write_that_fails_is_a_failed_run_in_one_line_whoever_writes(tmp_path, sh, command):
    """A full disk, met by torch's checkpoint writer or by convert's folder (its values, or
    its series names: 300 long ids): exit 1, one line naming the output, nothing left. (A
    file size limit fails writes as a full disk does.)"""
    if "ids" in command:
        ids = [f"{'s' * 36}{s:04d}" for s in range(300)]
        (tmp_path / "ids.csv").write_text("series,t,x\n" + "".join(f"{i},{t},{t}\n" for i in ids for t in (0, 1)))
    else:
        write_table(generators.sine(n_series=64, length=50, seed=0), tmp_path / "sine.csv")
    result = sh(f"ulimit -f 16; seqtool {command}")
    assert result.returncode == 1, result.stderr
    assert result.stderr.decode().splitlines()[-1] == "seqtool: error: out: cannot write: File too large"
    assert sorted(p.name for p in tmp_path.iterdir()) == [command.split()[1]]


def test_output_folder_removed_mid_run(tmp_path):
    import shutil

    path = data(tmp_path)
    out = tmp_path / "runs" / "m.pt"
    out.parent.mkdir()

    def remove_folder(step, batch):
        if step == 60:
            shutil.rmtree(out.parent)
        return batch

    train(path, out, TrainConfig(**CONFIG), quiet=True, source=faulty_source(remove_folder))
    assert load_checkpoint(out)["resume"]["step"] == 200


def test_hostile_checkpoints_are_refused(tmp_path, cli):
    path = data(tmp_path)
    (tmp_path / "random.pt").write_bytes(random.Random(0).randbytes(5000))
    one_error_line(cli("predict", tmp_path / "random.pt", path), "random.pt", "not a seqtool checkpoint")
    torch.save({"format": "something-else", "version": 1}, tmp_path / "other.pt")
    one_error_line(cli("rollout", tmp_path / "other.pt", path), "not a seqtool checkpoint")
    torch.save([1, 2, 3], tmp_path / "list.pt")
    one_error_line(cli("gradnorm", tmp_path / "list.pt", path), "not a seqtool checkpoint")


def test_train_without_input_on_a_terminal_says_what_it_waits_for(tmp_path):
    parent, child = pty.openpty()
    try:
        result = subprocess.run([BIN / "seqtool", "train"], stdin=child, capture_output=True, timeout=60, cwd=tmp_path)
    finally:
        os.close(parent)
        os.close(child)
    one_error_line(result, "no input", "give a table file, or pipe one in")


def test_a_slow_reader_that_stops_early_ends_quietly(sh):
    result = sh("seqtool gen sine --n-series 20000 | (sleep 1; head -1); echo ${PIPESTATUS[0]} >&2")
    assert result.stdout.decode() == "series,t,x\n"
    assert result.stderr.decode() == "0\n"


def test_a_slow_reader_gets_every_row(sh):
    result = sh("seqtool gen sine --n-series 2000 | (sleep 1; cat) | wc -l; echo ${PIPESTATUS[0]} >&2")
    assert result.stdout.decode().strip() == str(1 + 2000 * 50)
    assert result.stderr.decode() == "0\n"


def test_closed_stdout_at_any_point(sh):
    for lines in (1, 7, 300, 5000):
        result = sh(f"seqtool gen adding -n 500 | head -{lines} > /dev/null; echo ${{PIPESTATUS[0]}} >&2")
        assert result.stderr.decode() == "0\n", lines


def _signal_during_the_final_save(monkeypatch, times: int):
    """torch.save of the final checkpoint (done=True) gets `times` SIGTERMs, then writes."""
    real = torch.save

    def save(obj, f, *args, **kwargs):
        if obj.get("resume", {}).get("done"):
            for _ in range(times):
                os.kill(os.getpid(), signal.SIGTERM)
        return real(obj, f, *args, **kwargs)

    monkeypatch.setattr(torch, "save", save)


def test_sigterm_during_the_final_save_keeps_the_finished_run_and_exits_130(tmp_path, monkeypatch):
    """The failing case: SIGTERM during the final save exited 143 with no message and lost
    the finished run. Now the save completes, then the run stops with exit 130."""
    from seqtool.errors import Interrupted

    path = data(tmp_path)
    _signal_during_the_final_save(monkeypatch, times=1)
    with pytest.raises(Interrupted, match="SIGTERM as the run ended: the finished run is saved") as stop:
        train(path, tmp_path / "m.pt", TrainConfig(**CONFIG), quiet=True)
    assert stop.value.exit_code == 130
    saved = load_checkpoint(tmp_path / "m.pt")["resume"]
    assert saved["done"] and saved["step"] == 200
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.pt", "sine.csv"]


def test_a_second_sigterm_abandons_the_final_save_and_keeps_the_previous_file(tmp_path, monkeypatch):
    from seqtool.errors import Stopped

    path = data(tmp_path)
    train(path, tmp_path / "m.pt", TrainConfig(**{**CONFIG, "steps": 50}), quiet=True)
    before = (tmp_path / "m.pt").read_bytes()
    _signal_during_the_final_save(monkeypatch, times=2)
    with pytest.raises(Stopped):
        train(path, tmp_path / "m.pt", TrainConfig(**{**CONFIG, "save_every": 3600.0}), quiet=True)
    assert (tmp_path / "m.pt").read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.pt", "sine.csv"]


def test_sigterm_as_a_real_run_ends(tmp_path, sh):
    """SIGTERM when the last progress line appears, around the final save: exit 0 or 130 with a
    message, never 143; the checkpoint is the finished run; no temporary file stays."""
    path = data(tmp_path)
    proc = straight_then_started(tmp_path, sh, path, "--hidden 16 --steps 400 --window 10 --threads 1")
    while not proc.stderr.readline().startswith("seqtool: step 400/400"):
        pass
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode in (0, 130), err
    if proc.returncode == 130:
        assert err.splitlines()[-1].startswith("seqtool: stopped: SIGTERM"), err
    assert same(tmp_path / "straight.pt", tmp_path / "cut.pt")
    assert not [p for p in tmp_path.iterdir() if p.name.endswith((".tmp", ".lock"))]


def test_what_libraries_log_reaches_stderr_as_one_line_each(tmp_path, sh):
    """matplotlib logs (not warns) when its cache folder cannot be made: those lines too
    come as `seqtool: warning: ...`, in a fresh process (matplotlib logs at import)."""
    write_table(generators.sine(n_series=2, length=20, seed=0), tmp_path / "s.csv")
    (tmp_path / "file").write_text("")
    result = sh("MPLCONFIGDIR=file/cache seqtool plot s.csv -o s.png")
    assert result.returncode == 0 and result.stdout.decode() == "s.png\n"
    lines = result.stderr.decode().splitlines()
    assert lines and all(line.startswith("seqtool: warning: ") for line in lines), lines
