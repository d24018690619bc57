"""
Counting failures per key in a sliding window, to slow down guessing.

Kept in memory, so checking costs no round trip; with several nodes each
failure and reset is also told to the others over the live bus
(L{FailureLimiter.observers}, L{denoisecast.live.cluster.share_limits}), so
the limits hold across nodes.  Login guessing is slowed by
two keys per attempt, the username and the client address, so spreading
guesses over many accounts or many addresses does not get around it.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable, Hashable

from twisted.internet.interfaces import IReactorTime


class FailureLimiter:
    """
    At most C{max_failures} failures per key within C{window} seconds.
    """

    def __init__(self, clock: IReactorTime, max_failures: int, window: float) -> None:
        self._clock = clock
        self.max_failures = max_failures
        self.window = window
        self._failures: dict[Hashable, deque[float]] = {}
        #: Told ("failure" or "reset", key) of each change made here (not
        #: of those L{apply} makes): the live bus shares them between nodes.
        self.observers: list[Callable[[str, Hashable], None]] = []

    def _recent(self, key: Hashable) -> deque[float]:
        now = self._clock.seconds()
        failures = self._failures.get(key)
        if failures is None:
            return deque()
        while failures and failures[0] <= now - self.window:
            failures.popleft()
        if not failures:
            del self._failures[key]
        return failures

    def retry_after(self, key: Hashable) -> int | None:
        """
        Whole seconds until C{key} may try again, or C{None} if it may now.
        """
        failures = self._recent(key)
        if len(failures) < self.max_failures:
            return None
        wait = failures[0] + self.window - self._clock.seconds()
        return max(1, math.ceil(wait))

    def record_failure(self, key: Hashable) -> None:
        self.apply("failure", key)
        self._tell("failure", key)

    def reset(self, key: Hashable) -> None:
        self.apply("reset", key)
        self._tell("reset", key)

    def apply(self, change: str, key: Hashable) -> None:
        """Make a change another node made ("failure" now, or "reset")."""
        if change == "reset":
            self._failures.pop(key, None)
            return
        self._recent(key)
        self._failures.setdefault(key, deque()).append(self._clock.seconds())

    def _tell(self, change: str, key: Hashable) -> None:
        for observer in self.observers:
            observer(change, key)
