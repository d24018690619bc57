"""
The one WebSocket of DenoiseCast (``/ws``): presence and WebRTC signaling.

The protocol stays thin.  ``onConnect`` authenticates the session cookie and
checks the Origin, refusing with L{ConnectionDeny} before anything else
happens; ``onOpen`` registers with the factory; ``onClose`` unregisters.
Every text message is validated (L{denoisecast.protocols.messages}) and
handed to the factory, which holds the shared state (presence hub, live
manager) and turns expected failures into ``error`` messages.  Limits
(frame and message size, pings, handshake timeouts) are protocol options
set on the factory.
"""

from __future__ import annotations

import time
from http.cookies import CookieError, SimpleCookie
from typing import TYPE_CHECKING, Any, Awaitable, Callable

from autobahn.twisted.websocket import WebSocketServerFactory, WebSocketServerProtocol
from autobahn.websocket.types import ConnectionDeny, ConnectionRequest
from twisted.internet.defer import ensureDeferred

from denoisecast.errors import DenoiseCastError
from denoisecast.logs import logger
from denoisecast.presence import PresenceHub
from denoisecast.protocols import messages
from denoisecast.storage.store import User
from denoisecast.web.resource import SESSION_COOKIE, dump_json

if TYPE_CHECKING:
    from denoisecast.live.manager import LiveManager

MAX_MESSAGE_BYTES = 64 * 1024
PING_INTERVAL = 10.0
PING_TIMEOUT = 5.0
#: Messages a connection may send per second (burst) before being told off.
RATE_PER_SECOND = 20.0
#: Errors one connection may cause before it is closed.
MAX_ERRORS = 50

#: Close codes (also in docs/live.md).
CLOSE_UNSUPPORTED = 4003  # autobahn lets applications send only 1000 and 3000-4999
CLOSE_POLICY = 4008


class SignalingProtocol(WebSocketServerProtocol):
    log = logger()
    factory: "SignalingFactory"

    user: User | None = None
    _errors = 0
    _tokens = RATE_PER_SECOND
    _last = 0.0

    async def _authorise(self, request: ConnectionRequest) -> None:
        origin = request.headers.get("origin", "")
        host = request.headers.get("host", "")
        if origin not in (f"http://{host}", f"https://{host}"):
            raise ConnectionDeny(403, "Cross-origin WebSocket connections are not allowed.")
        try:
            cookies = SimpleCookie(request.headers.get("cookie", ""))
        except CookieError:
            cookies = SimpleCookie()
        morsel = cookies.get(SESSION_COOKIE.decode())
        token = morsel.value if morsel is not None else ""
        user = await self.factory.authenticate(token) if 0 < len(token) <= 128 else None
        if user is None:
            raise ConnectionDeny(401, "Log in first.")
        self.user = user

    def onConnect(self, request: ConnectionRequest) -> Any:
        return ensureDeferred(self._authorise(request))

    def onOpen(self) -> None:
        self.factory.register(self)

    @property
    def still_open(self) -> bool:
        return self.state == WebSocketServerProtocol.STATE_OPEN

    def onClose(self, wasClean: bool, code: int | None, reason: str | None) -> None:
        if self.user is not None:
            self.factory.unregister(self)

    def send_message(self, message: dict[str, Any]) -> None:
        if self.still_open:
            self.sendMessage(dump_json(message), isBinary=False)

    def _allow(self) -> bool:
        now = time.monotonic()
        self._tokens = min(RATE_PER_SECOND, self._tokens + (now - self._last) * RATE_PER_SECOND)
        self._last = now
        if self._tokens < 1.0:
            return False
        self._tokens -= 1.0
        return True

    def send_error(self, reply: dict[str, Any]) -> None:
        self._errors += 1
        if self._errors > MAX_ERRORS:
            self.sendClose(CLOSE_POLICY, "Too many bad messages.")
            return
        self.send_message(reply)

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        if isBinary:
            self.sendClose(CLOSE_UNSUPPORTED, "Only JSON text messages.")
            return
        if not self._allow():
            self.send_error(messages.error("rate_limited", "Slow down.", 429, messages.reference(payload)))
            return
        try:
            message = messages.parse(payload)
        except messages.BadMessage as bad:
            self.send_error(messages.error(bad.code, bad.message, 400, messages.reference(payload)))
            return
        ensureDeferred(self.factory.handle(self, message)).addErrback(self._failed, message)

    def _failed(self, failure: Any, message: dict[str, Any]) -> None:
        if failure.check(DenoiseCastError):
            error = failure.value
            self.send_error(messages.error(error.code, error.message, error.status, message.get("id")))
            return
        self.log.failure("Handling {kind} failed", failure, kind=message.get("type"))
        self.send_error(
            messages.error("internal_error", "Something went wrong on the server.", 500, message.get("id"))
        )


