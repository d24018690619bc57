"""
Ordered work on a shared thread pool.

Several things keep per-object order while sharing a few threads: each
recording's file writes, each broadcast's Opus encoding.  A pool thread
drains one object's queue at a time, so two jobs of the same object never
run at once and never out of order, while different objects' jobs run side
by side.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorFromThreads
from twisted.python.threadpool import ThreadPool


class SerialJobs:
    """
    Runs callables on a shared thread pool one after another, in order.
    """

    def __init__(self, pool: ThreadPool) -> None:
        self._pool = pool
        self._jobs: deque[Callable[[], None]] = deque()
        self._lock = threading.Lock()
        self._running = False
        self.failure: BaseException | None = None

    def submit(self, job: Callable[[], None]) -> None:
        with self._lock:
            self._jobs.append(job)
            if self._running:
                return
            self._running = True
        self._pool.callInThread(self._drain)

    def _drain(self) -> None:
        while True:
            with self._lock:
                if not self._jobs:
                    self._running = False
                    return
                job = self._jobs.popleft()
            try:
                job()
            except BaseException as error:  # kept for finish() to report
                self.failure = error

    def flushed(self, reactor: IReactorFromThreads) -> "Deferred[None]":
        """
        Fires on the reactor thread once every job submitted so far has run.

        A marker job at the end of the queue, so nothing holds a pool thread
        while waiting (a pool thread blocked waiting is one fewer to run the
        jobs it waits for).
        """
        done: Deferred[None] = Deferred()
        self.submit(lambda: reactor.callFromThread(done.callback, None))
        return done
