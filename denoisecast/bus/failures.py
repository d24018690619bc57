"""
Where rate-limit failures outlive a node: the interface a bus may offer
(L{denoisecast.bus.base.LiveBus.failures}).

The Redis bus offers one (L{denoisecast.bus.redisfailures}); the
in-process bus none, since a lone node has no one to hand its failures to
(its limits restart empty with it, as they always did).  Limiters, keys
and failure ids are given as text: the limiter's name, the key's
L{denoisecast.runtime.ratelimit.key_text}, the failure's id.  The login
guard keeps the clients each account knows in it too (the account as key,
each client as an id: L{denoisecast.live.cluster.share_login_guard}).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Collection

#: What a load finds: limiter -> key text -> failure id -> age in seconds.
StoredFailures = dict[str, dict[str, dict[str, float]]]


class FailureStore(ABC):
    """
    Failures per limiter and key, each kept until it leaves its window.

    Writing never waits and never raises: the request that counted a
    failure (a login) must not slow down or fail because the store is slow
    or away.  What could not be written is written back after the next
    load (L{denoisecast.runtime.ratelimit.FailureLimiter.merge}).

    @ivar dropped: writes not made (the store away, or too slow), for the
        metrics.
    """

    dropped = 0

    @abstractmethod
    def add(self, limiter: str, key: str, failure_id: str, age: float, window: float, keep: int) -> None:
        """
        Store a failure made C{age} seconds ago; of the key's failures keep
        the newest C{keep} still within C{window} seconds.
        """

    @abstractmethod
    def clear(self, limiter: str, key: str) -> None:
        """Forget every failure of the key (a reset)."""

    @abstractmethod
    async def load(self, limiters: Collection[str]) -> StoredFailures | None:
        """Every stored failure of these limiters; C{None} while the store cannot be read."""
