"""
The queue in front of password hashing: logins first, and a quick 503
when it is full.

Hashing is slow on purpose and runs on a few low-priority lanes (see
``server.password_pool``).  When more requests arrive than the lanes can
hash, they wait here, in priority order: logins and password checks
(people who already have an account and want in) before registrations,
and first come first served within a priority.  A request that would wait
longer than ``max_wait`` seconds, judged from how long recent jobs took, is
answered at once with 503 and a ``Retry-After`` that says when to come
back, instead of sitting in the queue until Twisted's 60-second HTTP
timeout drops it.  Registrations may fill only part of the queue
(``registration_share``), so a burst of sign-ups never keeps a login out.
"""

from __future__ import annotations

import heapq
import itertools
import math
from collections.abc import Callable
from enum import IntEnum
from typing import Any, NoReturn, TypeVar

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.python.failure import Failure

from denoisecast.errors import DenoiseCastError
from denoisecast.runtime.logs import logger

T = TypeVar("T")

#: Starts a blocking job on the hashing lanes and returns a Deferred of its result.
LaneRunner = Callable[..., "Deferred[Any]"]


class Priority(IntEnum):
    LOGIN = 0
    REGISTRATION = 1


#: Seconds a request may expect to wait before it is refused with 503.
DEFAULT_MAX_WAIT = 15.0
#: The share of the queue's room that registrations may take.
REGISTRATION_SHARE = 0.5
#: The job time assumed before any job has been timed.
INITIAL_JOB_SECONDS = 0.1
#: Weight of the newest job in the moving average of job time.
SMOOTHING = 0.2


class PasswordQueue:
    """
    @param run: starts C{fn(*args)} on a hashing lane (a thread pool of
        C{lanes} threads, or a synchronous stand-in in tests).
    """

    log = logger()

    def __init__(
        self,
        clock: IReactorTime,
        run: LaneRunner,
        lanes: int = 1,
        max_wait: float = DEFAULT_MAX_WAIT,
        registration_share: float = REGISTRATION_SHARE,
    ) -> None:
        self._clock = clock
        self._run = run
        self.lanes = lanes
        self.max_wait = max_wait
        self.registration_share = registration_share
        self.job_seconds = INITIAL_JOB_SECONDS
        self._running = 0
        self._order = itertools.count()
        self._waiting: list[tuple[int, int, Callable[..., Any], tuple[Any, ...], Deferred[Any]]] = []
        self.refused = 0

    @property
    def waiting(self) -> int:
        return len(self._waiting)

    def expected_wait(self, position: int) -> float:
        """
        Seconds until a job with C{position} queued jobs ahead of it starts,
        with every lane busy.
        """
        return (position // self.lanes + 1) * self.job_seconds

    def submit(self, priority: Priority, fn: Callable[..., T], *args: Any) -> "Deferred[T]":
        """
        Run C{fn(*args)} on a lane when its turn comes, or raise a 503
        L{DenoiseCastError} at once if that would take too long.
        """
        if self._running >= self.lanes:
            position = sum(1 for job in self._waiting if job[0] <= priority)
            limit = self.max_wait
            if priority is Priority.REGISTRATION:
                limit *= self.registration_share
            if self.expected_wait(position) > limit:
                self._refuse(priority)
        done: Deferred[T] = Deferred()
        heapq.heappush(self._waiting, (int(priority), next(self._order), fn, args, done))
        self._start_next()
        return done

    def _refuse(self, priority: Priority) -> NoReturn:
        self.refused += 1
        retry = max(1, math.ceil(self.expected_wait(self.waiting)))
        self.log.warn(
            "Password queue full: refusing a {kind} ({waiting} waiting, about {seconds:.2f} s each)",
            kind=priority.name.lower(),
            waiting=self.waiting,
            seconds=self.job_seconds,
        )
        raise DenoiseCastError(
            503,
            "busy",
            "The server is busy checking other passwords. Try again in a few seconds.",
            {"Retry-After": str(retry)},
        )

    def _start_next(self) -> None:
        while self._running < self.lanes and self._waiting:
            _, _, fn, args, done = heapq.heappop(self._waiting)
            self._running += 1
            started = self._clock.seconds()
            result = self._run(fn, *args)
            result.addBoth(self._finished, started, done)

    def _finished(self, result: Any, started: float, done: "Deferred[Any]") -> None:
        self._running -= 1
        took = self._clock.seconds() - started
        self.job_seconds += SMOOTHING * (took - self.job_seconds)
        self._start_next()
        if isinstance(result, Failure):
            done.errback(result)
        else:
            done.callback(result)
