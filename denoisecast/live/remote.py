"""
Signaling through one node for a broadcast held by another: listening,
and a broadcast placed on another node.

A listener's offer that reaches node A for a broadcast on node B is sent
to B as a bus request (C{listen}); B makes the peer connection exactly as
for a listener of its own and answers with its SDP, which carries B's ICE
candidates, so media flows between the browser and B and never through A.
What B tells that listener later (the broadcast ended, the friendship
ended) comes back as a C{to_connection} event for the page on A; A asks
B to C{unlisten} or change the C{signal}, and tells B when that page's
socket closes.  If either node dies, the other ends these listens when it
notices (L{RemoteLive.node_gone}).  A plain HTTP listen (no page) is
relayed the same way: B listens with no connection, as it does for its own
HTTP listeners, so nothing is told to it later; it ends on C{DELETE} (which
reaches B through whichever node it comes to), on ICE failure or when the
broadcast does.

Listener counts need nothing here: B counts the listener like any other,
and its presence events carry the count to every node.

Placement works the same way round: a broadcaster whose page reaches a
node without denoise headroom has its offer sent to the node with the most
(C{publish}); that node holds the broadcast, with the page on A standing as
its publisher's connection (levels, listener counts and the end come back
as C{to_connection} events; the page closing detaches it as any lost
publisher would).  The same request takes a page reloaded onto another node
within the reconnect grace back to its broadcast: the owning node
re-attaches it, or refuses C{already_live} when it is not detached.
C{stop} and C{denoise} from any node go to the node that holds the user's
broadcast.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from denoisecast.bus.base import DEFAULT_REQUEST_TIMEOUT, BusRequestFailed, Event, LiveBus
from denoisecast.errors import DenoiseCastError
from denoisecast.protocols.messages import server_message
from denoisecast.runtime.logs import logger
from denoisecast.storage.store import User

#: Seconds node A waits for node B's answer to a listen (B negotiates ICE first).
LISTEN_TIMEOUT = 15.0


class Page(Protocol):
    """A signaling connection that can be named to another node."""

    connection_id: str

    def send_message(self, message: dict[str, Any]) -> None: ...


class RemotePage:
    """On the broadcast's node: stands for a listener's page on another node."""

    def __init__(self, bus: LiveBus, node: str, connection_id: str) -> None:
        self.bus = bus
        self.node = node
        self.connection_id = connection_id

    def send_message(self, message: dict[str, Any]) -> None:
        self.bus.publish("to_connection", target=self.node, connection=self.connection_id, message=message)


class LocalListening(Protocol):
    """What the owning node's listening does (L{denoisecast.live.listener.Listening})."""

    def listen(self, user: User, connection: Any, username: str, sdp: str, signal: str) -> Awaitable[dict[str, Any]]: ...

    def set_signal(self, user: User, username: str, signal: str) -> dict[str, Any]: ...

    def unlisten(self, user: User, username: str) -> Awaitable[dict[str, Any]]: ...


class LocalBroadcasts(Protocol):
    """What the owning node's live manager does for a broadcast placed on it."""

    def publish_here(self, user: User, connection: Any, sdp: str) -> Awaitable[dict[str, Any]]: ...

    def stop(self, user: User, reason: str) -> Awaitable[dict[str, Any]]: ...

    def set_denoise(self, user: User, enabled: bool | None, atten_lim_db: float | None) -> Awaitable[dict[str, Any]]: ...


def _refusal(error: DenoiseCastError) -> dict[str, Any]:
    return {"error": {"status": error.status, "code": error.code, "message": error.message}}


def _raise_refusal(reply: dict[str, Any]) -> dict[str, Any]:
    refused = reply.get("error")
    if isinstance(refused, dict):
        raise DenoiseCastError(int(refused["status"]), str(refused["code"]), str(refused["message"]))
    return dict(reply["message"])


