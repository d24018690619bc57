"""
Counting failures per key in a sliding window, to slow down guessing.

What a check reads is kept in memory, so checking (on every login) costs
no round trip and cannot fail.  With several nodes each failure and reset
is also told to the other nodes over the live bus
(L{FailureLimiter.observers}), and, where the bus has a store (Redis:
C{--redis-url}, or the private redis-server of C{--workers}), written
there; a node that starts, or reconnects after an outage, loads the stored
windows into memory (L{FailureLimiter.merge}).  So the limits hold across
nodes, and a node started later, or restarted, knows the earlier failures
(L{denoisecast.live.cluster.share_limits} does the wiring).  Each failure
carries an id, so one that reaches a node twice (by the bus and again in a
load) counts once.

Login guessing is slowed by two keys per attempt, the username and the
client address, so spreading guesses over many accounts or many addresses
does not get around it.
"""

from __future__ import annotations

import json
import math
import uuid
from collections import deque
from collections.abc import Callable, Hashable, Mapping

from twisted.internet.interfaces import IReactorTime

from denoisecast.runtime.logs import logger

#: One failure: when it happened (on the limiter's clock) and its id.
Failure = tuple[float, str]
#: Told (change, key, failure id) of a change: ("failure", key, its id) or ("reset", key, "").
ChangeObserver = Callable[[str, Hashable, str], None]


def key_text(key: Hashable) -> str:
    """
    The one text of a key that crosses nodes and names it in a store:
    compact JSON (a tuple as an array, so C{5} and C{"5"} stay apart).

    @raise TypeError: a key that is not strings, numbers and tuples of them.
    """
    return json.dumps(key, separators=(",", ":"))


def key_from_text(text: str) -> Hashable:
    """The key L{key_text} wrote (arrays back into tuples); C{ValueError} if it is no such text."""
    return _hashable(json.loads(text))


def _hashable(value: Hashable) -> Hashable:
    if isinstance(value, list):
        return tuple(_hashable(item) for item in value)
    if isinstance(value, dict):
        raise ValueError("a limiter key is never an object")
    return value  # str, int, float, bool, None: all hashable


def new_failure_id() -> str:
    """A failure's id: random, so ids made on different nodes (or before a restart) never meet."""
    return uuid.uuid4().hex[:16]


class FailureLimiter:
    """
    At most C{max_failures} failures per key within C{window} seconds.

    Only the newest C{max_failures} failures of a key are kept: they alone
    decide whether, and until when, the key must wait.
    """

    log = logger()

    def __init__(self, clock: IReactorTime, max_failures: int, window: float) -> None:
        self._clock = clock
        self.max_failures = max_failures
        self.window = window
        self._failures: dict[Hashable, deque[Failure]] = {}
        #: Told of each change made here (not of those L{apply} and
        #: L{merge} make): the live bus shares them between nodes.
        self.observers: list[ChangeObserver] = []

    def _recent(self, key: Hashable) -> deque[Failure] | None:
        """The key's failures still inside the window (None, and forgotten, if none)."""
        failures = self._failures.get(key)
        if failures is None:
            return None
        oldest = self._clock.seconds() - self.window
        while failures and failures[0][0] <= oldest:
            failures.popleft()
        if not failures:
            del self._failures[key]
            return None
        return failures

    def retry_after(self, key: Hashable) -> int | None:
        """
        Whole seconds until C{key} may try again, or C{None} if it may now.
        """
        failures = self._recent(key)
        if failures is None or len(failures) < self.max_failures:
            return None
        wait = failures[-self.max_failures][0] + self.window - self._clock.seconds()
        return max(1, math.ceil(wait))

    def keys(self) -> list[Hashable]:
        """The keys with failures in the window."""
        return [key for key in list(self._failures) if self._recent(key) is not None]

    def record_failure(self, key: Hashable) -> None:
        failure_id = new_failure_id()
        self._add(key, self._clock.seconds(), failure_id)
        self._tell("failure", key, failure_id)

    def reset(self, key: Hashable) -> None:
        self._failures.pop(key, None)
        self._tell("reset", key, "")

    def apply(self, change: str, key: Hashable, failure_id: str = "", age: float = 0.0) -> None:
        """
        Make a change another node made: a failure C{age} seconds ago
        (counted once per id), or a reset.
        """
        if change == "reset":
            self._failures.pop(key, None)
        elif change == "failure":
            self._add(key, self._clock.seconds() - age, failure_id or new_failure_id())

    def merge(
        self, stored: Mapping[Hashable, Mapping[str, float]], reset_at: Mapping[Hashable, float] | None = None
    ) -> list[tuple[Hashable, str, float]]:
        """
        Add the failures loaded from a store (key -> failure id -> age in
        seconds) to those in memory, and return the ones in memory the
        store lacks, as (key, id, age): failures counted while the store
        was unreachable, to be written back.

        @param reset_at: keys reset here while the store was unreachable,
            with when (this limiter's clock, L{now}): their stored failures
            from before the reset are not loaded, and all their failures in
            memory are returned, since the caller clears the store's copy
            of them before writing back.
        """
        reset_at = reset_at or {}
        now = self._clock.seconds()
        for key, failures in stored.items():
            for failure_id, age in failures.items():
                if now - age > reset_at.get(key, -math.inf):
                    self.apply("failure", key, failure_id, age)
        missing = []
        for key in list(self._failures):
            known = {} if key in reset_at else stored.get(key, {})
            for at, failure_id in self._recent(key) or ():
                if failure_id not in known:
                    missing.append((key, failure_id, now - at))
        return missing

    def now(self) -> float:
        """This limiter's clock, for L{merge}'s C{reset_at}."""
        return self._clock.seconds()

    def _add(self, key: Hashable, at: float, failure_id: str) -> None:
        if at <= self._clock.seconds() - self.window:
            return  # already out of the window
        failures = self._recent(key)
        if failures is None:
            failures = self._failures[key] = deque()
        elif any(known == failure_id for _, known in failures):
            return
        place = len(failures)
        while place and failures[place - 1][0] > at:
            place -= 1  # an older failure (a load) goes in time order
        failures.insert(place, (at, failure_id))
        while len(failures) > self.max_failures:
            failures.popleft()

    def _tell(self, change: str, key: Hashable, failure_id: str) -> None:
        for observer in self.observers:
            try:
                observer(change, key, failure_id)
            except Exception:
                # Sharing a limit must never break the request that counted it.
                self.log.failure("Sharing a rate-limit change failed")
