"""
A WebSocket test client for DenoiseCast's ``/ws``: connects with a session
cookie and an Origin like a browser, queues every message it receives.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlparse

from autobahn.twisted.websocket import WebSocketClientFactory, WebSocketClientProtocol, connectWS
from twisted.internet import reactor
from twisted.internet.defer import Deferred, DeferredQueue
from twisted.internet.task import deferLater
from twisted.trial.unittest import TestCase

from tests.support import Client


class _Protocol(WebSocketClientProtocol):
    factory: "_Factory"

    def onOpen(self) -> None:
        self.factory.connection = self
        self.factory.opened.callback(self)

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        self.factory.queue.put(json.loads(payload))

    def onClose(self, wasClean: bool, code: int | None, reason: str | None) -> None:
        self.factory.close_code = code
        if not self.factory.opened.called:
            self.factory.opened.errback(ConnectionError(f"refused: {code} {reason}"))
        if not self.factory.closed.called:
            self.factory.closed.callback(code)


class _Factory(WebSocketClientFactory):
    protocol = _Protocol

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.queue: DeferredQueue[dict[str, Any]] = DeferredQueue()
        self.opened: Deferred[_Protocol] = Deferred()
        self.closed: Deferred[int | None] = Deferred()
        self.close_code: int | None = None
        self.connection: _Protocol | None = None


class WsClient:
    def __init__(self, factory: _Factory, protocol: _Protocol) -> None:
        self.factory = factory
        self.protocol = protocol

    def send(self, message: Any) -> None:
        if isinstance(message, (bytes, str)):
            data = message.encode() if isinstance(message, str) else message
            self.protocol.sendMessage(data, isBinary=False)
        else:
            self.protocol.sendMessage(json.dumps(message).encode(), isBinary=False)

    async def next(self, timeout: float = 5.0) -> dict[str, Any]:
        got = self.factory.queue.get()
        got.addTimeout(timeout, reactor)
        return await got

    async def expect(self, kind: str, timeout: float = 5.0, **match: Any) -> dict[str, Any]:
        """The next message of type C{kind} (others before it are skipped)."""
        while True:
            message = await self.next(timeout)
            if message.get("type") == kind and all(message.get(k) == v for k, v in match.items()):
                return message

    async def silent(self, seconds: float) -> list[dict[str, Any]]:
        """Everything that arrives within C{seconds}."""
        await deferLater(reactor, seconds)
        got = []
        while self.factory.queue.pending:
            got.append(self.factory.queue.pending.pop(0))
        return got

    async def request(self, message: dict[str, Any], timeout: float = 10.0) -> dict[str, Any]:
        """Send a message with an id and wait for the reply carrying that id."""
        WsClient._ids += 1
        ref = f"r{WsClient._ids}"
        self.send({**message, "id": ref})
        while True:
            reply = await self.next(timeout)
            if reply.get("id") == ref:
                return reply

    _ids = 0

    def close(self) -> Deferred[int | None]:
        self.protocol.sendClose()
        return self.factory.closed


async def connect_ws(
    test: TestCase,
    base: str,
    client: Client | None,
    origin: str | None = "same",
    cookie: str | None = None,
    tls: Any = None,
    bind: str | None = None,
    extra_headers: dict[str, str] | None = None,
) -> WsClient:
    """
    Open C{/ws} as the user logged in on C{client}; raises ConnectionError
    when the server refuses the handshake.  For an https C{base}, C{tls} is
    the client TLS connection creator; C{bind} the local address.
    """
    url = base.replace("http://", "ws://").replace("https://", "wss://") + "/ws"
    headers = dict(extra_headers or {})
    if cookie is None and client is not None:
        cookie = f"dc_session={client.cookie('dc_session')}"
    if cookie:
        headers["Cookie"] = cookie
    if origin == "same":
        origin = base
    factory = _Factory(url, origin=origin, headers=headers)
    host = urlparse(base)
    connector = connectWS(factory, contextFactory=tls, bindAddress=(bind, 0) if bind else None)

    def drop() -> Deferred[Any] | None:
        if factory.connection is not None and not factory.closed.called:
            factory.connection.dropConnection(abort=True)
            return factory.closed.addTimeout(5, reactor)
        connector.disconnect()
        return None

    test.addCleanup(drop)
    del host
    protocol = await factory.opened
    return WsClient(factory, protocol)
