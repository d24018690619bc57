"""
Rate limits stored in Redis (L{denoisecast.bus.redisfailures}, wired by
L{denoisecast.live.cluster.share_limits}), on a real Redis server, each
test under a key prefix of its own.  Each node is a bus of this process
with limiters of its own, as a freshly started (or restarted) process has:
what it knows of earlier failures it can only have loaded from Redis.
"""

from __future__ import annotations

import time
from typing import Any

import redis.asyncio as aioredis
from twisted.internet import reactor
from twisted.internet.task import deferLater
from twisted.trial.unittest import TestCase

from denoisecast.bus.base import LiveBus
from denoisecast.bus.seam import on_loop
from denoisecast.errors import DenoiseCastError
from denoisecast.handlers.loginguard import LoginGuard
from denoisecast.live.cluster import share_limits, share_login_guard
from denoisecast.runtime.ratelimit import FailureLimiter, key_text
from tests.bus_support import CuttableLink, Nodes, logged, nodes_on_private_redis
from tests.test_bus import wait_for


def stored_key(nodes: Nodes, limiter: str, key: Any) -> str:
    """The Redis key of a limiter's key under the nodes' prefix."""
    return f"{nodes.prefix}:limit:{limiter}:{key_text(key)}"


async def redis_command(url: str, command: str, *args: Any) -> Any:
    """One command on a client of the test's own (not the nodes')."""
    client = aioredis.Redis.from_url(url)
    try:
        return await on_loop(getattr(client, command)(*args))
    finally:
        await on_loop(client.aclose())


async def eventually(
    url: str, command: str, key: str, expected: Any, timeout: float = 5.0, args: tuple[Any, ...] = ()
) -> None:
    """Wait until C{command key *args} answers C{expected}."""
    start = time.monotonic()
    while (found := await redis_command(url, command, key, *args)) != expected:
        if time.monotonic() - start > timeout:
            raise AssertionError(f"{command} {key}: {found!r}, not {expected!r} within {timeout} s")
        await deferLater(reactor, 0.02)


class StoredLimitTests(TestCase):
    timeout = 30

    def setUp(self) -> None:
        self.nodes = Nodes(self, "redis")

    async def node(self, name: str, redis: str = "") -> tuple[LiveBus, dict[str, FailureLimiter]]:
        """
        A node started now: an account budget (3 a minute) and a short one
        (2 per 0.5 s); on Redis through C{redis} where given.
        """
        bus = self.nodes.bus(name, redis=redis)
        limiters = {"login-account": FailureLimiter(reactor, 3, 60.0), "short": FailureLimiter(reactor, 2, 0.5)}
        share_limits(bus, limiters)
        await bus.start()
        await wait_for(lambda: bus.connected, 5.0)
        return bus, limiters

    def stored_key(self, limiter: str, key: Any) -> str:
        return stored_key(self.nodes, limiter, key)

    async def redis(self, command: str, *args: Any) -> Any:
        return await redis_command(self.nodes.url, command, *args)

    async def eventually(self, command: str, key: str, expected: Any, *args: Any) -> None:
        await eventually(self.nodes.url, command, key, expected, args=args)

    async def test_a_later_node_knows_earlier_failures(self) -> None:
        """
        Failures counted on node A are in Redis (the newest 3 that matter,
        expiring with the window); node B, started afterwards, refuses the
        key with the Retry-After A would give, and holds the same failures
        (by id: none counted twice), tuple keys included.
        """
        _, a = await self.node("a")
        for _ in range(4):
            a["login-account"].record_failure("victim")
        a["login-account"].record_failure(("password_check", 7))
        victim = self.stored_key("login-account", "victim")
        await self.eventually("zcard", victim, 3)
        await self.eventually("zcard", self.stored_key("login-account", ("password_check", 7)), 1)
        self.assertTrue(0 < await self.redis("pttl", victim) <= 60_000)
        _, b = await self.node("b")
        await wait_for(lambda: b["login-account"].retry_after("victim") is not None, 5.0)
        self.assertTrue(55 <= (b["login-account"].retry_after("victim") or 0) <= 60)
        ids = {name: [failure_id for _, failure_id in limiter._failures["victim"]] for name, limiter in
               (("a", a["login-account"]), ("b", b["login-account"]))}
        self.assertEqual(ids["a"], ids["b"])
        self.assertEqual(len(ids["b"]), 3)
        await wait_for(lambda: ("password_check", 7) in b["login-account"]._failures, 5.0)
        # One more on B makes two for the tuple key on both nodes, not three.
        b["login-account"].record_failure(("password_check", 7))
        await wait_for(lambda: len(a["login-account"]._failures[("password_check", 7)]) == 2, 5.0)
        await self.eventually("zcard", self.stored_key("login-account", ("password_check", 7)), 2)
        self.assertEqual(len(b["login-account"]._failures[("password_check", 7)]), 2)

    async def test_reset_clears_it_for_later_nodes(self) -> None:
        """
        A reset on node B (a successful login) reaches node A over the bus
        and deletes the stored failures: node C, started afterwards, does
        not refuse the key (it did load the others).
        """
        _, a = await self.node("a")
        for _ in range(3):
            a["login-account"].record_failure("victim")
        a["login-account"].record_failure("other")
        await self.eventually("zcard", self.stored_key("login-account", "victim"), 3)
        await self.eventually("zcard", self.stored_key("login-account", "other"), 1)
        _, b = await self.node("b")
        await wait_for(lambda: b["login-account"].retry_after("victim") is not None, 5.0)
        b["login-account"].reset("victim")
        await wait_for(lambda: a["login-account"].retry_after("victim") is None, 5.0)
        await self.eventually("exists", self.stored_key("login-account", "victim"), 0)
        _, c = await self.node("c")
        await wait_for(lambda: "other" in c["login-account"]._failures, 5.0)
        self.assertIsNone(c["login-account"].retry_after("victim"))
        self.assertNotIn("victim", c["login-account"]._failures)

    async def test_a_reset_made_while_away_holds_after_the_reconnect(self) -> None:
        """
        Node A, cut off from a Redis that runs on (a broken link), resets a
        key with failures stored there (its owner logged in), then counts
        one more failure: once the link is mended the failures from before
        the reset are gone from Redis and from node B, which stayed
        connected and never heard the reset; the one after it is kept
        everywhere, and a node started afterwards does not refuse the key.
        """
        link = CuttableLink(self, self.nodes.url)
        a_bus, a = await self.node("a", redis=link.url)
        _, b = await self.node("b")
        for _ in range(3):
            b["login-account"].record_failure("victim")
        await self.eventually("zcard", self.stored_key("login-account", "victim"), 3)
        await wait_for(lambda: a["login-account"].retry_after("victim") is not None, 5.0)
        await link.cut()
        await wait_for(lambda: not a_bus.connected, 5.0)
        a["login-account"].reset("victim")
        a["login-account"].record_failure("victim")
        (after,) = [failure_id for _, failure_id in a["login-account"]._failures["victim"]]
        self.assertEqual(len(b["login-account"]._failures["victim"]), 3)
        link.mend()
        await wait_for(lambda: a_bus.connected, 10.0)
        await self.eventually("zrange", self.stored_key("login-account", "victim"), [after.encode()], 0, -1)
        await wait_for(lambda: [i for _, i in b["login-account"]._failures.get("victim", ())] == [after], 5.0)
        self.assertIsNone(b["login-account"].retry_after("victim"))
        self.assertEqual([i for _, i in a["login-account"]._failures["victim"]], [after])
        _, c = await self.node("c")
        await wait_for(lambda: "victim" in c["login-account"]._failures, 5.0)
        self.assertEqual([i for _, i in c["login-account"]._failures["victim"]], [after])
        self.assertIsNone(c["login-account"].retry_after("victim"))

    async def test_expired_windows_are_gone(self) -> None:
        """
        A window that ended is gone from Redis (the set expires with it,
        and failures older than the window are trimmed when one is added),
        so a node started afterwards does not refuse the key.
        """
        bus, a = await self.node("a")
        for _ in range(2):
            a["short"].record_failure("k")
        self.assertIsNotNone(a["short"].retry_after("k"))
        assert bus.failures is not None
        trimmed = key_text("trimmed")
        bus.failures.add("short", trimmed, "fresh", 0.0, 0.5, 2)
        bus.failures.add("short", trimmed, "stale", 0.6, 0.5, 2)  # a write-back out of its window
        a["login-account"].record_failure("control")  # written after them (one writer, in order)
        await self.eventually("zcard", self.stored_key("login-account", "control"), 1)
        self.assertEqual(await self.redis("zrange", self.stored_key("short", "trimmed"), 0, -1), [b"fresh"])
        await self.eventually("exists", self.stored_key("short", "k"), 0)
        await self.eventually("exists", self.stored_key("short", "trimmed"), 0)
        await wait_for(lambda: a["short"].retry_after("k") is None, 5.0)
        _, c = await self.node("c")
        await wait_for(lambda: "control" in c["login-account"]._failures, 5.0)
        self.assertEqual(c["short"]._failures, {})


