"""Outputs respect what is there: files are replaced atomically, devices, pipes and
descriptors are written through, temporary files never stay, one writer per checkpoint."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import threading
import time
from pathlib import Path

import pytest
from conftest import BIN, one_error_line

from seqtool.model.checkpoint import load_checkpoint
from seqtool.outputs import _HOST, writer_lock


@pytest.fixture(scope="module")
def work(small_model):
    return small_model


@pytest.fixture
def null_device(tmp_path) -> Path:
    """A character device that discards what it gets: our own node of the null device where
    we may make one (root), else /dev/null itself."""
    path = tmp_path / "null"
    try:
        os.mknod(path, stat.S_IFCHR | 0o666, os.makedev(1, 3))
        path.open("wb").close()  # a folder mounted nodev refuses to open it
    except OSError:
        return Path("/dev/null")
    return path


def env() -> dict:
    return {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}


def test_a_character_device_is_written_through_and_never_replaced(work, cli, null_device):
    """The failing case: `train -o /dev/null` as root replaced the null device with a file."""
    runs = [
        ("train", work / "sine.csv", "--steps", "30", "--hidden", "8", "-q", "-o", null_device, "--log", null_device),
        ("predict", work / "m.pt", work / "sine.csv", "-q", "-o", null_device, "--metrics", null_device),
        ("rollout", work / "m.pt", work / "sine.csv", "-q", "-o", null_device),
        ("gen", "sine", "-n", "2", "-o", null_device),
        (
            "gradnorm",
            "--cell",
            "rnn",
            "--length",
            "10",
            "--batch",
            "2",
            "-q",
            "-o",
            null_device,
            "--summary",
            null_device,
        ),
        ("plot", work / "sine.csv", "-o", null_device),
    ]
    for args in runs:
        result = cli(*args)
        assert result.exit_code == 0, (args, result.stderr)
        assert stat.S_ISCHR(os.stat(null_device).st_mode), args
    assert not [p for p in null_device.parent.iterdir() if p.name.endswith(".tmp")]


def test_dev_stdout_and_a_symlink_to_it_are_written_through_in_order(work, tmp_path):
    """The failing case: `--metrics /dev/stdout` replaced that symlink. The metrics come first,
    then the table, in the file the shell opened."""
    (tmp_path / "so").symlink_to("/dev/stdout")
    command = f"seqtool predict {work / 'm.pt'} {work / 'sine.csv'} -q --metrics so > both.txt"
    assert subprocess.run(command, shell=True, cwd=tmp_path, env=env()).returncode == 0
    text = (tmp_path / "both.txt").read_text()
    metrics, table = text.split("}\n", 1)
    assert json.loads(metrics + "}")["steps"] == 8 * 59
    assert table.startswith("series,t,x,yhat\n") and len(table.splitlines()) == 1 + 8 * 60
    assert (tmp_path / "so").is_symlink() and os.readlink(tmp_path / "so") == "/dev/stdout"


def test_a_named_pipe_gets_the_table_streamed(work, tmp_path):
    """The failing case: `predict -o FIFO` replaced the pipe and its reader waited forever."""
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    got = []
    reader = threading.Thread(target=lambda: got.append(fifo.read_bytes()), daemon=True)
    reader.start()
    result = subprocess.run([BIN / "seqtool", "predict", work / "m.pt", work / "sine.csv", "-q", "-o", fifo],
                            env=env(), capture_output=True, timeout=60)  # fmt: skip
    reader.join(timeout=30)
    assert result.returncode == 0, result.stderr
    assert got and got[0].startswith(b"series,t,x,yhat\n") and got[0].count(b"\n") == 1 + 8 * 60
    assert stat.S_ISFIFO(os.stat(fifo).st_mode)


def test_process_substitution_gets_a_table(tmp_path):
    command = "seqtool gen sine -n 2 -o >(wc -l > lines.tmp && mv lines.tmp lines.txt)"
    assert subprocess.run(["bash", "-c", command], cwd=tmp_path, env=env()).returncode == 0
    deadline = time.monotonic() + 60  # bash does not wait for the substituted process
    while not (tmp_path / "lines.txt").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert (tmp_path / "lines.txt").read_text().strip() == str(1 + 2 * 50)


def test_a_symlink_to_a_file_stays_and_the_file_it_names_is_replaced(tmp_path, cli):
    real = tmp_path / "real.csv"
    real.write_text("old\n")
    (tmp_path / "link.csv").symlink_to("real.csv")
    assert cli("gen", "sine", "-n", "1", "-o", tmp_path / "link.csv").exit_code == 0
    assert (tmp_path / "link.csv").is_symlink() and real.read_text().startswith("series,t,x\n")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["link.csv", "real.csv"]


def test_a_temporary_file_of_a_killed_process_is_removed_by_the_next_write(tmp_path, cli):
    """SIGKILL in the middle of a write leaves its temporary file; the next write to the same
    path removes it, and leaves one of a process still alive."""
    proc = subprocess.Popen([BIN / "seqtool", "gen", "sine", "-n", "40000", "-o", tmp_path / "big.csv"], env=env())
    deadline = time.monotonic() + 60
    while not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]:
        assert proc.poll() is None and time.monotonic() < deadline, "the write ended before it was seen"
        time.sleep(0.005)
    proc.kill()
    proc.wait()
    stale = [p.name for p in tmp_path.iterdir()]
    assert len(stale) == 1 and stale[0].startswith(f".big.csv.{_HOST}.{proc.pid}-"), stale
    alive = tmp_path / f".big.csv.{_HOST}.{os.getpid()}-0123abcd.tmp"  # a write of ours, still going on
    elsewhere = tmp_path / f".big.csv.other-host.{proc.pid}-0123abcd.tmp"  # a shared folder: not ours to judge
    alive.write_text("")
    elsewhere.write_text("")
    assert cli("gen", "sine", "-n", "1", "-o", tmp_path / "big.csv").exit_code == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([alive.name, elsewhere.name, "big.csv"])


def test_sigterm_during_a_write_removes_the_temporary_file_and_keeps_the_old_file(tmp_path):
    (tmp_path / "big.csv").write_text("old\n")
    proc = subprocess.Popen([BIN / "seqtool", "gen", "sine", "-n", "40000", "-o", tmp_path / "big.csv"],
                            env=env(), stderr=subprocess.PIPE, text=True)  # fmt: skip
    deadline = time.monotonic() + 60
    while not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]:
        assert proc.poll() is None and time.monotonic() < deadline, "the write ended before it was seen"
        time.sleep(0.005)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130 and err.strip() == "seqtool: stopped: SIGTERM"
    assert [p.name for p in tmp_path.iterdir()] == ["big.csv"] and (tmp_path / "big.csv").read_text() == "old\n"


def test_a_second_writer_of_a_checkpoint_is_refused(work, tmp_path, cli):
    """The failing case: two `train -o same.pt` at once both succeeded; the last silently won."""
    out = tmp_path / "m.pt"
    with writer_lock(out):
        result = cli("train", work / "sine.csv", "--steps", "30", "--hidden", "8", "-o", out)
        one_error_line(result, "m.pt: another seqtool", f"pid {os.getpid()}", "is writing this file")
    assert not out.exists()
    assert cli("train", work / "sine.csv", "--steps", "30", "--hidden", "8", "-q", "-o", out).exit_code == 0
    assert load_checkpoint(out)["resume"]["step"] == 30
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.pt"]  # the lock file goes with its holder


@pytest.mark.parametrize("kind", ["symlink", "hard link", "fifo"])
def test_a_lock_file_that_is_not_a_plain_file_of_its_own_is_refused_and_left(work, tmp_path, cli, kind):
    """A link at `.NAME.lock` was followed (the pid written over the file it named); a FIFO
    ended in an unexpected error and was removed."""
    precious = tmp_path / "precious.txt"
    precious.write_text("data\n")
    lock = tmp_path / ".m.pt.lock"
    {"symlink": lambda: lock.symlink_to(precious), "hard link": lambda: os.link(precious, lock),
     "fifo": lambda: os.mkfifo(lock)}[kind]()  # fmt: skip
    result = cli("train", work / "sine.csv", "--steps", "3", "--hidden", "4", "-o", tmp_path / "m.pt")
    one_error_line(result, "m.pt: cannot lock:", ".m.pt.lock is a link, or not a plain file; remove it")
    assert precious.read_text() == "data\n" and os.path.lexists(lock) and not (tmp_path / "m.pt").exists()


def test_a_second_train_process_is_refused_while_the_first_runs(work, tmp_path):
    first = subprocess.Popen([BIN / "seqtool", "train", work / "sine.csv", "--steps", "100000", "--hidden", "8",
                              "-o", tmp_path / "m.pt"], env=env(), stderr=subprocess.PIPE, text=True)  # fmt: skip
    try:
        assert first.stderr.readline().startswith("seqtool: step")
        second = subprocess.run([BIN / "seqtool", "train", work / "sine.csv", "-o", tmp_path / "m.pt"],
                                env=env(), capture_output=True, text=True, timeout=60)  # fmt: skip
        one_error_line(second, "m.pt: another seqtool", f"pid {first.pid}")
    finally:
        first.send_signal(signal.SIGTERM)
        first.communicate(timeout=60)
    assert first.returncode == 130
    assert load_checkpoint(tmp_path / "m.pt")["resume"]["step"] > 0


@pytest.mark.parametrize(
    "args, fragments",
    [
        (["train", "DATA", "-o", "FOLDER"], ["is a folder"]),
        (["train", "DATA", "--log", "train.log"], ["train.log: unknown table format '.log'"]),
        (["train", "DATA", "-o", "missing/m.pt"], ["folder missing does not exist"]),
        (["train", "DATA", "-o", "same.csv", "--log", "same.csv"], ["same file"]),
        (["predict", "MODEL", "DATA", "-o", "FOLDER"], ["is a folder"]),
        (["predict", "MODEL", "DATA", "-o", "p.csv", "--metrics", "p.csv"], ["same file"]),
        (["rollout", "MODEL", "DATA", "--metrics", "FOLDER"], ["is a folder"]),
        (["gradnorm", "--summary", "FOLDER"], ["is a folder"]),
        (["gen", "sine", "-o", "x.txt"], ["unknown table format '.txt'"]),
        (["plot", "DATA", "--outdir", "DATA"], ["--outdir", "is a file, not a folder"]),
        (["plot", "DATA", "-o", "FOLDER"], ["is a folder"]),
    ],
)
def test_outputs_are_checked_before_any_work(work, tmp_path, cli, monkeypatch, args, fragments):
    """The failing cases: `-o FOLDER` and `--log train.log` trained the whole run first. The
    data named here does not exist: the output is refused before it is looked for."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "FOLDER").mkdir()
    names = {"DATA": str(tmp_path / "absent.csv"), "MODEL": str(work / "m.pt")}
    if args[0] == "plot":
        names["DATA"] = str(work / "sine.csv")
    result = cli(*[names.get(a, a) for a in args])
    one_error_line(result, *fragments)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["FOLDER"]


