"""
Rate-limit failures in Redis, so that they outlive a node: one sorted set
per limiter and key, C{PREFIX:limit:LIMITER:KEY} (KEY: the key's
L{denoisecast.runtime.ratelimit.key_text}; the clients each account knows
are kept the same way, under C{login-known}), whose members are failure ids
scored by the Redis server's time of the failure (of its write, which
follows within milliseconds, so failures keep their order; one written
back after an outage is given its age).  Adding a failure trims
the set to its window and to the newest failures that matter, and sets it
to expire with its window; a reset deletes it.  A load reads every set of
the given limiters with the server's time, and returns ages, so the nodes'
clocks (and a test's fake clock) never need to agree with each other or
with Redis.

Hand-made over the bus's own C{redis.asyncio} client rather than the
C{limits} package: C{limits} checks a moving window with a round trip to
Redis per check, where DenoiseCast checks in memory (a login must not wait
on, or fail with, Redis); its asyncio storage opens a client of its own
beside the bus's; and it has no way to load every window at start-up or to
count a failure that arrives twice (by the bus, then in a load) once.
What is needed here is three commands (a script, a DEL, a SCAN with reads).

Writes go through one queue and one task, in order (a reset is never
overtaken by the failure before it), and while the bus is disconnected
they are dropped at once: the failures come back to Redis from memory
after the next load.  Failing commands are the bus's trouble (one warning,
then at most one every L{denoisecast.bus.redisbus.WARN_EVERY} seconds).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Collection
from dataclasses import dataclass

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from denoisecast.bus.failures import FailureStore, StoredFailures
from denoisecast.bus.seam import on_loop

#: Writes waiting before more are dropped.
WRITE_QUEUE = 10_000
#: Sets read per round trip in a load.
LOAD_BATCH = 500

# KEYS[1]: the set; ARGV: window (s), failure id, age (s), failures to keep.
_ADD = """
local clock = redis.call('TIME')
local now = tonumber(clock[1]) + tonumber(clock[2]) / 1000000
local window = tonumber(ARGV[1])
redis.call('ZADD', KEYS[1], now - tonumber(ARGV[3]), ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
redis.call('ZREMRANGEBYRANK', KEYS[1], 0, -(tonumber(ARGV[4]) + 1))
redis.call('PEXPIRE', KEYS[1], math.ceil(window * 1000))
"""


@dataclass(frozen=True)
class _Write:
    key: str
    #: None for a reset; else (window, failure id, age, keep).
    failure: tuple[float, str, float, int] | None


class RedisFailureStore(FailureStore):
    """
    @ivar dropped: writes not made (Redis unreachable, or the queue full).
    """

    def __init__(
        self, redis: aioredis.Redis, prefix: str, connected: Callable[[], bool],
        trouble: Callable[[str, BaseException], None],
    ) -> None:
        self._redis = redis
        self._prefix = f"{prefix}:limit:"
        self._connected = connected
        self._trouble = trouble
        self._queue: asyncio.Queue[_Write] = asyncio.Queue(WRITE_QUEUE)
        self._add_script = redis.register_script(_ADD)
        self.dropped = 0

    def _key(self, limiter: str, key: str) -> str:
        return f"{self._prefix}{limiter}:{key}"

    def add(self, limiter: str, key: str, failure_id: str, age: float, window: float, keep: int) -> None:
        self._put(_Write(self._key(limiter, key), (window, failure_id, age, keep)))

    def clear(self, limiter: str, key: str) -> None:
        self._put(_Write(self._key(limiter, key), None))

    def _put(self, write: _Write) -> None:
        if not self._connected():
            self.dropped += 1
            return
        try:
            self._queue.put_nowait(write)
        except asyncio.QueueFull:
            self.dropped += 1

    async def run(self) -> None:
        """The writer task (the bus runs it while it runs)."""
        while True:
            write = await self._queue.get()
            if not self._connected():
                self.dropped += 1
                continue
            try:
                if write.failure is None:
                    await self._redis.delete(write.key)
                else:
                    await self._add_script(keys=[write.key], args=list(write.failure))
            except (RedisError, OSError) as error:
                self.dropped += 1
                self._trouble("rate-limit write", error)

    async def load(self, limiters: Collection[str]) -> StoredFailures | None:
        try:
            return await on_loop(self._load(set(limiters)))
        except (RedisError, OSError) as error:
            self._trouble("rate-limit load", error)
            return None

    async def _load(self, limiters: set[str]) -> StoredFailures:
        sets: list[tuple[str, str, str]] = []  # (Redis key, limiter, key text)
        async for name in self._redis.scan_iter(match=self._prefix + "*", count=1000):
            text = name.decode("utf-8", "replace")
            limiter, _, key = text[len(self._prefix):].partition(":")
            if limiter in limiters:
                sets.append((text, limiter, key))
        found: StoredFailures = {}
        for start in range(0, len(sets), LOAD_BATCH):
            batch = sets[start:start + LOAD_BATCH]
            pipeline = self._redis.pipeline(transaction=False)
            pipeline.time()
            for name, _, _ in batch:
                pipeline.zrange(name, 0, -1, withscores=True)
            clock, *contents = await pipeline.execute(raise_on_error=False)
            if isinstance(clock, Exception):
                raise clock
            now = clock[0] + clock[1] / 1_000_000
            for (_, limiter, key), members in zip(batch, contents):
                if isinstance(members, Exception):
                    continue  # not a set of ours (WRONGTYPE): nothing to load from it
                failures = found.setdefault(limiter, {}).setdefault(key, {})
                for member, score in members:
                    failures[member.decode("utf-8", "replace")] = max(0.0, now - score)
        return found
