"""
The live bus in tests: a Redis server to use (the one of
C{DENOISECAST_TEST_REDIS_URL}, which scripts/test sets, starting one of its
own when none runs on 127.0.0.1:6379), a fresh key prefix per test, and
nodes on either bus.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
import uuid
from typing import Any
from urllib.parse import urlparse

from twisted.internet import reactor
from twisted.internet.defer import Deferred, ensureDeferred, succeed
from twisted.internet.interfaces import IListeningPort
from twisted.protocols.portforward import ProxyFactory, ProxyServer
from twisted.trial.unittest import SkipTest, TestCase

from denoisecast.bus.base import LiveBus, NodeInfo
from denoisecast.bus.memory import InProcessBus, MemoryBroker

REDIS_ENV = "DENOISECAST_TEST_REDIS_URL"
DEFAULT_REDIS = "redis://127.0.0.1:6379/0"


def redis_url() -> str:
    """The tests' Redis, or a skip saying which one could not be reached."""
    url = os.environ.get(REDIS_ENV, DEFAULT_REDIS)
    parsed = urlparse(url)
    try:
        with socket.create_connection((parsed.hostname or "127.0.0.1", parsed.port or 6379), timeout=1.0) as sock:
            sock.sendall(b"PING\r\n")
            if not sock.recv(16).startswith(b"+PONG"):
                raise OSError("no PONG")
    except OSError as error:
        raise SkipTest(f"no Redis server at {url} ({error}); scripts/test starts one") from None
    return url


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def unique_prefix() -> str:
    """A key and channel prefix of one test's own, so tests never hear each other."""
    return "dctest-" + uuid.uuid4().hex[:12]


class Nodes:
    """Makes nodes on one bus: in this process (one broker), or on Redis (one prefix)."""

    def __init__(self, testcase: TestCase, kind: str, ttl: float = 3.0) -> None:
        self.testcase = testcase
        self.kind = kind
        self.ttl = ttl
        self.broker = MemoryBroker(reactor, shared=True)
        self.prefix = unique_prefix()
        self.url = redis_url() if kind == "redis" else ""

    def bus(self, node_id: str, url: str = "", redis: str = "") -> LiveBus:
        """
        A bus for node C{node_id}, not yet started, stopped when the test
        ends; on Redis through C{redis} where given (a L{CuttableLink}).
        """
        info = NodeInfo(node_id, url or f"http://{node_id}.test", reactor.seconds())
        bus: Any
        if self.kind == "redis":
            from denoisecast.bus.redisbus import RedisBus

            bus = RedisBus(redis or self.url, self.prefix, info, self.ttl)
        else:
            bus = InProcessBus(self.broker, info, self.ttl)
        self.testcase.addCleanup(lambda: ensureDeferred(bus.stop()))
        return bus


class PrivateRedis:
    """A redis-server of this test's own on a free port, to kill and restart."""

    def __init__(self, test: TestCase) -> None:
        if shutil.which("redis-server") is None:
            raise SkipTest("redis-server is not installed")
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen[bytes] | None = None
        test.addCleanup(self.kill)
        self.start()

    def start(self) -> None:
        self.process = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        for _ in range(100):
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return
            except OSError:
                time.sleep(0.05)
        raise AssertionError("redis-server did not start")

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(10)


class CuttableLink:
    """
    A TCP relay on loopback in front of a Redis server, to cut one node off
    it (as a broken network link does) while the server runs on and every
    other node still reaches it, and to mend the link.

    @ivar url: the Redis URL that goes through the link.
    """

    def __init__(self, test: TestCase, url: str) -> None:
        parsed = urlparse(url)
        self._factory = _TrackingProxyFactory(parsed.hostname or "127.0.0.1", parsed.port or 6379)
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}{parsed.path or '/0'}"
        self._listening: IListeningPort | None = None
        test.addCleanup(self.cut)
        self.mend()

    def mend(self) -> None:
        """Accept connections again, on the same port."""
        if self._listening is None:
            self._listening = reactor.listenTCP(self.port, self._factory, interface="127.0.0.1")

    def cut(self) -> Deferred[Any]:
        """Refuse new connections and drop the open ones, both ways."""
        for relay in list(self._factory.relays):
            relay.transport.abortConnection()
            if relay.peer is not None:
                relay.peer.transport.abortConnection()
        listening, self._listening = self._listening, None
        return succeed(None) if listening is None else Deferred.fromCoroutine(_stop(listening))


async def _stop(port: IListeningPort) -> None:
    await port.stopListening()


class _TrackingRelay(ProxyServer):
    factory: _TrackingProxyFactory

    def connectionMade(self) -> None:
        self.factory.relays.add(self)
        super().connectionMade()

    def connectionLost(self, reason: Any) -> None:
        self.factory.relays.discard(self)
        super().connectionLost(reason)


class _TrackingProxyFactory(ProxyFactory):
    protocol = _TrackingRelay

    def __init__(self, host: str, port: int) -> None:
        super().__init__(host, port)
        self.relays: set[_TrackingRelay] = set()


def nodes_on_private_redis(test: TestCase, ttl: float = 2.0) -> tuple[PrivateRedis, Nodes]:
    """Nodes on a redis-server of the test's own, to kill and restart."""
    server = PrivateRedis(test)
    nodes = Nodes(test, "redis", ttl)
    nodes.url = server.url
    return server, nodes


def logged(test: TestCase, log_id: str) -> list[dict[str, Any]]:
    """The events logged with C{log_id} from now until the test ends (a list that grows)."""
    from twisted.logger import globalLogPublisher

    events: list[dict[str, Any]] = []

    def observe(event: dict[str, Any]) -> None:
        if event.get("log_id") == log_id:
            events.append(event)

    globalLogPublisher.addObserver(observe)
    test.addCleanup(globalLogPublisher.removeObserver, observe)
    return events