@pytest.mark.parametrize(
    "args",
    [
        ["train", "DATA", "-o", "DATA"],
        ["train", "DATA", "--log", "DATA"],
        ["predict", "MODEL", "DATA", "--metrics", "MODEL"],
        ["rollout", "MODEL", "DATA", "-o", "DATA"],
        ["gradnorm", "MODEL", "DATA", "--summary", "MODEL"],
    ],
)
def test_an_output_that_is_an_input_is_refused(work, tmp_path, cli, args):
    """The failing case of a review: `predict m.pt d.csv --metrics m.pt` replaced the model
    with its metrics, `train d.csv -o d.csv` the data with a checkpoint."""
    import shutil

    shutil.copy(work / "sine.csv", tmp_path / "d.csv")
    shutil.copy(work / "m.pt", tmp_path / "m.pt")
    (tmp_path / "link.csv").symlink_to("d.csv")  # the same file under another name
    before = {p.name: p.read_bytes() for p in (tmp_path / "d.csv", tmp_path / "m.pt")}
    names = {"DATA": str(tmp_path / "d.csv"), "MODEL": str(tmp_path / "m.pt")}
    one_error_line(cli(*[names.get(a, a) for a in args]), "is also an input of this command")
    if args[0] != "gradnorm":
        via_link = [names.get(a, a) for a in args[:-1]] + [str(tmp_path / "link.csv")] if args[-1] == "DATA" else None
        if via_link:
            one_error_line(cli(*via_link), "is also an input of this command")
    assert {p.name: p.read_bytes() for p in (tmp_path / "d.csv", tmp_path / "m.pt")} == before


