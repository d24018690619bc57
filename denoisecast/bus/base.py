"""
The live bus: the one way live events cross users, and nodes.

Everything live that one user's action tells other users (presence, a
stream starting or stopping, denoise changes, listener counts, recordings
finalised or removed, friendships, sessions ended) is an I{event}
published here; every node's handlers for that kind see it, the
publishing node's synchronously, before C{publish} returns, so a single
node behaves exactly as it did without a bus.  What must reach one node
(signaling for the broadcast it holds) is a I{request} answered by that
node.  And each node announces itself with a heartbeat, so the others can
tell when it has died.

Two implementations share this base: L{denoisecast.bus.memory} (in one
process, the default) and L{denoisecast.bus.redisbus} (Redis pub/sub and
keys with a time to live, C{--redis-url}).  Nothing above this package
can tell which one it has.

Events and request bodies are JSON objects (datetimes become ISO 8601
strings, as in every HTTP and WebSocket answer), so they mean the same on
every node.
"""

from __future__ import annotations

import json
import uuid
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, replace
from typing import Any

from denoisecast.bus.failures import FailureStore
from denoisecast.runtime.jsontext import json_default
from denoisecast.runtime.logs import logger

#: An event: a JSON object with at least "kind" and "node" (its sender).
Event = dict[str, Any]
EventHandler = Callable[[Event], None]
#: Answers a request's body with the reply's body (raising L{BusRequestFailed} to refuse).
Responder = Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]

#: Seconds a node's announcement lives without a heartbeat (--node-ttl's default).
DEFAULT_NODE_TTL = 6.0
#: Seconds a request waits for its answer.
DEFAULT_REQUEST_TIMEOUT = 5.0


def new_node_id() -> str:
    """A node id for a node started without --node-id: random, short, readable in logs."""
    return uuid.uuid4().hex[:12]


@dataclass(frozen=True)
class NodeInfo:
    """What a node announces: who it is and where browsers and other nodes reach it."""

    node_id: str
    url: str
    started: float
    #: Streams its denoiser can still take in real time (None: not measured yet).
    headroom: int | None = None

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str | bytes) -> "NodeInfo":
        value = json.loads(text)
        headroom = value.get("headroom")
        return cls(
            str(value["node_id"]), str(value.get("url", "")), float(value.get("started", 0.0)),
            int(headroom) if headroom is not None else None,
        )


class BusRequestFailed(Exception):
    """A request got no answer (the node is unreachable, or too slow) or was refused."""


def encode(value: dict[str, Any]) -> str:
    return json.dumps(value, default=json_default, separators=(",", ":"))


class LiveBus(ABC):
    """
    The interface (and the parts both implementations share).

    @ivar node: this node's announcement.
    @ivar ttl: seconds a node counts as alive after its last heartbeat.
    """

    log = logger()
    #: Which implementation: "in-process" or "redis" (health, metrics).
    kind = ""

    def __init__(self, node: NodeInfo, ttl: float = DEFAULT_NODE_TTL) -> None:
        self.node = node
        self.ttl = ttl
        self._handlers: dict[str, list[EventHandler]] = {}
        self._responders: dict[str, Responder] = {}
        #: Called each time the bus connects: at start, and after an outage
        #: (in which events were missed both ways).
        self.connected_observers: list[Callable[[], None]] = []
        #: This node's current headroom, announced with every heartbeat.
        self.headroom: Callable[[], int | None] = lambda: None
        #: Events that could not be sent to other nodes (Redis unreachable).
        self.events_dropped = 0
        self.events_sent = 0
        self.events_received = 0
        #: Where rate-limit failures outlive this node (L{denoisecast.live.cluster.share_limits}):
        #: none for the in-process bus.
        self.failures: FailureStore | None = None

    @property
    def node_id(self) -> str:
        return self.node.node_id

    def announcement(self) -> NodeInfo:
        """What this node's heartbeat says now: who it is, and its headroom."""
        return replace(self.node, headroom=self.headroom())

    # events ----------------------------------------------------------------

    def on(self, kind: str, handler: EventHandler) -> None:
        """Call C{handler} with every event of C{kind}, from this node and every other."""
        self._handlers.setdefault(kind, []).append(handler)

    def publish(self, kind: str, **body: Any) -> None:
        """
        Tell every node: this one's handlers run now, the others' as soon
        as the event reaches them.  Never raises: a bus that cannot reach
        the other nodes says so in the log, the metrics and /api/health.
        """
        event: Event = {**body, "kind": kind, "node": self.node_id}
        self._deliver(event)
        self.events_sent += 1
        self._send(event)

    def _deliver(self, event: Event) -> None:
        for handler in list(self._handlers.get(event.get("kind", ""), ())):
            try:
                handler(event)
            except Exception:
                self.log.failure("Handling a {kind} event failed", kind=event.get("kind"))

    def _received(self, text: str | bytes) -> None:
        """An event from another node (an implementation's transport calls this)."""
        try:
            event = json.loads(text)
        except ValueError:
            self.log.warn("An undecodable bus event was ignored")
            return
        if not isinstance(event, dict) or event.get("node") == self.node_id:
            return  # our own, already delivered when published
        self.events_received += 1
        self._deliver(event)

    @abstractmethod
    def _send(self, event: Event) -> None:
        """Send an event to every other node (best effort; encoded with L{encode})."""

    # requests ----------------------------------------------------------------

    def serve(self, method: str, responder: Responder) -> None:
        """Answer requests for C{method} sent to this node."""
        self._responders[method] = responder

    async def request(
        self, node_id: str, method: str, body: dict[str, Any], timeout: float = DEFAULT_REQUEST_TIMEOUT
    ) -> dict[str, Any]:
        """
        Ask node C{node_id} (this one included) and wait for its answer.

        @raise BusRequestFailed: no such node, no answer within C{timeout},
            or the node refused.
        """
        if node_id == self.node_id:
            return await self._answer(method, json.loads(encode(body)))
        return await self._remote_request(node_id, method, encode(body), timeout)

    async def _answer(self, method: str, body: dict[str, Any]) -> dict[str, Any]:
        responder = self._responders.get(method)
        if responder is None:
            raise BusRequestFailed(f"node {self.node_id} does not answer {method!r}")
        return json.loads(encode(await responder(body)))

    @abstractmethod
    async def _remote_request(self, node_id: str, method: str, body: str, timeout: float) -> dict[str, Any]:
        """Send a request to another node and wait for its answer."""

    # nodes -------------------------------------------------------------------

    @abstractmethod
    async def alive_nodes(self) -> dict[str, NodeInfo]:
        """The nodes whose heartbeat has not expired, this one included while connected."""

    @property
    @abstractmethod
    def connected(self) -> bool:
        """Whether the bus reaches the other nodes now."""

    @abstractmethod
    def connected_for(self) -> float | None:
        """Seconds since the last (re)connection, or C{None} while disconnected."""

    @property
    @abstractmethod
    def shared(self) -> bool:
        """Whether other nodes may share this bus (and the database): False for a lone in-process node."""

    @abstractmethod
    async def start(self) -> None:
        """Announce this node and start receiving."""

    @abstractmethod
    async def stop(self) -> None:
        """Withdraw the announcement and stop."""

    def _connected(self) -> None:
        for observer in list(self.connected_observers):
            try:
                observer()
            except Exception:
                self.log.failure("A connection observer failed")