class RedisAwayTests(TestCase):
    timeout = 60

    async def test_logins_go_on_without_redis(self) -> None:
        """
        With Redis killed (and restarted empty, as one without persistence
        is), the login guard still counts and refuses in memory (nothing
        raises into the login path; one warning for the node); once Redis
        is back the failures counted meanwhile are written back, and the
        clients the guessed-at account knows: a node started afterwards
        refuses the guesser and lets the owner in from their address.
        """
        warnings = logged(self, "bus.redis_unreachable")
        server, nodes = nodes_on_private_redis(self)
        a = nodes.bus("a")
        guard = LoginGuard(reactor)
        share_login_guard(a, guard)
        guard.registered("victim", "192.0.2.50")
        await a.start()
        await wait_for(lambda: a.connected, 5.0)
        server.kill()
        await wait_for(lambda: not a.connected, 5.0)
        for _ in range(5):
            guard.failed(guard.check("Victim", "192.0.2.7", None))
        with self.assertRaises(DenoiseCastError) as refused:
            guard.check("victim", "192.0.2.8", None)
        self.assertEqual(refused.exception.status, 429)
        self.assertGreaterEqual(a.failures.dropped, 10)  # type: ignore[union-attr]
        await wait_for(lambda: warnings, 5.0)
        server.start()
        await wait_for(lambda: a.connected, 10.0)
        self.assertEqual(len(warnings), 1, [w.get("what") for w in warnings])
        await eventually(nodes.url, "zcard", stored_key(nodes, "login-account", "victim"), 5)
        await eventually(nodes.url, "zcard", stored_key(nodes, "login-known", "victim"), 2)
        b = nodes.bus("b")
        later = LoginGuard(reactor)
        share_login_guard(b, later)
        await b.start()

        def refuses() -> bool:
            try:
                later.check("victim", "192.0.2.9", None)
            except DenoiseCastError:
                return True
            return False

        await wait_for(refuses, 5.0)
        await wait_for(lambda: later.known("victim") == guard.known("victim"), 5.0)
        self.assertEqual(later.check("victim", "192.0.2.50", None).trust, "address")
