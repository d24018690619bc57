"""
Counting failures per key in a sliding window, to slow down guessing.

Kept in memory: each node limits what it sees.  Login guessing is slowed by
two keys per attempt, the username and the client address, so spreading
guesses over many accounts or many addresses does not get around it.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Hashable

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
        self._recent(key)
        self._failures.setdefault(key, deque()).append(self._clock.seconds())

    def reset(self, key: Hashable) -> None:
        self._failures.pop(key, None)
