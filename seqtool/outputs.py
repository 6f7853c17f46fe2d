"""Where output goes: checked before any work, and written without harming what is there.

- A regular file, a new path, or a symlink to either: written to a temporary file beside
  the file it names, flushed to disk, then renamed onto it (`os.replace`), so a reader
  never sees half a file and a failed write leaves the old one.
- The process's own descriptors (`/dev/stdout`, `/dev/stderr`, `/dev/fd/N`, a process
  substitution): written through that descriptor, in order with what else goes there.
- Anything else (a character device such as /dev/null, a FIFO, a socket): opened and
  written in place, streaming, never replaced.
- `-`: standard output.

A replaced file keeps its permissions (and owner, where allowed); a file this process may
not write is refused, as the shell would. Temporary files are named
`.NAME.HOST.PID-XXXXXXXX.tmp`. They are removed on every exit path (an exception, Ctrl-C,
SIGTERM: the CLI turns SIGTERM into an exception); one (file or folder) left by a killed
process of this host is removed by the next write to the same path once its process is
gone, and at once by `tidy` where a parent outlives the writer (the `--nproc` launcher).
`check` looks at all the outputs of a command at once; `writer_lock` gives one writer
per checkpoint. A training log grows in place instead (`open_growing`), to be followed. A
new folder (a table folder) is written whole beside its place and renamed onto it
(`new_folder`).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import re
import shutil
import socket
import stat
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from seqtool.errors import RunFailed, SeqtoolError

_STD = {"/dev/stdin": 0, "/dev/stdout": 1, "/dev/stderr": 2}
_FD = re.compile(r"/(?:dev/fd|proc/(self|thread-self|\d+)/fd)/(\d+)")
_TEMP = re.compile(r"\.(?P<name>.+)\.(?P<host>[\w-]+)\.(?P<pid>\d+)-[0-9a-f]{8}\.tmp")
_HOST = re.sub(r"[^\w-]", "-", socket.gethostname())[:32] or "host"


@dataclass(frozen=True)
class Target:
    """Where an output path leads. `path` is what is written: the file a symlink names, or
    the device or pipe itself; `fd` is set for the process's own descriptors."""

    given: str
    path: Path
    in_place: bool = False  # written through, never replaced
    fd: int | None = None
    stdout: bool = False  # `-`

    @property
    def suffix(self) -> str:
        """The format-giving extension of the path as the user wrote it."""
        return Path(self.given).suffix.lower()


def target(dest: str | os.PathLike) -> Target:
    """Check where `dest` leads before any work is done: a folder, a missing or read-only
    folder, or a closed descriptor is refused with one line."""
    given = os.fspath(dest)
    if not given:
        raise SeqtoolError("an output path is empty")
    if given == "-":
        return Target(given, Path(given), in_place=True, stdout=True)
    fd, foreign = _descriptor(given)
    if fd is not None:
        try:
            os.fstat(fd)
        except OSError:
            raise SeqtoolError(f"{given}: descriptor {fd} is not open") from None
        return Target(given, Path(given), in_place=True, fd=fd)
    try:
        st = os.stat(given)
    except (FileNotFoundError, NotADirectoryError):
        st = None
    except OSError as e:
        raise SeqtoolError(f"{given}: cannot write: {e.strerror}") from None
    if st is not None and stat.S_ISDIR(st.st_mode):
        raise SeqtoolError(f"{given}: is a folder; give a file name")
    if foreign or (st is not None and not stat.S_ISREG(st.st_mode)):
        return Target(given, Path(given), in_place=True)
    real = Path(os.path.realpath(given))
    folder = (os.path.dirname(given) or ".") if real == Path(given).absolute() else str(real.parent)
    if not real.parent.is_dir():
        raise SeqtoolError(f"{given}: folder {folder} does not exist")
    if not os.access(real.parent, os.W_OK | os.X_OK):
        raise SeqtoolError(f"{given}: folder {folder} is not writable")
    if st is not None and not os.access(real, os.W_OK):
        raise SeqtoolError(f"{given}: the file is not writable (its permissions forbid it)")
    return Target(given, real)


