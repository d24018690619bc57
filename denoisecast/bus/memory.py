"""
The in-process live bus: the default, for one node with nothing to set up.

A L{MemoryBroker} stands where Redis stands for L{denoisecast.bus.redisbus}:
every L{InProcessBus} on one broker is a node, its events reach the other
nodes a reactor turn later (as they would over a network, never inside the
publisher's call), and its announcement expires C{ttl} seconds after its
last heartbeat.  A server makes a broker of its own, so it is alone; tests
put several nodes of one process on one broker, which is how the same
tests run against both buses.
"""

from __future__ import annotations

import json
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.task import LoopingCall

from denoisecast.bus.base import DEFAULT_NODE_TTL, BusRequestFailed, Event, LiveBus, NodeInfo, encode


class MemoryBroker:
    """What several in-process nodes share: their announcements and their mailboxes."""

    def __init__(self, reactor: Any, shared: bool = False) -> None:
        """
        @param shared: whether more than one node will use this broker
            (then each node repairs only its own rows at start).
        """
        self.reactor = reactor
        self.shared = shared
        self.buses: dict[str, InProcessBus] = {}
        #: node id -> (announcement, reactor time it expires at)
        self.announced: dict[str, tuple[NodeInfo, float]] = {}

    def alive(self) -> dict[str, NodeInfo]:
        now = self.reactor.seconds()
        return {node_id: info for node_id, (info, expires) in self.announced.items() if expires > now}


class InProcessBus(LiveBus):
    kind = "in-process"

    def __init__(self, broker: MemoryBroker, node: NodeInfo, ttl: float = DEFAULT_NODE_TTL) -> None:
        super().__init__(node, ttl)
        self._broker = broker
        self._heartbeat = LoopingCall(self._beat)
        self._heartbeat.clock = broker.reactor
        self._since: float | None = None

    @property
    def connected(self) -> bool:
        return self._since is not None

    def connected_for(self) -> float | None:
        return None if self._since is None else self._broker.reactor.seconds() - self._since

    @property
    def shared(self) -> bool:
        return self._broker.shared

    def _beat(self) -> None:
        self._broker.announced[self.node_id] = (self.announcement(), self._broker.reactor.seconds() + self.ttl)

    async def start(self) -> None:
        self._broker.buses[self.node_id] = self
        self._since = self._broker.reactor.seconds()
        if not self._heartbeat.running:
            self._heartbeat.start(self.ttl / 3, now=True)
        self._connected()

    async def stop(self) -> None:
        if self._heartbeat.running:
            self._heartbeat.stop()
        self._broker.announced.pop(self.node_id, None)
        self._broker.buses.pop(self.node_id, None)
        self._since = None

    async def kill(self) -> None:
        """
        (Tests.)  Die as a killed process does: no heartbeat, nothing
        received, the announcement left to expire.
        """
        if self._heartbeat.running:
            self._heartbeat.stop()
        self._broker.buses.pop(self.node_id, None)
        self._since = None

    def _send(self, event: Event) -> None:
        if self._since is None:
            if self._broker.reactor is not None:  # a lone bus, never started, drops nothing
                self.events_dropped += 1
            return
        others = [other for node_id, other in self._broker.buses.items() if node_id != self.node_id]
        if not others:
            return  # alone: nothing to encode
        text = encode(event)
        for other in others:
            self._broker.reactor.callLater(0, other._received, text)

    async def _remote_request(self, node_id: str, method: str, body: str, timeout: float) -> dict[str, Any]:
        other = self._broker.buses.get(node_id)
        if other is None or node_id not in self._broker.alive():
            raise BusRequestFailed(f"node {node_id} is not reachable")
        answer = Deferred.fromCoroutine(other._answer(method, json.loads(body)))
        answer.addTimeout(timeout, self._broker.reactor)
        try:
            return await answer
        except BusRequestFailed:
            raise
        except Exception as error:
            raise BusRequestFailed(f"node {node_id} did not answer {method!r}: {error!r}") from error

    async def alive_nodes(self) -> dict[str, NodeInfo]:
        return self._broker.alive()


def lone_bus() -> InProcessBus:
    """
    A bus for a part built without one (a unit test's hub): its events
    reach its own handlers only, and it needs no reactor until started.
    """
    from denoisecast.bus.base import new_node_id

    return InProcessBus(MemoryBroker(None), NodeInfo(new_node_id(), "", 0.0))
