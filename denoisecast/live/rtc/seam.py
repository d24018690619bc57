"""
The one crossing from Twisted to asyncio: run an aiortc coroutine on the
shared event loop and wait for it as a Deferred.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

from twisted.internet.defer import Deferred

T = TypeVar("T")


def aio(coroutine: Coroutine[Any, Any, T]) -> "Deferred[T]":
    return Deferred.fromFuture(asyncio.ensure_future(coroutine))
