"""Write files atomically, so an interrupted write never leaves a truncated file behind."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

from .errors import RunFailed, SeqtoolError


@contextlib.contextmanager
def atomic_path(dest: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside `dest`; on success it replaces `dest` in one step.

    On any failure the temporary file is removed and `dest` (if it existed) is untouched.
    """
    dest = Path(dest)
    folder = dest.parent if str(dest.parent) else Path(".")
    if not folder.is_dir():
        raise SeqtoolError(f"{dest}: folder {folder} does not exist")
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".tmp", dir=folder)
    except OSError as e:
        raise SeqtoolError(f"{dest}: cannot write: {e.strerror}") from e
    os.close(fd)
    tmp_path = Path(tmp)
    os.chmod(tmp_path, 0o666 & ~_umask())  # mkstemp makes 0600; a file written here should not be
    try:
        yield tmp_path
        os.replace(tmp_path, dest)
    except OSError as e:
        tmp_path.unlink(missing_ok=True)
        raise RunFailed(f"{dest}: cannot write: {e.strerror or e}; the previous file is untouched") from e
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise


def write_text(dest: str | os.PathLike, text: str) -> None:
    """Write a small text file (a JSON summary) atomically."""
    with atomic_path(dest) as tmp:
        tmp.write_text(text)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
