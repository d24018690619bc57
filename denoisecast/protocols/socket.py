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
import uuid
from collections import deque
from collections.abc import Awaitable, Callable
from http.cookies import CookieError, SimpleCookie
from typing import TYPE_CHECKING, Any

from autobahn.twisted.websocket import WebSocketServerFactory, WebSocketServerProtocol
from autobahn.websocket.types import ConnectionDeny, ConnectionRequest
from twisted.internet.defer import ensureDeferred
from twisted.internet.interfaces import ISSLTransport

from denoisecast.errors import DenoiseCastError
from denoisecast.handlers.accounts import EndedSessions, hash_token
from denoisecast.handlers.presence import PresenceHub
from denoisecast.protocols import messages
from denoisecast.runtime.logs import logger
from denoisecast.storage.store import User
from denoisecast.web.forwarded import X_FORWARDED, ClientView, TrustedProxies, resolve_client
from denoisecast.web.resource import dump_json, storage_full
from denoisecast.web.sameorigin import SESSION_COOKIE, origin_allowed, session_token

if TYPE_CHECKING:
    from denoisecast.live.manager import LiveManager

MAX_MESSAGE_BYTES = 64 * 1024
PING_INTERVAL = 10.0
PING_TIMEOUT = 5.0
#: Messages a connection may send per second (burst) before being told off.
RATE_PER_SECOND = 20.0
#: Errors one connection may cause before it is closed.
MAX_ERRORS = 50

#: Ended sessions remembered for handshakes in progress.
RECENTLY_ENDED = 1024

#: Close codes (also in docs/live.md).
CLOSE_SESSION_ENDED = 4001  # logged out, or the password changed elsewhere
CLOSE_UNSUPPORTED = 4003  # autobahn lets applications send only 1000 and 3000-4999
CLOSE_POLICY = 4008


class SignalingProtocol(WebSocketServerProtocol):
    log = logger()
    factory: "SignalingFactory"

    user: User | None = None
    #: The real client address (behind a trusted proxy, the proxy's client).
    client_address = "unknown"
    #: The hash of the session this connection was opened with.
    session_hash: str | None = None
    #: Names this connection to other nodes (listens relayed through this node).
    connection_id = ""
    _errors = 0
    _tokens = RATE_PER_SECOND
    _last = 0.0

    def client_view(self, request: ConnectionRequest) -> ClientView:
        """
        Scheme, host and address as the client used them: behind a trusted
        proxy, what its forwarded headers say (see L{denoisecast.web.forwarded}).
        """
        peer = self.transport.getPeer() if self.transport is not None else None
        headers: dict[str, str] = request.headers
        return resolve_client(
            getattr(peer, "host", "unknown"),
            ISSLTransport.providedBy(self.transport),
            headers.get("host", ""),
            lambda name: [headers[name]] if name in headers else [],
            self.factory.trusted_proxies,
            self.factory.proxy_header,
        )

    async def _authorise(self, request: ConnectionRequest) -> None:
        view = self.client_view(request)
        self.client_address = view.address
        # The host the client addressed: behind a trusted proxy, the one it forwarded.
        if not origin_allowed(request.headers.get("origin"), view.host, required=True):
            raise ConnectionDeny(403, "Cross-origin WebSocket connections are not allowed.")
        try:
            cookies = SimpleCookie(request.headers.get("cookie", ""))
        except CookieError:
            cookies = SimpleCookie()
        morsel = cookies.get(SESSION_COOKIE.decode())
        token = session_token(morsel.value if morsel is not None else None)
        # A logout while the session is being looked up must not let the
        # socket open: it would miss the closing, being not yet registered.
        mark = self.factory.ended_mark()
        user = await self.factory.authenticate(token) if token is not None else None
        if user is None or token is None:
            raise ConnectionDeny(401, "Log in first.")
        session_hash = hash_token(token)
        if self.factory.ended_since(mark, user["id"], session_hash):
            raise ConnectionDeny(401, "The session ended; log in again.")
        self.user = user
        self.session_hash = session_hash

    def onConnect(self, request: ConnectionRequest) -> Any:
        return ensureDeferred(self._authorise(request))

    def onOpen(self) -> None:
        assert self.user is not None
        self.log.info(
            "Socket opened for {username} from {client}",
            username=self.user["username"],
            client=self.client_address,
        )
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
            self.factory.rate_limited += 1
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
        if storage_full(failure.value):
            self.log.warn("Storage full handling {kind}: {error}", kind=message.get("type"), error=str(failure.value))
            self.send_error(
                messages.error("storage_full", "The server's storage is full; try again later.", 503, message.get("id"))
            )
            return
        self.log.failure("Handling {kind} failed", failure, kind=message.get("type"))
        self.send_error(
            messages.error("internal_error", "Something went wrong on the server.", 500, message.get("id"))
        )