class RemoteLive:
    """
    Both sides: on the page's node, the listens it relays (by user id and
    broadcaster name) and the broadcasts it placed elsewhere; on the
    broadcast's node, the pages of other nodes that listen or publish.
    """

    log = logger()

    def __init__(
        self,
        bus: LiveBus,
        listening: LocalListening,
        broadcasts: LocalBroadcasts,
        connection_closed: Callable[[Any], None],
        find_page: Callable[[str], Page | None],
    ) -> None:
        self._bus = bus
        self._listening = listening
        self._broadcasts = broadcasts
        #: user id -> (node, page, username) of broadcasts placed on another node from here.
        self.placed: dict[int, tuple[str, Page, str]] = {}
        self._connection_closed = connection_closed
        self._find_page = find_page
        #: (listener id, broadcaster name in lower case) -> (owner node, page,
        #: broadcaster name) of the pages' listens relayed from here (a plain
        #: HTTP listen has no page to tell or close: nothing is kept for it).
        self.relayed: dict[tuple[int, str], tuple[str, Page, str]] = {}
        #: (node, connection id) -> the page standing for it here.
        self._remote_pages: dict[tuple[str, str], RemotePage] = {}
        bus.serve("listen", self._serve_listen)
        bus.serve("unlisten", self._serve_unlisten)
        bus.serve("signal", self._serve_signal)
        bus.serve("publish", self._serve_publish)
        bus.serve("stop", self._serve_stop)
        bus.serve("denoise", self._serve_denoise)
        bus.on("to_connection", self._to_connection)
        bus.on("page_closed", self._page_closed)

    # the listener's node ---------------------------------------------------------

    def _who(self, user: User) -> dict[str, Any]:
        return {"id": int(user["id"]), "username": str(user["username"])}

    async def listen(
        self, node: str, user: User, page: Page | None, username: str, sdp: str, signal: str
    ) -> dict[str, Any]:
        body = {
            "user": self._who(user), "from": self._bus.node_id,
            "connection": None if page is None else page.connection_id,
            "username": username, "sdp": sdp, "signal": signal,
        }
        try:
            reply = await self._bus.request(node, "listen", body, timeout=LISTEN_TIMEOUT)
        except BusRequestFailed as failed:
            self.log.warn("Listening through node {node} failed: {error}", node=node, error=str(failed))
            raise DenoiseCastError(503, "node_unreachable", "The server holding that broadcast is unreachable.") from None
        message = _raise_refusal(reply)
        if page is not None:
            self.relayed[(int(user["id"]), username.lower())] = (node, page, str(message.get("user", username)))
        return message

    async def unlisten(self, node: str, user: User, username: str) -> dict[str, Any]:
        self.relayed.pop((int(user["id"]), username.lower()), None)
        return await self._ask(node, "unlisten", {"user": self._who(user), "username": username})

    async def set_signal(self, node: str, user: User, username: str, signal: str) -> dict[str, Any]:
        return await self._ask(node, "signal", {"user": self._who(user), "username": username, "signal": signal})

    async def publish(self, node: str, user: User, page: Page, sdp: str) -> dict[str, Any]:
        """Place the user's new broadcast on C{node}; its answer carries that node's candidates."""
        body = {"user": self._who(user), "from": self._bus.node_id, "connection": page.connection_id, "sdp": sdp}
        message = await self._ask(node, "publish", body, timeout=LISTEN_TIMEOUT)
        self.placed[int(user["id"])] = (node, page, str(user["username"]))
        self.log.info("{user}'s broadcast placed on node {node}", user=user["username"], node=node)
        return message

    async def stop(self, node: str, user: User, reason: str) -> dict[str, Any]:
        self.placed.pop(int(user["id"]), None)
        return await self._ask(node, "stop", {"user": self._who(user), "reason": reason})

    async def set_denoise(
        self, node: str, user: User, enabled: bool | None, atten_lim_db: float | None
    ) -> dict[str, Any]:
        return await self._ask(
            node, "denoise", {"user": self._who(user), "enabled": enabled, "atten_lim_db": atten_lim_db}
        )

    async def _ask(
        self, node: str, method: str, body: dict[str, Any], timeout: float = DEFAULT_REQUEST_TIMEOUT
    ) -> dict[str, Any]:
        try:
            return _raise_refusal(await self._bus.request(node, method, body, timeout=timeout))
        except BusRequestFailed:
            raise DenoiseCastError(503, "node_unreachable", "The server holding that broadcast is unreachable.") from None

    def page_closed(self, page: Any) -> None:
        """
        A page of this node closed: the nodes holding its relayed listens
        drop them, and those holding its placed broadcast detach it.
        """
        told: set[str] = set()
        nodes: list[str] = []
        for key, (node, held, _) in list(self.relayed.items()):
            if held is page:
                del self.relayed[key]
                nodes.append(node)
        for user_id, (node, held, _) in list(self.placed.items()):
            if held is page:
                del self.placed[user_id]
                nodes.append(node)
        for node in nodes:
            if node not in told:
                told.add(node)
                self._bus.publish("page_closed", target=node, connection=page.connection_id)

    def _to_connection(self, event: Event) -> None:
        if event.get("target") != self._bus.node_id:
            return
        page = self._find_page(str(event.get("connection")))
        message = event.get("message")
        if page is None or not isinstance(message, dict):
            return
        if message.get("type") == "ended" and message.get("role") == "publish":
            for user_id, (_, held, _name) in list(self.placed.items()):
                if held is page:
                    del self.placed[user_id]
        if message.get("type") == "ended" and message.get("role") == "listen":
            for key, (_, relayed_page, _name) in list(self.relayed.items()):
                if relayed_page is page and key[1] == str(message.get("user", "")).lower():
                    del self.relayed[key]
        page.send_message(message)

    # the broadcast's node --------------------------------------------------------

    def _page(self, node: str, connection_id: str) -> RemotePage:
        key = (node, connection_id)
        page = self._remote_pages.get(key)
        if page is None:
            page = self._remote_pages[key] = RemotePage(self._bus, node, connection_id)
        return page

    async def _serve_listen(self, body: dict[str, Any]) -> dict[str, Any]:
        user: User = dict(body["user"])
        connection = body.get("connection")
        # No connection: a plain HTTP listen, told nothing later (as on its own node).
        page = None if connection is None else self._page(str(body["from"]), str(connection))
        try:
            message = await self._listening.listen(
                user, page, str(body["username"]), str(body["sdp"]), str(body.get("signal", "denoised"))
            )
        except DenoiseCastError as error:
            return _refusal(error)
        return {"message": message}

    async def _serve_unlisten(self, body: dict[str, Any]) -> dict[str, Any]:
        try:
            return {"message": await self._listening.unlisten(dict(body["user"]), str(body["username"]))}
        except DenoiseCastError as error:
            return _refusal(error)

    async def _serve_signal(self, body: dict[str, Any]) -> dict[str, Any]:
        try:
            return {
                "message": self._listening.set_signal(dict(body["user"]), str(body["username"]), str(body["signal"]))
            }
        except DenoiseCastError as error:
            return _refusal(error)

    async def _serve_publish(self, body: dict[str, Any]) -> dict[str, Any]:
        page = self._page(str(body["from"]), str(body["connection"]))
        try:
            return {"message": await self._broadcasts.publish_here(dict(body["user"]), page, str(body["sdp"]))}
        except DenoiseCastError as error:
            return _refusal(error)

    async def _serve_stop(self, body: dict[str, Any]) -> dict[str, Any]:
        try:
            return {"message": await self._broadcasts.stop(dict(body["user"]), str(body.get("reason", "stopped")))}
        except DenoiseCastError as error:
            return _refusal(error)

    async def _serve_denoise(self, body: dict[str, Any]) -> dict[str, Any]:
        enabled, atten = body.get("enabled"), body.get("atten_lim_db")
        try:
            message = await self._broadcasts.set_denoise(
                dict(body["user"]), None if enabled is None else bool(enabled), None if atten is None else float(atten)
            )
        except DenoiseCastError as error:
            return _refusal(error)
        return {"message": message}

    def _page_closed(self, event: Event) -> None:
        if event.get("target") != self._bus.node_id:
            return
        page = self._remote_pages.pop((str(event["node"]), str(event.get("connection"))), None)
        if page is not None:
            self._connection_closed(page)

    # either side -----------------------------------------------------------------

    def node_gone(self, node: str) -> None:
        """A node died: listens relayed to it end (their pages are told), and its pages' listens here end."""
        for key, (owner, page, name) in list(self.relayed.items()):
            if owner == node:
                del self.relayed[key]
                page.send_message(server_message("ended", role="listen", user=name, reason="offline"))
        for user_id, (owner, page, name) in list(self.placed.items()):
            if owner == node:
                del self.placed[user_id]
                page.send_message(server_message("ended", role="publish", user=name, reason="connection_lost"))
        for (page_node, connection), page in list(self._remote_pages.items()):
            if page_node == node:
                del self._remote_pages[(page_node, connection)]
                self._connection_closed(page)