def check(outputs: Sequence[tuple[str | os.PathLike | None, tuple[str, ...] | None, str]],
          inputs: Sequence[str | os.PathLike | None] = ()) -> None:  # fmt: skip
    """Check all the outputs of one command before any work: each (path, formats, what) is a
    place that can be written (`check_format`; formats None: any name), no two name the
    same file, and none is one of the command's `inputs` (it would be destroyed)."""
    seen: dict[tuple[int, int] | Path, str] = {}
    for dest, formats, what in outputs:
        if dest is None or os.fspath(dest) == "-":
            continue
        t = check_format(dest, formats, what) if formats else target(dest)
        if t.in_place:
            continue
        if t.path in seen:
            raise SeqtoolError(f"{seen[t.path]} and {t.given} are the same file; give each output its own")
        seen[t.path] = t.given
        if t.path.exists():
            seen[_identity(t.path)] = t.given
    for source in inputs:
        if not isinstance(source, (str, os.PathLike)) or os.fspath(source) in ("", "-"):
            continue  # stdin, or a table in memory
        with contextlib.suppress(OSError):
            given = seen.get(_identity(Path(source)))
            if given is not None:
                raise SeqtoolError(f"{given} is also an input of this command ({source}); write to another file")
            if Path(source).is_dir():  # a table folder: nothing may be written into it
                inside = [g for p, g in seen.items() if isinstance(p, Path) and Path(source).resolve() in p.parents]
                if inside:
                    raise SeqtoolError(f"{inside[0]} is inside {source}, an input of this command; write elsewhere")


def _identity(path: Path) -> tuple[int, int]:
    st = os.stat(path)
    return st.st_dev, st.st_ino


def check_format(dest: str | os.PathLike | None, formats: tuple[str, ...], what: str) -> Target | None:
    """`target`, plus: a file's extension must be one of `formats`. A device, pipe or
    descriptor takes the first format unless its name has one of them."""
    if dest is None or os.fspath(dest) == "-":
        return None
    t = target(dest)
    if t.suffix not in formats and not t.in_place:
        shown = t.suffix or "(no extension)"
        raise SeqtoolError(f"{t.given}: unknown {what} format {shown!r}; use {' or '.join(formats)}")
    return t


def to_stdout(dest: str | os.PathLike) -> bool:
    """Whether writing `dest` writes this process's standard output (`-`, /dev/stdout, ...)."""
    t = target(dest)
    return t.stdout or t.fd == 1


def is_device(t: Target) -> bool:
    """A character device (such as /dev/null), written in place."""
    return t.in_place and t.fd is None and not t.stdout and stat.S_ISCHR(os.stat(t.path).st_mode)


def format_of(t: Target, formats: tuple[str, ...]) -> str:
    return t.suffix if t.suffix in formats else formats[0]


@contextlib.contextmanager
def open_output(dest: str | os.PathLike | Target) -> Iterator[BinaryIO]:
    """A binary file to write `dest` through: atomic for files, in place for the rest.
    A failed write (a full disk, a device that refuses) is a failed run: exit 1, one line."""
    t = dest if isinstance(dest, Target) else target(dest)
    if t.in_place:
        with write_errors(t.given), _through(t) as f:
            yield f
        return
    _remove_stale(t.path)
    tmp = _temporary(t.path)
    try:
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)  # the umask applies
        except OSError as e:
            raise SeqtoolError(f"{t.given}: cannot write: {e.strerror}") from None
        _keep_mode_and_owner(fd, t.path)
        with write_errors(t.given, "; the previous file is untouched" if t.path.exists() else ""):
            with os.fdopen(fd, "wb") as f:
                yield f
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, t.path)
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)


@contextlib.contextmanager
def new_folder(dest: str | os.PathLike) -> Iterator[Path]:
    """A new folder at `dest`: the files go into a temporary folder beside it, renamed onto
    `dest` at the end, so a failure (exit 1 for a failed write) leaves nothing."""
    dest = Path(dest)
    with scratch_folder(dest) as tmp, write_errors(str(dest)):
        yield tmp
        os.replace(tmp, dest)


