"""One error type for everything a user can get wrong, and the exit codes (docs/errors.md)."""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import signal
import sys
import time
import traceback
import warnings
from collections.abc import Callable, Iterator

EXIT_OK = 0
EXIT_FAILED = 1  # a run that failed, e.g. training diverged
EXIT_USAGE = 2  # bad usage or bad input
EXIT_PIPE_CLOSED = 0  # the reader closed stdout (`| head`): it had what it wanted, not a failure
EXIT_INTERRUPTED = 130


class SeqtoolError(Exception):
    """A problem the user can fix: shown as one line, `seqtool: error: ...`, exit 2."""

    exit_code = EXIT_USAGE
    label = "error"  # the word after `seqtool:` on the message line


class RunFailed(SeqtoolError):
    """A run that started from good input but failed (e.g. a loss of NaN): exit 1."""

    exit_code = EXIT_FAILED


class Interrupted(SeqtoolError):
    """Stopped by SIGINT or SIGTERM: exit 130, `seqtool: stopped: ...`."""

    exit_code = EXIT_INTERRUPTED
    label = "stopped"


class PipeClosed(Exception):
    """The reader of stdout went away. Not an OSError, so that click does not turn it into exit 1."""


class Stopped(KeyboardInterrupt):
    """SIGINT or SIGTERM, raised where the program is, so that every `finally` runs (temporary
    files are removed) and the exit code is 130. A KeyboardInterrupt, so no `except
    SeqtoolError` or `except Exception` swallows it."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.name = signal.Signals(signum).name


@contextlib.contextmanager
def on_signals(handle: Callable[[int], None]) -> Iterator[None]:
    """While the body runs, SIGINT and SIGTERM call `handle(signum)`; the previous handlers
    come back after (in threads other than the main one, signals are left alone)."""
    saved = {}
    try:
        for sig in (signal.SIGINT, signal.SIGTERM):
            saved[sig] = signal.signal(sig, lambda signum, frame: handle(signum))
    except ValueError:  # not the main thread
        pass
    try:
        yield
    finally:
        for sig, old in saved.items():
            signal.signal(sig, old)


def signals_stop() -> contextlib.AbstractContextManager:
    """While the body runs, SIGINT and SIGTERM raise `Stopped` (SIGTERM would otherwise end
    the process on the spot, leaving temporary files behind)."""

    def stop(signum: int) -> None:
        raise Stopped(signum)

    return on_signals(stop)


@contextlib.contextmanager
def warnings_as_lines() -> Iterator[None]:
    """A library warning or logged message (numpy, torch, matplotlib) becomes one
    `seqtool: warning: ...` line on stderr; a library's deprecation of its own API is
    not shown, under any outer filter, unless python -W or PYTHONWARNINGS asks for it."""

    def show(message, category=None, filename=None, lineno=None, file=None, line=None):
        print(f"seqtool: warning: {' '.join(str(message).split())}", file=sys.stderr)

    class Lines(logging.Handler):  # what libraries log (matplotlib's cache folder, ...)
        def emit(self, record: logging.LogRecord) -> None:
            show(record.getMessage())

    handler = Lines(logging.WARNING)
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        with warnings.catch_warnings():
            warnings.showwarning = show
            if not sys.warnoptions and not os.environ.get("PYTHONWARNINGS"):  # for developers, who ask
                for category in (DeprecationWarning, PendingDeprecationWarning):
                    warnings.filterwarnings("ignore", category=category)
            yield
    finally:
        root.removeHandler(handler)


def guarded(run: Callable[[], object], debug: bool = False) -> int:
    """Run a command and return its exit code; each failure becomes one line on stderr.

    A traceback is shown only with `debug`. A closed stdout (`seqtool gen sine | head`)
    ends quietly with exit 0, so `set -o pipefail` scripts that take the head of a
    table keep working.
    """
    try:
        result = run()
        sys.stdout.flush()
        return result if isinstance(result, int) else EXIT_OK
    except (BrokenPipeError, PipeClosed):
        _silence_stdout()
        return EXIT_PIPE_CLOSED
    except KeyboardInterrupt as e:
        print(f"seqtool: stopped: {getattr(e, 'name', 'SIGINT')}", file=sys.stderr)
        return EXIT_INTERRUPTED
    except SeqtoolError as e:
        error, message, code, label = e, str(e), e.exit_code, e.label
    except Exception as e:
        error, label = e, "error"
        if type(e).__name__ == "NoArgsIsHelpError":  # a bare group: click's help, exit 2
            print(e.format_message(), file=sys.stderr)
            return EXIT_USAGE
        if hasattr(e, "format_message") and hasattr(e, "exit_code"):  # click's usage errors
            message, code = e.format_message().rstrip("."), e.exit_code
            ctx = getattr(e, "ctx", None)
            if ctx is not None:
                message += f" (see '{ctx.command_path} --help')"
        else:
            message, code = f"unexpected {type(e).__name__}: {e} (rerun with --debug)", EXIT_FAILED
    if debug:
        traceback.print_exception(error)
    line = f"seqtool: {label}: {' '.join(message.split())}"
    print(line, file=sys.stderr)
    _reply(line)
    return code


def _reply(line: str) -> None:
    """Under torch's launcher (torchrun, `train --nproc`) the error line also goes to this
    process's reply file, where the launcher reads why a rank failed: a rank other than 0
    has no stderr (`distributed.silence`)."""
    path = os.environ.get("TORCHELASTIC_ERROR_FILE")
    if path:
        with contextlib.suppress(OSError), open(path, "w") as f:
            json.dump({"message": line, "timestamp": int(time.time())}, f)


def _silence_stdout() -> None:
    """After EPIPE, point stdout at /dev/null so the final flush at exit cannot fail again."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError, io.UnsupportedOperation):
        pass
