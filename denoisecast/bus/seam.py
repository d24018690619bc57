"""
The one crossing from Twisted code to the asyncio coroutines of the
C{redis} client, for the parts of the Redis bus (L{denoisecast.bus.redisbus},
L{denoisecast.bus.redisfailures}); both run on the same event loop (the
asyncio reactor).
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

from twisted.internet.defer import Deferred

T = TypeVar("T")


def on_loop(coroutine: Coroutine[Any, Any, T]) -> "Deferred[T]":
    """Run an asyncio coroutine (the redis client's) and wait for it from Twisted code."""
    return Deferred.fromFuture(asyncio.ensure_future(coroutine))