@contextlib.contextmanager
def scratch_folder(path: Path) -> Iterator[Path]:
    """A temporary folder named after `path`, removed at the end (or, if this process is
    killed, by the next one)."""
    _remove_stale(path)
    tmp = _temporary(path)
    try:
        tmp.mkdir()
    except OSError as e:
        raise SeqtoolError(f"{path}: cannot write: {e.strerror or e}") from None
    try:
        yield tmp
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _temporary(path: Path) -> Path:
    return path.parent / f".{path.name}.{_HOST}.{os.getpid()}-{os.urandom(4).hex()}.tmp"


@contextlib.contextmanager
def _through(t: Target) -> Iterator[BinaryIO]:
    """Standard output, a descriptor of ours, or a device or pipe opened in place."""
    if t.stdout:
        sys.stdout.flush()
        yield sys.stdout.buffer
        sys.stdout.buffer.flush()
    elif t.fd is not None:
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                stream.flush()
        with _closing(os.fdopen(os.dup(t.fd), "wb")) as f:
            yield f
    else:
        try:
            f = open(t.path, "wb")  # noqa: SIM115 (closed by `_closing` below; only open's errors are caught here)
        except OSError as e:
            raise SeqtoolError(f"{t.given}: cannot write: {e.strerror}") from None
        with _closing(f):
            yield f


@contextlib.contextmanager
def _closing(f: BinaryIO) -> Iterator[BinaryIO]:
    """Close `f` at the end; after a failure, quietly: the close would write its buffer,
    fail again, and hide the first error behind a second."""
    try:
        yield f
    except BaseException:
        with contextlib.suppress(OSError):
            f.close()
        raise
    f.close()


@contextlib.contextmanager
def write_errors(name: str, note: str = "") -> Iterator[None]:
    """An OSError while writing `name` (a full disk, a device that refuses) is a failed
    run: RunFailed, exit 1, one line. A closed pipe stays a closed pipe (exit 0)."""
    try:
        yield
    except BrokenPipeError:
        raise
    except OSError as e:
        raise RunFailed(f"{name}: cannot write: {e.strerror or e}{note}") from e


def _keep_mode_and_owner(fd: int, path: Path) -> None:
    """A replaced file keeps its permission bits, and its owner where this process may set it."""
    try:
        st = os.stat(path)
    except OSError:
        return
    with contextlib.suppress(OSError):
        os.fchmod(fd, stat.S_IMODE(st.st_mode))
    if (st.st_uid, st.st_gid) != (os.getuid(), os.getgid()):
        with contextlib.suppress(OSError):
            os.fchown(fd, st.st_uid, st.st_gid)


@contextlib.contextmanager
def open_growing(dest: str | os.PathLike) -> Iterator[BinaryIO]:
    """A binary file that grows while it is read (a training log followed with `tail -f`):
    a file is truncated and written in place, not replaced; a device or pipe is written
    through. The one exception to writing files atomically."""
    t = target(dest)
    if t.in_place:
        with write_errors(t.given), _through(t) as f:
            yield f
        return
    try:
        f = open(t.path, "wb")  # noqa: SIM115 (closed by `_closing` below; only open's errors are caught here)
    except OSError as e:
        raise SeqtoolError(f"{t.given}: cannot write: {e.strerror}") from None
    with write_errors(t.given), _closing(f):
        yield f


def write_json(dest: str | os.PathLike, doc: dict) -> None:
    """Write a small JSON document (metrics, a summary). JSON has no inf or NaN: they are null."""

    def plain(v):
        if isinstance(v, dict):
            return {k: plain(x) for k, x in v.items()}
        if isinstance(v, (list, tuple)):
            return [plain(x) for x in v]
        return None if isinstance(v, float) and not (v == v and abs(v) != float("inf")) else v

    with open_output(dest) as f:
        f.write((json.dumps(plain(doc), indent=2, allow_nan=False) + "\n").encode("utf-8"))


