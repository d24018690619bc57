"""
The disk recordings are written to: how much room is left, and whether
writing failed.

A recording whose writes fail (the disk filled, or went read-only) stops;
the broadcast goes on.  From then until a write succeeds again, and
whenever free space is under the configured floor, new recordings are
refused with a reason and ``/api/health`` reports the disk.  The floor
exists because the SQLite database usually lives on the same disk: stopping
recordings before the disk is completely full leaves it room to finalise
their rows and to go on logging people in.
"""

from __future__ import annotations

import errno
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from twisted.internet.threads import deferToThreadPool
from twisted.python.threadpool import ThreadPool

from denoisecast.app.startup import data_directory_problem

#: Errors that mean "no room": the disk or the user's quota is full.
NO_ROOM = frozenset({errno.ENOSPC, errno.EDQUOT})


@dataclass(frozen=True)
class DiskState:
    """
    C{status} is C{ok}, C{low} (under the floor), C{full} (a write failed
    for lack of room) or C{error} (a write failed otherwise, e.g. the disk
    went read-only).
    """

    status: str
    free_bytes: int
    problem: str | None = None

    @property
    def refusal(self) -> str:
        """The reason a new recording is refused with."""
        return "disk_error" if self.status == "error" else "disk_full"


class RecordingRefused(Exception):
    """
    A new recording cannot start; C{reason} is what the broadcaster is told.
    """

    def __init__(self, reason: str, detail: str | None = None) -> None:
        super().__init__(detail or reason)
        self.reason = reason
        self.detail = detail


class DiskWatch:
    def __init__(self, directory: Path, min_free_bytes: int) -> None:
        self.directory = directory
        self.min_free_bytes = min_free_bytes
        #: C{full} or C{error} after a recording's write failed, until a probe write succeeds.
        self.failure: str | None = None

    def write_failed(self, error: BaseException) -> str:
        """
        (Reactor thread.)  A recording's write failed; returns the reason
        the recording stops with (C{disk_full} or C{disk_error}).
        """
        self.failure = "full" if getattr(error, "errno", None) in NO_ROOM else "error"
        return "disk_full" if self.failure == "full" else "disk_error"

    def too_little_room(self, free_bytes: int) -> bool:
        return free_bytes < self.min_free_bytes

    def free_bytes(self) -> int:
        """(Any thread.)  Free bytes for this user on the recordings' filesystem."""
        try:
            return shutil.disk_usage(self.directory).free
        except OSError:
            return 0

    def _thd_measure(self, failure: str | None) -> DiskState:
        free = self.free_bytes()
        if failure is not None:
            # Only a write that succeeds again clears a failed write.
            problem = data_directory_problem(self.directory)
            if problem is not None:
                return DiskState(failure, free, problem)
        if self.too_little_room(free):
            return DiskState(
                "low", free, f"{free} bytes free in {self.directory}, under the floor of {self.min_free_bytes}"
            )
        return DiskState("ok", free)

    async def measure(self, reactor: Any, pool: ThreadPool) -> DiskState:
        """
        The disk's state now (the measuring runs on C{pool}); a state of
        C{ok} clears an earlier write failure.
        """
        state: DiskState = await deferToThreadPool(reactor, pool, self._thd_measure, self.failure)
        if state.status == "ok":
            self.failure = None
        return state
