"""
The live bus on Redis (C{--redis-url}): pub/sub for events and requests,
a key with a time to live for each node's heartbeat.

Keys and channels, under the prefix (C{--redis-prefix}):

- C{PREFIX:events}: every event, to every node;
- C{PREFIX:to:NODE}: requests to NODE and answers to NODE's requests;
- C{PREFIX:node:NODE}: NODE's announcement (JSON L{NodeInfo}), set every
  C{ttl / 3} seconds with a time to live of C{ttl};
- C{PREFIX:limit:LIMITER:KEY}: the rate limits' failures
  (L{denoisecast.bus.redisfailures}).

The client is the C{redis} package's asyncio one, which runs on the same
event loop as Twisted (the asyncio reactor); the Twisted/asyncio seam is
crossed in L{denoisecast.bus.seam.on_loop} only.  Redis going away is expected trouble: the
node keeps serving its own users, publishes are counted as dropped, one
warning says so (then one every L{WARN_EVERY} seconds at most), and a
reader task reconnects with a growing pause; once back, the node announces
itself again and L{LiveBus.connected_observers} re-announce its state.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import RedisError
from twisted.internet.defer import Deferred

from denoisecast.bus.base import DEFAULT_NODE_TTL, BusRequestFailed, Event, LiveBus, NodeInfo, encode
from denoisecast.bus.redisfailures import RedisFailureStore
from denoisecast.bus.seam import on_loop

#: Seconds between warnings about an unreachable Redis.
WARN_EVERY = 30.0
#: Longest pause between reconnection attempts.
MAX_BACKOFF = 2.0
#: Events waiting to be sent before more are dropped.
SEND_QUEUE = 10_000


class RedisBus(LiveBus):
    kind = "redis"

    def __init__(self, url: str, prefix: str, node: NodeInfo, ttl: float = DEFAULT_NODE_TTL) -> None:
        super().__init__(node, ttl)
        self.url = url
        self.prefix = prefix
        self._redis = aioredis.Redis.from_url(url, socket_connect_timeout=2.0, socket_timeout=max(2.0, ttl / 2))
        self._since: float | None = None
        self._running = False
        self._tasks: list[asyncio.Task[None]] = []
        self._queue: asyncio.Queue[str] = asyncio.Queue(SEND_QUEUE)
        self._waiting: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self._last_warning = 0.0
        self._suppressed = 0
        self._ever_connected = False
        self._start_over = False
        #: Times the bus lost Redis (for the metrics).
        self.disconnections = 0
        self.failures = self.limit_store = RedisFailureStore(self._redis, prefix, lambda: self.connected, self._trouble)

    # names ----------------------------------------------------------------

    @property
    def _events(self) -> str:
        return f"{self.prefix}:events"

    def _inbox(self, node_id: str) -> str:
        return f"{self.prefix}:to:{node_id}"

    def _node_key(self, node_id: str) -> str:
        return f"{self.prefix}:node:{node_id}"

    # state ----------------------------------------------------------------

    @property
    def connected(self) -> bool:
        return self._since is not None

    def connected_for(self) -> float | None:
        return None if self._since is None else time.monotonic() - self._since

    @property
    def shared(self) -> bool:
        return True

    def _trouble(self, what: str, error: BaseException) -> None:
        """Say that Redis failed, once, then at most every L{WARN_EVERY} seconds."""
        if self._since is not None:
            self._since = None
            self.disconnections += 1
        # Whatever failed, the reader starts over: subscribes again, announces
        # this node again, and its observers re-announce what was dropped.
        self._start_over = True
        now = time.monotonic()
        if now - self._last_warning < WARN_EVERY:
            self._suppressed += 1
            return
        self.log.warn(
            "The live bus cannot reach Redis at {url} ({what}: {error}); "
            "{suppressed} more failures since the last warning; retrying",
            url=self._redis_location(), what=what, error=str(error) or type(error).__name__,
            suppressed=self._suppressed, log_id="bus.redis_unreachable",
        )
        self._last_warning = now
        self._suppressed = 0

    def _redis_location(self) -> str:
        kwargs = self._redis.connection_pool.connection_kwargs
        if kwargs.get("path"):
            return str(kwargs["path"])  # a UNIX socket (the workers' private Redis)
        return f"{kwargs.get('host', '?')}:{kwargs.get('port', '?')}"

    # life -----------------------------------------------------------------

    async def start(self) -> None:
        self._running = True
        loop = asyncio.get_event_loop()
        self._tasks = [
            loop.create_task(self._read()), loop.create_task(self._beat()), loop.create_task(self._sender()),
            loop.create_task(self.limit_store.run()),
        ]

    async def stop(self) -> None:
        self._running = False
        await on_loop(self._stop())

    async def kill(self) -> None:
        """
        (Tests.)  Die as a killed process does: nothing sent or received
        any more, the announcement left to expire.
        """
        self._running = False
        self._since = None
        await on_loop(self._stop(withdraw=False))

    async def _stop(self, withdraw: bool = True) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            try:
                await task
            except (asyncio.CancelledError, Exception):
                pass
        self._tasks = []
        if withdraw and self._since is not None:
            try:
                await self._redis.delete(self._node_key(self.node_id))
            except (RedisError, OSError):
                pass
        self._since = None
        await self._redis.aclose()

    async def _announce(self) -> None:
        await self._redis.set(self._node_key(self.node_id), self.announcement().to_json(), px=int(self.ttl * 1000))

    async def _beat(self) -> None:
        """The heartbeat: the announcement renewed every third of its life."""
        while self._running:
            if self._since is not None:
                try:
                    await self._announce()
                except (RedisError, OSError) as error:
                    self._trouble("heartbeat", error)
            await asyncio.sleep(self.ttl / 3)

    async def _read(self) -> None:
        """Receive events and requests; reconnect whenever Redis goes away."""
        backoff = 0.1
        while self._running:
            pubsub = self._redis.pubsub(ignore_subscribe_messages=True)
            try:
                self._start_over = False
                await pubsub.subscribe(self._events, self._inbox(self.node_id))
                await self._announce()
                self._since = time.monotonic()
                backoff = 0.1
                if self._ever_connected:
                    self.log.info("The live bus reached Redis at {url} again", url=self._redis_location(),
                                  log_id="bus.redis_back")
                self._ever_connected = True
                self._connected()
                while self._running and not self._start_over:
                    message = await pubsub.get_message(timeout=1.0)
                    if message is None:
                        continue
                    channel = message["channel"].decode()
                    if channel == self._events:
                        self._received(message["data"])
                    else:
                        self._direct(message["data"])
            except asyncio.CancelledError:
                raise
            except (RedisError, OSError) as error:
                self._trouble("subscription", error)
            finally:
                try:
                    await pubsub.aclose()
                except (RedisError, OSError):
                    pass
            if self._running:
                await asyncio.sleep(backoff)
                backoff = min(MAX_BACKOFF, backoff * 2)

    async def _sender(self) -> None:
        """Send events in the order they were published (one at a time, so none overtakes another)."""
        while self._running:
            text = await self._queue.get()
            if self._since is None:
                self.events_dropped += 1
                continue
            try:
                await self._redis.publish(self._events, text)
            except (RedisError, OSError) as error:
                self.events_dropped += 1
                self._trouble("publish", error)

    def _send(self, event: Event) -> None:
        if self._since is None:
            self.events_dropped += 1
            return
        try:
            self._queue.put_nowait(encode(event))
        except asyncio.QueueFull:
            self.events_dropped += 1

    # requests -------------------------------------------------------------

    def _direct(self, data: bytes) -> None:
        try:
            message = json.loads(data)
        except ValueError:
            return
        if not isinstance(message, dict):
            return
        if message.get("reply_to") is not None:
            waiting = self._waiting.pop(str(message["reply_to"]), None)
            if waiting is not None and not waiting.done():
                if "error" in message:
                    waiting.set_exception(BusRequestFailed(str(message["error"])))
                else:
                    waiting.set_result(message.get("body") or {})
            return
        asyncio.ensure_future(self._respond(message))

    async def _respond(self, message: dict[str, Any]) -> None:
        reply: dict[str, Any] = {"reply_to": message.get("id")}
        try:
            reply["body"] = await Deferred.fromCoroutine(
                self._answer(str(message.get("method")), dict(message.get("body") or {}))
            ).asFuture(asyncio.get_event_loop())
        except BusRequestFailed as error:
            reply["error"] = str(error)
        except Exception as error:
            self.log.failure("Answering a {method} request failed", method=message.get("method"))
            reply["error"] = f"{type(error).__name__} on node {self.node_id}"
        try:
            await self._redis.publish(self._inbox(str(message.get("from"))), encode(reply))
        except (RedisError, OSError) as error:
            self._trouble("reply", error)

    async def _remote_request(self, node_id: str, method: str, body: str, timeout: float) -> dict[str, Any]:
        return await on_loop(self._ask(node_id, method, body, timeout))

    async def _ask(self, node_id: str, method: str, body: str, timeout: float) -> dict[str, Any]:
        request_id = uuid.uuid4().hex
        waiting: asyncio.Future[dict[str, Any]] = asyncio.get_event_loop().create_future()
        self._waiting[request_id] = waiting
        text = json.dumps({"id": request_id, "from": self.node_id, "method": method, "body": json.loads(body)})
        try:
            try:
                receivers = await self._redis.publish(self._inbox(node_id), text)
            except (RedisError, OSError) as error:
                raise BusRequestFailed(f"Redis unreachable: {error}") from error
            if not receivers:
                raise BusRequestFailed(f"node {node_id} is not reachable")
            try:
                return await asyncio.wait_for(waiting, timeout)
            except TimeoutError:
                raise BusRequestFailed(f"node {node_id} did not answer {method!r} within {timeout} s") from None
        finally:
            self._waiting.pop(request_id, None)

    # nodes ----------------------------------------------------------------

    async def alive_nodes(self) -> dict[str, NodeInfo]:
        """The announced nodes; none while Redis cannot be read (then nothing is judged dead)."""
        try:
            return await on_loop(self._alive_nodes())
        except (RedisError, OSError) as error:
            self._trouble("registry", error)
            return {}

    async def _alive_nodes(self) -> dict[str, NodeInfo]:
        keys = [key async for key in self._redis.scan_iter(match=self._node_key("*"), count=1000)]
        if not keys:
            return {}
        found: dict[str, NodeInfo] = {}
        for value in await self._redis.mget(keys):
            if value is None:
                continue  # expired between the scan and the read
            try:
                info = NodeInfo.from_json(value)
            except (ValueError, KeyError, TypeError):
                continue
            found[info.node_id] = info
        return found