Handler = Callable[[SignalingProtocol, dict[str, Any]], Awaitable[None]]


class SignalingFactory(WebSocketServerFactory):
    protocol = SignalingProtocol
    log = logger()

    def __init__(
        self,
        authenticate: Callable[[str], Awaitable[User | None]],
        presence: PresenceHub,
        live: "LiveManager",
        ice_servers: Callable[[User], list[dict[str, Any]]],
    ) -> None:
        super().__init__()
        self.authenticate = authenticate
        self.presence = presence
        self.live = live
        self.ice_servers = ice_servers
        self.connections: set[SignalingProtocol] = set()
        self.setProtocolOptions(
            maxFramePayloadSize=MAX_MESSAGE_BYTES,
            maxMessagePayloadSize=MAX_MESSAGE_BYTES,
            autoPingInterval=PING_INTERVAL,
            autoPingTimeout=PING_TIMEOUT,
            openHandshakeTimeout=10.0,
            closeHandshakeTimeout=5.0,
            failByDrop=False,
        )

    def register(self, connection: SignalingProtocol) -> None:
        user = connection.user
        assert user is not None
        self.connections.add(connection)
        connection.send_message(
            {
                "v": messages.VERSION,
                "type": "hello",
                "user": user["username"],
                "ice_servers": self.ice_servers(user),
            }
        )
        ensureDeferred(self._snapshots(user, connection)).addErrback(
            lambda failure: self.log.failure("Snapshots for a new connection failed", failure)
        )

    async def _snapshots(self, user: User, connection: SignalingProtocol) -> None:
        """
        A new page learns, in this order, its friends' presence and the
        user's own state (live or not, the denoise setting).
        """
        await self.presence.connect(user, connection)
        connection.send_message(await self.live.describe_owner(user))

    def unregister(self, connection: SignalingProtocol) -> None:
        user = connection.user
        assert user is not None
        if connection not in self.connections:
            return
        self.connections.discard(connection)
        self.live.connection_closed(connection)
        self.presence.disconnect(user["id"], connection)

    async def handle(self, connection: SignalingProtocol, message: dict[str, Any]) -> None:
        user = connection.user
        assert user is not None
        kind = message["type"]
        ref = message.get("id")
        reply: dict[str, Any] | None
        if kind == "ping":
            reply = {"type": "pong"}
        elif kind == "publish":
            reply = await self.live.publish(user, connection, message["sdp"])
        elif kind == "stop":
            reply = await self.live.stop(user, "stopped")
        elif kind == "denoise":
            reply = await self.live.set_denoise(user, message.get("enabled"), message.get("atten_lim_db"))
        elif kind == "listen":
            reply = await self.live.listen(
                user, connection, message["user"], message["sdp"], message.get("signal", "denoised")
            )
        elif kind == "signal":
            reply = self.live.set_signal(user, message["user"], message["signal"])
        elif kind == "unlisten":
            reply = await self.live.unlisten(user, message["user"])
        else:  # pragma: no cover - parse() admits only the types above
            raise AssertionError(kind)
        if reply is not None:
            reply = {"v": messages.VERSION, **reply}
            if ref is not None:
                reply["id"] = ref
            connection.send_message(reply)