def test_a_replaced_file_keeps_its_permissions(tmp_path, cli):
    path = tmp_path / "private.csv"
    path.write_text("old\n")
    path.chmod(0o600)
    assert cli("gen", "sine", "-n", "1", "-o", path).exit_code == 0
    assert stat.S_IMODE(path.stat().st_mode) == 0o600 and path.read_text().startswith("series,t,x\n")


def test_a_file_the_user_may_not_write_is_refused(tmp_path, cli, monkeypatch):
    """As the shell would: `echo x > ro.csv` fails on a read-only file, so does `-o ro.csv`.
    Root may write anything: run as root, os.access answers as it would for anyone else."""
    path = tmp_path / "ro.csv"
    path.write_text("old\n")
    path.chmod(0o444)
    if os.getuid() == 0:
        real = os.access
        monkeypatch.setattr(
            os, "access", lambda p, mode, **kw: False if Path(p) == path and mode & os.W_OK else real(p, mode, **kw)
        )
    one_error_line(cli("gen", "sine", "-n", "1", "-o", path), "ro.csv: the file is not writable")
    assert path.read_text() == "old\n"


@pytest.mark.parametrize("redirect", [False, True])
def test_a_device_that_refuses_the_write_is_a_failed_run(redirect):
    """The failing case of a review: a full device ended as "unexpected OSError"."""
    command = "seqtool gen sine -n 2 -l 5 > /dev/full" if redirect else "seqtool gen sine -n 2 -l 5 -o /dev/full"
    result = subprocess.run(["bash", "-c", command], env=env(), capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        f"seqtool: error: {'<stdout>' if redirect else '/dev/full'}: cannot write: No space left on device"
    ]


