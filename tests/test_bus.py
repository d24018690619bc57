"""
The live bus, the same tests on both implementations: in one process
(L{denoisecast.bus.memory}) and on a real Redis server
(L{denoisecast.bus.redisbus}), each test under a key prefix of its own.
"""

from __future__ import annotations

import time
from typing import Any

from twisted.internet import reactor
from twisted.internet.task import deferLater
from twisted.trial.unittest import TestCase

from denoisecast.bus.base import BusRequestFailed, Event, LiveBus
from tests.bus_support import Nodes


async def wait_for(condition: Any, timeout: float, step: float = 0.02) -> float:
    """Seconds until C{condition()} held; fails the test after C{timeout}."""
    start = time.monotonic()
    while not condition():
        if time.monotonic() - start > timeout:
            raise AssertionError(f"not true within {timeout} s")
        await deferLater(reactor, step)
    return time.monotonic() - start


class BusTestsMixin:
    """What both buses must do; C{kind} picks the bus."""

    kind = ""
    timeout = 30

    def nodes(self, ttl: float = 3.0) -> Nodes:
        return Nodes(self, self.kind, ttl)  # type: ignore[arg-type]

    async def started(self, nodes: Nodes, *names: str) -> list[LiveBus]:
        buses = [nodes.bus(name) for name in names]
        for bus in buses:
            await bus.start()
        await wait_for(lambda: all(bus.connected for bus in buses), 5.0)
        return buses

    async def test_events_reach_every_node_once(self) -> None:
        """
        An event reaches the publisher's own handlers before publish returns
        and every other node's once, in the order published; JSON on the
        way (a datetime arrives as the ISO string the WebSocket would send).
        """
        from datetime import datetime, timezone

        a, b = await self.started(self.nodes(), "a", "b")
        seen_a: list[Event] = []
        seen_b: list[Event] = []
        a.on("ping", seen_a.append)
        b.on("ping", seen_b.append)
        a.publish("ping", n=1, at=datetime(2026, 12, 2, 12, 0, tzinfo=timezone.utc))
        self.assertEqual([e["n"] for e in seen_a], [1])  # type: ignore[attr-defined]
        for n in range(2, 30):
            a.publish("ping", n=n)
        await wait_for(lambda: len(seen_b) == 29, 5.0)
        self.assertEqual([e["n"] for e in seen_b], list(range(1, 30)))  # type: ignore[attr-defined]
        self.assertEqual(seen_b[0]["at"], "2026-12-02T12:00:00Z")  # type: ignore[attr-defined]
        self.assertEqual(seen_b[0]["node"], "a")  # type: ignore[attr-defined]
        await deferLater(reactor, 0.2)
        self.assertEqual(len(seen_a), 29)  # type: ignore[attr-defined]  # never echoed back

    async def test_requests_reach_the_named_node(self) -> None:
        """
        A request goes to the named node only and its answer comes back; a
        refusal comes back as BusRequestFailed, and so does a request to a
        node that does not exist (at once, not after the timeout).
        """
        a, b, c = await self.started(self.nodes(), "a", "b", "c")
        asked: list[str] = []

        def responder(name: str) -> Any:
            async def answer(body: dict[str, Any]) -> dict[str, Any]:
                asked.append(name)
                if body.get("refuse"):
                    raise BusRequestFailed("refused")
                return {"node": name, "twice": body["n"] * 2}

            return answer

        for bus, name in ((a, "a"), (b, "b"), (c, "c")):
            bus.serve("double", responder(name))
        self.assertEqual(await a.request("b", "double", {"n": 21}), {"node": "b", "twice": 42})
        self.assertEqual(await a.request("a", "double", {"n": 1}), {"node": "a", "twice": 2})
        self.assertEqual(asked, ["b", "a"])  # type: ignore[attr-defined]
        with self.assertRaises(BusRequestFailed):  # type: ignore[attr-defined]
            await a.request("c", "double", {"n": 1, "refuse": True})
        start = time.monotonic()
        with self.assertRaises(BusRequestFailed):  # type: ignore[attr-defined]
            await a.request("nobody", "double", {"n": 1}, timeout=5.0)
        self.assertLess(time.monotonic() - start, 2.0)  # type: ignore[attr-defined]
        with self.assertRaises(BusRequestFailed):  # type: ignore[attr-defined]
            await a.request("b", "unknown-method", {})

    async def test_registry_and_expiry(self) -> None:
        """
        Every node sees every node with the address it announced; a node
        that dies (no heartbeat) is gone within its time to live, while one
        that lives on stays announced well past it.
        """
        nodes = self.nodes(ttl=2.0)
        a, b = await self.started(nodes, "a", "b")
        alive = await a.alive_nodes()
        self.assertEqual(sorted(alive), ["a", "b"])  # type: ignore[attr-defined]
        self.assertEqual(alive["b"].url, "http://b.test")  # type: ignore[attr-defined]
        await b.kill()  # type: ignore[attr-defined]
        start = time.monotonic()
        while "b" in await a.alive_nodes():
            self.assertLess(time.monotonic() - start, 2.0 + 0.5)  # type: ignore[attr-defined]
            await deferLater(reactor, 0.1)
        await deferLater(reactor, 2.5)
        self.assertEqual(sorted(await a.alive_nodes()), ["a"])  # type: ignore[attr-defined]

    async def test_connected_observers_run_at_start(self) -> None:
        """A node announces its state when it connects (its presence hub listens)."""
        bus = self.nodes().bus("a")
        calls: list[int] = []
        bus.connected_observers.append(lambda: calls.append(1))
        await bus.start()
        await wait_for(lambda: calls == [1], 5.0)


class InProcessBusTests(BusTestsMixin, TestCase):
    kind = "memory"


class RedisBusTests(BusTestsMixin, TestCase):
    kind = "redis"


class RedisRestartTests(TestCase):
    timeout = 60

    async def test_nodes_come_back_by_themselves(self) -> None:
        """
        Redis killed under two nodes: both say they are disconnected, count
        what they could not send, and warn once each; Redis restarted: both
        reconnect without help, announce themselves again (their connection
        observers run again) and events flow between them.
        """
        from tests.bus_support import logged, nodes_on_private_redis

        warnings = logged(self, "bus.redis_unreachable")
        server, nodes = nodes_on_private_redis(self)
        a, b = nodes.bus("a"), nodes.bus("b")
        connects = {"a": 0, "b": 0}
        a.connected_observers.append(lambda: connects.__setitem__("a", connects["a"] + 1))
        b.connected_observers.append(lambda: connects.__setitem__("b", connects["b"] + 1))
        seen: list[Event] = []
        b.on("ping", seen.append)
        await a.start()
        await b.start()
        await wait_for(lambda: a.connected and b.connected, 5.0)
        server.kill()
        await wait_for(lambda: not a.connected and not b.connected, 5.0)
        for n in range(50):
            a.publish("ping", n=n)
        self.assertGreaterEqual(a.events_dropped, 50)
        await deferLater(reactor, 2.0)  # retries while Redis is away
        self.assertLessEqual(len(warnings), 2, [w.get("what") for w in warnings])  # one per node
        server.start()
        await wait_for(lambda: a.connected and b.connected, 10.0)
        self.assertEqual(connects, {"a": 2, "b": 2})
        a.publish("ping", n=99)
        await wait_for(lambda: [e["n"] for e in seen] == [99], 5.0)
        self.assertEqual(sorted(await a.alive_nodes()), ["a", "b"])
