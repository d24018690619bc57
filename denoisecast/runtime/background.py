"""
Work that may wait when live audio needs the CPU.

Hashing a password takes a core for about 150 ms, on purpose.  On a small
server a burst of logins (friends arriving for a broadcast) then takes a
core away from the live path, and chunks pass through undenoised while they
last (docs/performance.md).  ``at_low_priority`` runs a job on a thread
that the kernel schedules after everything else in the process: on Linux a
thread has its own nice value, raised here by ``NICENESS`` the first time
the thread runs such a job.  Elsewhere the value belongs to the whole
process, so nothing changes there.
"""

from __future__ import annotations

import functools
import os
import sys
import threading
from collections.abc import Callable
from typing import ParamSpec, TypeVar

P = ParamSpec("P")
T = TypeVar("T")

#: How much nicer than the rest of the server a background thread is (a
#: nice-10 thread gets about a tenth of a core that a nice-0 thread wants).
NICENESS = 10

_state = threading.local()


def lower_this_thread(niceness: int = NICENESS) -> bool:
    """Make the calling thread nicer (Linux only); True if it now is."""
    if not sys.platform.startswith("linux"):
        return False
    thread = threading.get_native_id()
    try:
        current = os.getpriority(os.PRIO_PROCESS, thread)
        os.setpriority(os.PRIO_PROCESS, thread, min(19, current + niceness))
    except OSError:
        return False
    return True


def at_low_priority(job: Callable[P, T]) -> Callable[P, T]:
    """C{job}, run on a thread lowered by ``lower_this_thread`` (once per thread)."""

    @functools.wraps(job)
    def run(*args: P.args, **kwargs: P.kwargs) -> T:
        if not getattr(_state, "lowered", False):
            lower_this_thread()
            _state.lowered = True
        return job(*args, **kwargs)

    return run