def test_an_image_on_stdout_is_followed_by_nothing(work, tmp_path):
    """The failing case of a review: `plot -o -` appended the path '-' to the SVG."""
    import xml.etree.ElementTree as ET

    for output in ("-", "/dev/stdout"):
        result = subprocess.run([BIN / "seqtool", "plot", work / "sine.csv", "-o", output, "--format", "svg"],
                                env=env(), capture_output=True, timeout=60)  # fmt: skip
        assert result.returncode == 0, result.stderr
        assert ET.fromstring(result.stdout).tag.endswith("svg")


@pytest.mark.parametrize("where", ["/dev/stdout", "-", "FIFO"])
def test_a_checkpoint_goes_to_a_file_or_a_device_never_a_stream(work, tmp_path, cli, where):
    """A checkpoint is saved several times during a run: to a stream they would be
    concatenated; to a FIFO without a reader the run would wait forever."""
    if where == "FIFO":
        where = str(tmp_path / "fifo")
        os.mkfifo(where)
    one_error_line(cli("train", work / "sine.csv", "-o", where), "a checkpoint is saved several times")


def test_a_refused_plot_leaves_no_new_folder(work, tmp_path, cli, monkeypatch):
    monkeypatch.chdir(tmp_path)
    one_error_line(cli("plot", "missing.csv", "--outdir", "new/sub"), "missing.csv: no such file")
    one_error_line(cli("plot", work / "sine.csv", work / "sine.csv", "--outdir", "new"), "the same image")
    assert list(tmp_path.iterdir()) == []
    assert cli("plot", work / "sine.csv", "--outdir", "new/sub").exit_code == 0
    assert [p.name for p in (tmp_path / "new" / "sub").iterdir()] == ["sine.png"]


def test_json_has_no_infinity():
    """JSON has no inf or NaN: written as null, so every JSON reader can read the file."""
    import io
    import sys

    from seqtool.outputs import write_json

    old, sys.stdout = sys.stdout, io.TextIOWrapper(io.BytesIO())
    try:
        doc = {"mse": float("inf"), "deep": {"ratio": float("nan")}, "by_h": [{"mase": float("-inf")}, 1.5], "steps": 3}
        write_json("-", doc)
        sys.stdout.flush()
        text = sys.stdout.buffer.getvalue().decode()
    finally:
        sys.stdout = old
    strict = json.loads(text, parse_constant=lambda name: pytest.fail(f"{name} in the JSON"))
    assert strict == {"mse": None, "deep": {"ratio": None}, "by_h": [{"mase": None}, 1.5], "steps": 3}


def test_a_table_goes_to_stdout_as_utf8_whatever_the_locale(work, tmp_path):
    """As to a file: a Latin-1 terminal encoding failed with an UnicodeEncodeError (exit 1)."""
    lines = (work / "sine.csv").read_text().splitlines()
    (tmp_path / "n.csv").write_text(
        "\n".join([lines[0] + ",温度"] + [line + ",é" for line in lines[1:]]) + "\n", encoding="utf-8"
    )
    result = subprocess.run([BIN / "seqtool", "predict", work / "m.pt", tmp_path / "n.csv", "-q"],
                            env={**env(), "PYTHONIOENCODING": "latin-1"}, capture_output=True, timeout=60)  # fmt: skip
    assert result.returncode == 0, result.stderr
    out = result.stdout.decode("utf-8").splitlines()
    assert out[0] == "series,t,x,温度,yhat" and out[1].split(",")[3] == "é" and len(out) == len(lines)
