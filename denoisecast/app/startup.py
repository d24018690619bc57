"""
Fatal start-up problems: one clear line, then a non-zero exit.

A supervisor (systemd, a container runtime) only sees a server that will
never work if the process exits with a failure status; a person only knows
what to fix if one line names the path or address and the reason.  Problems
found before the reactor runs (the data directory) end the process at once
with that line on stderr; problems found once it runs (the database, the
listening port) log the line as a critical event, stop the reactor, and make
the process exit with status 1 once twistd has shut down cleanly.
"""

from __future__ import annotations

import atexit
import os
import sys
from pathlib import Path
from typing import Any

from twisted.python.failure import Failure

from denoisecast.runtime.logs import logger

#: Bytes written (and synced) to prove the data directory takes data.
PROBE_BYTES = 64 * 1024
PROBE_NAME = ".denoisecast-write-check"
EXIT_STATUS = 1


def data_directory_problem(path: Path) -> str | None:
    """
    Why C{path} cannot hold the database and recordings, or C{None}.

    The directory is created if missing, and a small file is written,
    synced and removed: that fails on a read-only or full filesystem, and
    on one where this user may not write.
    """
    probe = path / PROBE_NAME
    try:
        path.mkdir(parents=True, exist_ok=True)
        with open(probe, "wb") as handle:
            handle.write(b"\0" * PROBE_BYTES)
            handle.flush()
            os.fsync(handle.fileno())
    except OSError as error:
        reason = error.strerror or str(error)
        return f"Cannot use the data directory {path}: {reason}"
    finally:
        try:
            probe.unlink(missing_ok=True)
        except OSError:
            pass
    return None


def one_line(failure: Failure | BaseException) -> str:
    """
    The first line of an error's own message (for database errors, the
    driver's, without SQLAlchemy's background links).
    """
    error = failure.value if isinstance(failure, Failure) else failure
    error = getattr(error, "orig", None) or error
    text = str(error).strip()
    return text.splitlines()[0].strip() if text else type(error).__name__


class FatalStartup:
    """
    Called with the one line that says why the server cannot start: logs
    it, stops the reactor, and has the process exit with L{EXIT_STATUS}.

    Only the first problem is reported; the ones it causes are not.
    """

    log = logger()

    def __init__(self, reactor: Any) -> None:
        self._reactor = reactor
        self.problem: str | None = None

    def __call__(self, problem: str) -> None:
        if self.problem is not None:
            return
        self.problem = problem
        self.log.critical("Fatal: {problem}", problem=problem)
        atexit.register(_exit_with_failure)
        if self._reactor.running:
            self._reactor.stop()
        else:
            self._reactor.callWhenRunning(self._reactor.stop)


def _exit_with_failure() -> None:
    """
    Runs after twistd has returned (logs flushed, pidfile removed): the
    interpreter would exit with 0, and no public twistd hook sets the
    status, so end here with the failure status instead.
    """
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:
            pass
    os._exit(EXIT_STATUS)