@contextlib.contextmanager
def writer_lock(dest: str | os.PathLike) -> Iterator[None]:
    """One writer per file: an advisory lock on `.NAME.lock` beside it, held while the body
    runs and removed after. A second writer is refused at once with the holder's pid.

    The lock file is removed while locked; a locker checks that the file it locked is still
    the one at the path, so removal never lets two writers in. A device or pipe is not locked.
    """
    t = target(dest)
    if t.in_place:
        yield
        return
    lock = t.path.parent / f".{t.path.name}.lock"
    while True:
        try:  # never through a link, never a FIFO or device: a lock is a plain file of ours
            fd = os.open(lock, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK, 0o666)
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode) or st.st_nlink != 1:
                os.close(fd)
                raise OSError(errno.EEXIST, "not a plain file")
        except OSError as e:
            raise SeqtoolError(f"{t.given}: cannot lock: {lock} is {_what_is(e)}; remove it") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            holder = os.read(fd, 32).decode(errors="replace").strip() or "?"
            os.close(fd)
            if e.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                raise SeqtoolError(f"{t.given}: cannot lock: {e.strerror}") from None
            raise SeqtoolError(
                f"{t.given}: another seqtool (pid {holder}) is writing this file; "
                f"wait for it to finish or choose another output"
            ) from None
        try:
            if os.fstat(fd).st_ino == os.stat(lock).st_ino:
                break
        except FileNotFoundError:
            pass
        os.close(fd)  # removed by its last holder after we opened it: try again
    try:
        with write_errors(t.given):
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()}\n".encode())
        yield
    finally:
        with contextlib.suppress(OSError):
            lock.unlink()
        os.close(fd)


def _what_is(e: OSError) -> str:
    """Why a lock file cannot be used, in words."""
    if e.errno in (errno.ELOOP, errno.EEXIST):
        return "a link, or not a plain file"
    return f"not usable ({e.strerror})"


def _descriptor(path: str) -> tuple[int | None, bool]:
    """(fd, foreign): the descriptor of this process that `path` names (following symlinks),
    or whether it names another process's descriptor."""
    p = os.path.abspath(path)
    for _ in range(40):
        if p in _STD:
            return _STD[p], False
        m = _FD.fullmatch(p)
        if m:
            own = m[1] in (None, "self", "thread-self", str(os.getpid()))
            return (int(m[2]), False) if own else (None, True)
        if not os.path.islink(p):
            return None, False
        p = os.path.normpath(os.path.join(os.path.dirname(p), os.readlink(p)))
    return None, False


def tidy(dest: str | os.PathLike) -> None:
    """Remove what killed writers of `dest` left beside it (SIGKILL gives no time to clean):
    their temporary files and folders, and a lock file no one holds."""
    t = target(dest)
    if t.in_place:
        return
    path = t.path
    _remove_stale(path)
    lock = path.parent / f".{path.name}.lock"
    try:
        fd = os.open(lock, os.O_RDWR)
    except OSError:
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        if os.fstat(fd).st_ino == os.stat(lock).st_ino:  # (see writer_lock)
            lock.unlink()
    except OSError:
        pass  # held: its writer removes it
    finally:
        os.close(fd)


def _remove_stale(path: Path) -> None:
    """Remove temporary files and folders beside `path` that a process of this host, now
    gone, left."""
    try:
        names = [e.name for e in os.scandir(path.parent) if e.name.startswith(f".{path.name}.")]
    except OSError:
        return
    for name in names:
        m = _TEMP.fullmatch(name)
        if m and m["name"] == path.name and m["host"] == _HOST and not _alive(int(m["pid"])):
            stale = path.parent / name
            if stale.is_dir() and not stale.is_symlink():
                shutil.rmtree(stale, ignore_errors=True)
            else:
                with contextlib.suppress(OSError):
                    stale.unlink()


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True
    return True
