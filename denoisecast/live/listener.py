"""
Listeners: a friend's send-only peer connection to a broadcast, which
signal (denoised or raw) it hears, and taking it away again (on request,
on a new listen, when the connection is lost, when the friendship ends or
the broadcast does).  The packets themselves reach listeners through the
broadcast's delivery (C{live/broadcast.py}) and C{live/rtc/fanout.py}.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

from aiortc import RTCPeerConnection

from denoisecast.errors import forbidden, not_found
from denoisecast.handlers.access import Access
from denoisecast.live.broadcast import Broadcast, Peer, public_status
from denoisecast.live.peers import PeerConnections
from denoisecast.live.rtc.fanout import ListenerOutput
from denoisecast.protocols.messages import server_message
from denoisecast.storage.store import User


@dataclass(eq=False)
class Listener:
    user: User
    connection: Peer | None
    pc: RTCPeerConnection
    output: ListenerOutput
    signal: str


class Listening:
    """
    Everyone listening to the broadcasts in C{broadcasts} (the manager's
    table, by owner): C{spawn} runs a cleanup the manager's shutdown waits
    for; C{changed} tells the owner's friends and pages that a broadcast's
    listeners changed.
    """

    def __init__(
        self,
        broadcasts: dict[int, Broadcast],
        peers: PeerConnections,
        access: Access,
        spawn: Callable[[Coroutine[Any, Any, None]], None],
        changed: Callable[[int], None],
    ) -> None:
        self._broadcasts = broadcasts
        self._peers = peers
        self._access = access
        self._spawn = spawn
        self._changed = changed
        #: Packets dropped for listeners of ended broadcasts (live ones are added when read).
        self.dropped_before = 0

    @property
    def packets_dropped(self) -> int:
        return self.dropped_before + sum(
            listener.output.late for b in self._broadcasts.values() for listener in b.listeners.values()
        )

    def count(self) -> int:
        return sum(len(b.listeners) for b in self._broadcasts.values())

    async def _friend_broadcast(self, user: User, username: str) -> Broadcast:
        other = await self._access.listenable(user, username)
        # Unknown users and non-friends get the same answer: nothing leaks.
        if other is None:
            raise forbidden("not_friends", "Only friends can listen.")
        broadcast = self._broadcasts.get(other["id"])
        if broadcast is None:
            raise not_found("not_live", f"{other['username']} is not live.")
        return broadcast

    async def listen(
        self, user: User, connection: Peer | None, username: str, sdp: str, signal: str
    ) -> dict[str, Any]:
        broadcast = await self._friend_broadcast(user, username)
        me = user["id"]
        output = ListenerOutput()
        holder: dict[str, Listener] = {}

        def gone() -> None:
            listener = holder.get("l")
            if listener is not None and broadcast.listeners.get(me) is listener:
                self._spawn(self.drop(broadcast, listener, reason="connection_lost"))

        pc = self._peers.new(gone)
        try:
            answer = await self._peers.answer(pc, sdp, want=lambda: output.attach(pc.addTrack(output.track)))
        except BaseException:
            output.stop()
            await self._peers.close(pc)
            raise
        # Only a usable offer replaces a listen already there: a bad one changes nothing.
        while (old := broadcast.listeners.get(me)) is not None:
            await self.drop(broadcast, old, reason="replaced")
        if self._broadcasts.get(broadcast.user["id"]) is not broadcast:
            output.stop()
            await self._peers.close(pc)
            raise not_found("not_live", f"{broadcast.user['username']} is not live.")
        listener = Listener(user, connection, pc, output, signal)
        holder["l"] = listener
        broadcast.listeners[me] = listener
        self.listeners_changed(broadcast)
        return server_message(
            "answer", role="listen", user=broadcast.user["username"],
            sdp=answer, signal=signal, stream=public_status(broadcast),
        )

    def set_signal(self, user: User, username: str, signal: str) -> dict[str, Any]:
        for broadcast in self._broadcasts.values():
            if broadcast.user["username"].lower() == username.lower():
                listener = broadcast.listeners.get(user["id"])
                if listener is not None:
                    listener.signal = signal
                    return server_message("signal", user=broadcast.user["username"], signal=signal)
        raise not_found("not_listening", f"You are not listening to {username}.")

    async def unlisten(self, user: User, username: str) -> dict[str, Any]:
        for broadcast in list(self._broadcasts.values()):
            if broadcast.user["username"].lower() == username.lower():
                listener = broadcast.listeners.get(user["id"])
                if listener is not None:
                    await self.drop(broadcast, listener, reason="unlistened")
                    return server_message("unlistened", user=broadcast.user["username"])
        raise not_found("not_listening", f"You are not listening to {username}.")

    async def drop(self, broadcast: Broadcast, listener: Listener, reason: str) -> None:
        """Take a listener away; they are told why unless they asked for it."""
        if broadcast.listeners.get(listener.user["id"]) is listener:
            del broadcast.listeners[listener.user["id"]]
            self.listeners_changed(broadcast)
        listener.output.stop()
        self.dropped_before += listener.output.late
        listener.output.track.late = 0
        if listener.connection is not None and reason != "unlistened":
            listener.connection.send_message(
                server_message("ended", role="listen", user=broadcast.user["username"], reason=reason)
            )
        await self._peers.close(listener.pc)

    def listeners_changed(self, broadcast: Broadcast) -> None:
        if broadcast.connection is not None:
            broadcast.connection.send_message(server_message("listeners", count=broadcast.listener_count()))
        if self._broadcasts.get(broadcast.user["id"]) is broadcast:
            self._changed(broadcast.user["id"])

    def connection_closed(self, broadcast: Broadcast, connection: Peer) -> None:
        """A signalling connection closed: its listens to C{broadcast} end."""
        for listener in list(broadcast.listeners.values()):
            if listener.connection is connection:
                self._spawn(self.drop(broadcast, listener, reason="closed"))

    def friendship_changed(self, a: User, b: User, friends: bool) -> None:
        """An unfriended pair stops hearing each other."""
        if friends:
            return
        for one, other in ((a, b), (b, a)):
            broadcast = self._broadcasts.get(one["id"])
            if broadcast is None:
                continue
            listener = broadcast.listeners.get(other["id"])
            if listener is not None:
                self._spawn(self.drop(broadcast, listener, reason="unfriended"))