Handler = Callable[[SignalingProtocol, dict[str, Any]], Awaitable[None]]


class SignalingFactory(WebSocketServerFactory):
    # autobahn's factory is untyped, so mypy checks this against Twisted's Factory.protocol.
    protocol = SignalingProtocol  # type: ignore[assignment]
    log = logger()

    def __init__(
        self,
        authenticate: Callable[[str], Awaitable[User | None]],
        presence: PresenceHub,
        live: "LiveManager",
        ice_servers: Callable[[User], list[dict[str, Any]]],
        trusted_proxies: TrustedProxies | None = None,
        proxy_header: str = X_FORWARDED,
    ) -> None:
        super().__init__()
        self.trusted_proxies = trusted_proxies or TrustedProxies()
        self.proxy_header = proxy_header
        self.authenticate = authenticate
        self.presence = presence
        self.live = live
        self.ice_servers = ice_servers
        self.connections: set[SignalingProtocol] = set()
        #: The open connections by their id.
        self.by_id: dict[str, SignalingProtocol] = {}
        #: Messages refused with rate_limited, for the metrics.
        self.rate_limited = 0
        #: Sessions that ended lately, numbered, for handshakes still in progress.
        self._recently_ended: deque[tuple[int, EndedSessions]] = deque(maxlen=RECENTLY_ENDED)
        self._ended_count = 0
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
        connection.connection_id = uuid.uuid4().hex
        self.by_id[connection.connection_id] = connection
        connection.send_message(
            messages.server_message("hello", user=user["username"], ice_servers=self.ice_servers(user))
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

    def ended_mark(self) -> int:
        """A mark to ask L{ended_since} about sessions ended after now."""
        return self._ended_count

    def ended_since(self, mark: int, user_id: int, session_hash: str) -> bool:
        """
        Whether the session ended after C{mark} (a handshake that began
        before it ended must not open).  Conservatively yes when more
        sessions ended meanwhile than are remembered.
        """
        if self._ended_count - mark > len(self._recently_ended):
            return True
        return any(
            seq > mark and ended.covers(user_id, session_hash) for seq, ended in self._recently_ended
        )

    def sessions_ended(self, ended: EndedSessions) -> None:
        """
        Close the connections opened with sessions that just ended: a socket
        is authorised once, at its handshake, so logging out (or a password
        change elsewhere) must end it explicitly.
        """
        self._ended_count += 1
        self._recently_ended.append((self._ended_count, ended))
        for connection in list(self.connections):
            user, session = connection.user, connection.session_hash
            if user is not None and session is not None and ended.covers(user["id"], session):
                self.log.info("Closing a WebSocket of {username}: its session ended", username=user["username"])
                connection.sendClose(CLOSE_SESSION_ENDED, "The session ended.")

    def unregister(self, connection: SignalingProtocol) -> None:
        user = connection.user
        assert user is not None
        if connection not in self.connections:
            return
        self.connections.discard(connection)
        self.by_id.pop(connection.connection_id, None)
        self.live.connection_closed(connection)
        self.presence.disconnect(user["id"], connection)

    async def handle(self, connection: SignalingProtocol, message: dict[str, Any]) -> None:
        user = connection.user
        assert user is not None
        kind = message["type"]
        ref = message.get("id")
        reply: dict[str, Any] | None
        if kind == "ping":
            reply = messages.server_message("pong")
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
            reply = await self.live.set_signal(user, message["user"], message["signal"])
        elif kind == "unlisten":
            reply = await self.live.unlisten(user, message["user"])
        else:  # pragma: no cover - parse() admits only the types above
            raise AssertionError(kind)
        if reply is not None:
            reply = {**reply}  # a copy: the id is this connection's
            if ref is not None:
                reply["id"] = ref
            connection.send_message(reply)
