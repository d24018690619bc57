"""
The live manager: owns every broadcast and coordinates its pieces.

A broadcast is one user's microphone, received over WebRTC (aiortc on the
shared asyncio loop), decoded, converted to 48 kHz mono and pushed into the
denoise scheduler; the scheduler's output is Opus-encoded once per signal
and its packets go to every listener's send-only peer connection.  One
broadcast per user.  A broadcast ends on stop, on its WebSocket closing, on
ICE/DTLS failure or close, or when no audio arrived for the silence
timeout; ending always frees the scheduler slot, stops the listeners (who
are told) and updates presence.  Peer connections are cleaned up on both
"failed" and "closed".

This module holds a broadcast's life (publish, re-attach within the grace
period, end, silence) and what its owner's pages are told; the pieces are
C{broadcast.py} (one broadcast's state, encoding, delivery and recording),
C{listener.py} (listeners) and C{peers.py} (peer connections and answers).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable, Coroutine
from datetime import datetime
from typing import Any

from aiortc import RTCPeerConnection
from twisted.internet.defer import Deferred, DeferredList, ensureDeferred
from twisted.internet.task import LoopingCall
from twisted.python.threadpool import ThreadPool

from denoisecast.errors import conflict, not_found
from denoisecast.handlers.access import Access
from denoisecast.handlers.presence import PresenceHub
from denoisecast.live.broadcast import Broadcast, Peer, public_status, read_track, start_recording
from denoisecast.live.candidates import CandidatePolicy
from denoisecast.live.listener import Listener, Listening
from denoisecast.live.mediaports import MediaPlan
from denoisecast.live.peers import PeerConnections
from denoisecast.live.remote import Page, RemoteLive
from denoisecast.live.taps import RECHECK_SECONDS, Taps
from denoisecast.protocols.messages import server_message
from denoisecast.runtime.jobs import SerialJobs
from denoisecast.runtime.logs import logger
from denoisecast.storage.store import Store, User

__all__ = ["Broadcast", "DEFAULT_RECONNECT_GRACE", "ENCODING_THREADS", "Listener", "LiveManager", "Peer"]

#: Threads that encode broadcasts' Opus (each broadcast's blocks in order).
ENCODING_THREADS = 2
#: Seconds a broadcast whose publisher went away (page reloaded, network
#: dropped) waits for that person to publish again before it ends.
DEFAULT_RECONNECT_GRACE = 10.0


class LiveManager:
    log = logger()

    def __init__(
        self,
        store: Store,
        presence: PresenceHub,
        scheduler: Any,
        clock: Callable[[], datetime],
        reactor: Any,
        silence_timeout: float,
        recorder: Any = None,
        reconnect_grace: float = DEFAULT_RECONNECT_GRACE,
        access: Access | None = None,
        candidate_policy: CandidatePolicy | None = None,
        media: MediaPlan | None = None,
        find_page: Callable[[str], Page | None] | None = None,
    ) -> None:
        """
        @param find_page: a signaling connection of this node by its id
            (the WebSocket factory's), for listens relayed to other nodes.
        """
        self._grace = reconnect_grace
        self._recorder = recorder
        self._reactor = reactor
        self._encoding = ThreadPool(minthreads=0, maxthreads=ENCODING_THREADS, name="denoisecast-opus")
        self._store = store
        self._presence = presence
        self._scheduler = scheduler
        self._now = clock
        self._silence_timeout = silence_timeout
        self.broadcasts: dict[int, Broadcast] = {}
        self._starting: set[int] = set()
        self._peers = PeerConnections(candidate_policy or CandidatePolicy(), media)
        self._access = access or Access(store)
        self._listening = Listening(
            self.broadcasts, self._peers, self._access, self._spawn, self._changed
        )
        #: Listening across nodes: relayed from here, or served here for another node's pages.
        self.remote = RemoteLive(
            presence.bus, self._listening, self, self.connection_closed, find_page or (lambda connection_id: None)
        )
        #: Listeners from outside the browser app: WHEP players and HTTP streams.
        self.taps = Taps(
            self.broadcasts, self._peers, self._access, self._spawn, self._changed, reactor.seconds,
            self._node_url_of,
        )
        self._cleanups: set[Deferred[None]] = set()
        self._watchdog = LoopingCall(self._check_silence)
        self._watchdog.clock = reactor
        self._rechecking: Deferred[None] | None = None
        self._recheck = LoopingCall(self._recheck_taps)
        self._recheck.clock = reactor
        self.observers: list[Callable[[], None]] = []

    @property
    def packets_dropped(self) -> int:
        return self._listening.packets_dropped + self.taps.packets_dropped

    # lifecycle -----------------------------------------------------------------

    def start(self) -> None:
        if not self._encoding.started:
            self._encoding.start()
        if not self._watchdog.running:
            self._watchdog.start(min(1.0, self._silence_timeout / 2), now=False)
        if not self._recheck.running:
            self._recheck.start(RECHECK_SECONDS, now=False)

    async def shutdown(self) -> None:
        if self._watchdog.running:
            self._watchdog.stop()
        if self._recheck.running:
            self._recheck.stop()
        if self._rechecking is not None:
            await self._rechecking
        for user_id in list(self.broadcasts):
            await self._end(user_id, "shutdown")
        while self._cleanups:
            await DeferredList(list(self._cleanups))
        await self._peers.close_all()
        if self._encoding.started:
            self._encoding.stop()

    def live_status(self, user_id: int) -> dict[str, Any] | None:
        """The user's broadcast status on this node."""
        broadcast = self.broadcasts.get(user_id)
        return None if broadcast is None else broadcast.status()

    def status_anywhere(self, user_id: int) -> dict[str, Any] | None:
        """
        The user's broadcast status on whichever node holds it (from the
        live bus for another node's): every node answers the same.
        """
        local = self.live_status(user_id)
        if local is not None:
            return local
        remote = self._presence.remote.live(user_id)
        return None if remote is None else remote[1]

    @property
    def own_url(self) -> str:
        """This node's base URL as it announces it (C{--advertise-url}; "" if none)."""
        return self._presence.bus.node.url

    async def _node_url_of(self, user_id: int) -> str | None:
        """The base URL of the other node holding C{user_id}'s broadcast, if it announced one."""
        node = self._presence.live_node(user_id)
        if node is None or node == self._presence.bus.node_id:
            return None
        info = (await self._presence.bus.alive_nodes()).get(node)
        return info.url if info is not None and info.url else None

    def listener_count(self) -> int:
        return self._listening.count() + self.taps.count()

    def _spawn(self, coroutine: Coroutine[Any, Any, None]) -> None:
        """
        Run a cleanup started by an event; shutdown waits for those still running.
        """
        running = ensureDeferred(coroutine)
        self._cleanups.add(running)
        running.addErrback(lambda f: self.log.failure("Cleanup failed", f))
        running.addBoth(lambda _: self._cleanups.discard(running))

    def _changed(self, user_id: int) -> None:
        self._presence.changed(user_id)
        broadcast = self.broadcasts.get(user_id)
        if broadcast is not None:
            self._tell_owner(user_id, broadcast.denoise, broadcast.atten_lim_db)
        for observer in self.observers:
            observer()

    def _tell_owner(self, user_id: int, denoise: bool, atten_lim_db: float) -> None:
        """
        Every open page of the user learns their own state: live or not (so
        a second tab shows the broadcast), and the denoise setting.
        """
        self._presence.send_to_user(user_id, self.owner_event(user_id, denoise, atten_lim_db))

    def owner_event(self, user_id: int, denoise: bool, atten_lim_db: float) -> dict[str, Any]:
        broadcast = self.broadcasts.get(user_id)
        live = None
        if broadcast is not None:
            live = {**public_status(broadcast), "detached": broadcast.detached is not None}
        return server_message("me", live=live, denoise=denoise, atten_lim_db=atten_lim_db)

    async def describe_owner(self, user: User) -> dict[str, Any]:
        """The C{me} event for a page that just connected."""
        broadcast = self.broadcasts.get(user["id"])
        if broadcast is not None:
            return self.owner_event(user["id"], broadcast.denoise, broadcast.atten_lim_db)
        remote = self._presence.remote.live(user["id"])
        if remote is not None:
            # Live through another node: this page shows it as a second tab would.
            live = {"user": user["username"], "live": True, **remote[1], "detached": False}
            return server_message("me", live=live, denoise=remote[1]["denoise"], atten_lim_db=remote[1]["atten_lim_db"])
        prefs = await self._store.get_denoise_prefs(user["id"])
        return self.owner_event(user["id"], prefs["denoise"], prefs["atten_lim_db"])

    # publishing ----------------------------------------------------------------

    async def publish(self, user: User, connection: Peer | None, sdp: str) -> dict[str, Any]:
        """
        Go live: here, or, when this node's denoiser has no headroom and
        another node's has, on that node (the answer carries its ICE
        candidates, so the media goes there).

        A page whose user's broadcast is held by another node (a page
        reloaded onto this node within the reconnect grace) sends the offer
        there: that node re-attaches its detached broadcast (the same
        stream, listeners and recording), or refuses C{already_live}, its
        own answer reaching the page unchanged.  A WHIP publisher (no page)
        is refused here, as before.
        """
        if connection is not None:
            node = self._held_elsewhere(user)
            if node is not None:
                # The WebSocket connection is a Page (it has a connection_id); Peer does not say so.
                return await self.remote.publish(node, user, connection, sdp)  # type: ignore[arg-type]
        self._refuse_second(user)
        if connection is not None and user["id"] not in self.broadcasts:
            node = await self._placement()
            if node is not None:
                # The WebSocket connection is a Page (it has a connection_id); Peer does not say so.
                return await self.remote.publish(node, user, connection, sdp)  # type: ignore[arg-type]
        return await self.publish_here(user, connection, sdp)

    async def _placement(self) -> str | None:
        """Another node to place a new broadcast on, when this one is full; else C{None}."""
        headroom = getattr(self._scheduler, "headroom", None)
        here = headroom() if headroom is not None else None
        if here is None or here > 0 or not self._presence.bus.shared:
            return None
        me = self._presence.bus.node_id
        candidates = [
            info for info in (await self._presence.bus.alive_nodes()).values()
            if info.node_id != me and (info.headroom is None or info.headroom > 0)
        ]
        if not candidates:
            return None  # everyone is full: here, passing through raw if need be
        return max(candidates, key=lambda info: info.headroom if info.headroom is not None else 0).node_id

    def _refuse_second(self, user: User) -> None:
        me = user["id"]
        running = self.broadcasts.get(me)
        if me in self._starting or (running is not None and running.detached is None):
            raise conflict("already_live", "You are already live; stop that stream first.")
        if running is None and self._presence.live_node(me) not in (None, self._presence.bus.node_id):
            raise conflict("already_live", "You are already live (through another server); stop that stream first.")

    async def publish_here(self, user: User, connection: Peer | None, sdp: str) -> dict[str, Any]:
        """Go live on this node (also for a broadcast another node placed here)."""
        me = user["id"]
        self._refuse_second(user)
        running = self.broadcasts.get(me)
        self._starting.add(me)
        try:
            if running is not None:
                return await self._reattach(running, connection, sdp)
            return await self._publish(user, connection, sdp)
        finally:
            self._starting.discard(me)

    async def _receive(
        self, me: int, sdp: str, holder: dict[str, Broadcast]
    ) -> tuple[RTCPeerConnection, str, Any, Any]:
        """
        The publisher's receiving connection, answer, track and inline
        decoder (L{PeerConnections.receive}); losing the connection
        detaches the broadcast in C{holder}.
        """

        def gone(pc: RTCPeerConnection) -> None:
            broadcast = holder.get("b")
            if broadcast is not None and self.broadcasts.get(me) is broadcast and broadcast.pc is pc:
                self._detach(broadcast, "connection_lost")

        return await self._peers.receive(sdp, gone)

    async def _publish(self, user: User, connection: Peer | None, sdp: str) -> dict[str, Any]:
        me = user["id"]
        prefs = await self._store.get_denoise_prefs(me)
        holder: dict[str, Broadcast] = {}
        pc, answer, track, decoder = await self._receive(me, sdp, holder)
        broadcast = Broadcast(
            uuid.uuid4().hex, user, connection, pc, self._now(),
            prefs["denoise"], prefs["atten_lim_db"],
        )
        holder["b"] = broadcast
        if self._encoding.started:
            broadcast.encoding = SerialJobs(self._encoding)
            broadcast.call_from_thread = self._reactor.callFromThread
        broadcast.handle = self._scheduler.open_stream(
            broadcast.stream_id, broadcast.on_output, broadcast.denoise, broadcast.atten_lim_db,
        )
        if decoder is not None:
            # Set before the answer leaves, so before any audio can arrive.
            decoder.sink = broadcast.take_audio
        broadcast.ingest = asyncio.ensure_future(read_track(broadcast, track))
        self.broadcasts[me] = broadcast
        await start_recording(
            broadcast, self._recorder, self._scheduler, lambda: self.broadcasts.get(me) is broadcast
        )
        self.log.info("{user} is live (stream {stream})", user=user["username"], stream=broadcast.stream_id)
        self._changed(me)
        return server_message("answer", role="publish", sdp=answer, stream=public_status(broadcast))

    async def _reattach(self, broadcast: Broadcast, connection: Peer | None, sdp: str) -> dict[str, Any]:
        """
        The owner of a broadcast waiting in its grace period publishes
        again: the new microphone connection takes the old one's place, and
        the broadcast goes on with its listeners, start time and recording.
        """
        me = broadcast.user["id"]
        holder = {"b": broadcast}
        pc, answer, track, decoder = await self._receive(me, sdp, holder)
        if self.broadcasts.get(me) is not broadcast:  # ended while we negotiated
            await self._peers.close(pc)
            raise not_found("not_live", "That broadcast has ended; go live again.")
        old_pc, old_ingest = broadcast.pc, broadcast.ingest
        broadcast.pc, broadcast.connection = pc, connection
        if broadcast.detached is not None and broadcast.detached.active():
            broadcast.detached.cancel()
        broadcast.detached = None
        broadcast.last_audio = time.monotonic()
        if decoder is not None:
            decoder.sink = broadcast.take_audio
        broadcast.ingest = asyncio.ensure_future(read_track(broadcast, track))
        if old_ingest is not None:
            old_ingest.cancel()
        self._spawn(self._peers.close(old_pc))
        self.log.info("{user} is back (stream {stream})", user=broadcast.user["username"], stream=broadcast.stream_id)
        self._changed(me)
        return server_message(
            "answer", role="publish", sdp=answer, stream=public_status(broadcast), resumed=True
        )

    def _detach(self, broadcast: Broadcast, reason: str) -> None:
        """
        The publisher went away (its WebSocket closed, or its media
        connection was lost).  Without a grace period the broadcast ends;
        with one, it waits that long for its owner to publish again.
        """
        me = broadcast.user["id"]
        if self._grace <= 0:
            self._spawn(self._end(me, reason))
            return
        if broadcast.detached is not None:
            return

        def expire() -> None:
            if self.broadcasts.get(me) is broadcast and broadcast.detached is not None:
                broadcast.detached = None
                self._spawn(self._end(me, reason))

        broadcast.detached = self._reactor.callLater(self._grace, expire)
        self.log.info(
            "{user}'s broadcast waits {grace} s for its publisher: {reason}",
            user=broadcast.user["username"], grace=self._grace, reason=reason,
        )
        self._changed(me)

    def public_status(self, broadcast: Broadcast) -> dict[str, Any]:
        return public_status(broadcast)

    def all_broadcasts(self) -> list[dict[str, Any]]:
        """Every node's broadcasts, as friends see them (the admin's list)."""
        here = [self.public_status(b) for b in self.broadcasts.values()]
        return here + [
            {key: value for key, value in status.items() if key != "node"}
            for status in self._presence.remote_broadcasts()
        ]

    async def end_anywhere(self, user_id: int, reason: str) -> bool:
        """End the user's broadcast on whichever node holds it; whether there was one."""
        broadcast = self.broadcasts.get(user_id)
        if broadcast is not None:
            await self.stop(broadcast.user, reason)
            return True
        node = self._presence.live_node(user_id)
        if node is None:
            return False
        await self.remote.stop(node, {"id": user_id, "username": self._presence.name_of(user_id)}, reason)
        return True

    def _held_elsewhere(self, user: User) -> str | None:
        """The other node that holds the user's broadcast, if one does."""
        if user["id"] in self.broadcasts:
            return None
        node = self._presence.live_node(user["id"])
        return node if node is not None and node != self._presence.bus.node_id else None

    async def stop(self, user: User, reason: str) -> dict[str, Any]:
        node = self._held_elsewhere(user)
        if node is not None:
            return await self.remote.stop(node, user, reason)
        if user["id"] not in self.broadcasts:
            raise not_found("not_live", "You are not live.")
        await self._end(user["id"], reason)
        return server_message("stopped")

    async def _end(self, user_id: int, reason: str) -> None:
        broadcast = self.broadcasts.pop(user_id, None)
        if broadcast is None:
            return
        if broadcast.detached is not None and broadcast.detached.active():
            broadcast.detached.cancel()
        broadcast.detached = None
        self.log.info(
            "{user} is no longer live: {reason}", user=broadcast.user["username"], reason=reason
        )
        broadcast.handle.close()
        if broadcast.ingest is not None:
            broadcast.ingest.cancel()
        # Listeners learn whether the broadcaster ended it or went away
        # (the page closed or the connection failed, and did not come back).
        gone = "offline" if reason in ("closed", "connection_lost") else "ended"
        for listener in list(broadcast.listeners.values()):
            await self._listening.drop(broadcast, listener, reason=gone)
        self.taps.end_all(broadcast, gone)
        if broadcast.connection is not None:
            broadcast.connection.send_message(
                server_message("ended", role="publish", user=broadcast.user["username"], reason=reason)
            )
        self._changed(user_id)
        self._tell_owner(user_id, broadcast.denoise, broadcast.atten_lim_db)
        await self._peers.close(broadcast.pc)
        if broadcast.encoding is not None:
            # Blocks still being encoded reach the recording before it closes.
            await broadcast.encoding.flushed(self._reactor)
        if broadcast.recording is not None:
            try:
                await broadcast.recording.finish("complete")
            except Exception:
                self.log.failure("Finishing the recording of {user} failed", user=broadcast.user["username"])

    def _recheck_taps(self) -> None:
        """Ask again for the taps' credentials (one pass at a time)."""
        if self._rechecking is not None or not any(b.taps for b in self.broadcasts.values()):
            return
        running = self._rechecking = ensureDeferred(self.taps.recheck())

        def done(_: object) -> None:
            self._rechecking = None

        running.addErrback(lambda f: self.log.failure("Rechecking listeners failed", f))
        running.addBoth(done)

    def _check_silence(self) -> None:
        now = time.monotonic()
        for user_id, broadcast in list(self.broadcasts.items()):
            if broadcast.detached is not None:
                continue  # its grace timer decides
            if now - broadcast.last_audio > self._silence_timeout:
                self._spawn(self._end(user_id, "silence"))

    async def set_denoise(self, user: User, enabled: bool | None, atten_lim_db: float | None) -> dict[str, Any]:
        node = self._held_elsewhere(user)
        if node is not None:
            return await self.remote.set_denoise(node, user, enabled, atten_lim_db)
        me = user["id"]
        prefs = await self._store.get_denoise_prefs(me)
        if enabled is not None:
            prefs["denoise"] = enabled
        if atten_lim_db is not None:
            prefs["atten_lim_db"] = atten_lim_db
        await self._store.set_denoise_prefs(me, prefs["denoise"], prefs["atten_lim_db"])
        broadcast = self.broadcasts.get(me)
        if broadcast is not None:
            broadcast.denoise = prefs["denoise"]
            broadcast.atten_lim_db = prefs["atten_lim_db"]
            broadcast.handle.set_denoise(broadcast.denoise, broadcast.atten_lim_db)
            if broadcast.recording is not None:
                broadcast.recording.note(broadcast.denoise, broadcast.atten_lim_db)
            self._changed(me)
        else:
            self._tell_owner(me, prefs["denoise"], prefs["atten_lim_db"])
        return server_message("denoise", enabled=prefs["denoise"], atten_lim_db=prefs["atten_lim_db"])

    # listening (live/listener.py) -------------------------------------------------

    async def _owner_elsewhere(self, user: User, username: str) -> str | None:
        """
        The other node that holds C{username}'s broadcast, if it is live
        there; C{None} sends the request down the local path (which also
        gives the refusals).  A broadcast the nodes announced under that
        name is found without the database: the owning node checks that
        C{user} may listen and refuses exactly as it would its own
        listeners, so relaying costs one bus request and no query here.
        """
        if not self._presence.remote.by_node:
            return None  # no other node has anyone live (or online)
        wanted = username.lower()
        if any(str(b.user["username"]).lower() == wanted for b in self.broadcasts.values()):
            return None
        announced = self._presence.live_node_named(username)
        if announced is not None:
            return announced
        other = await self._access.listenable(user, username)
        if other is None or other["id"] in self.broadcasts:
            return None
        node = self._presence.live_node(other["id"])
        return node if node is not None and node != self._presence.bus.node_id else None

    async def listen(
        self, user: User, connection: Peer | None, username: str, sdp: str, signal: str
    ) -> dict[str, Any]:
        node = await self._owner_elsewhere(user, username)
        if node is not None:
            # The WebSocket connection is a Page (it has a connection_id); Peer does not say so.
            return await self.remote.listen(node, user, connection, username, sdp, signal)  # type: ignore[arg-type]
        return await self._listening.listen(user, connection, username, sdp, signal)

    async def set_signal(self, user: User, username: str, signal: str) -> dict[str, Any]:
        node = await self._owner_elsewhere(user, username)
        if node is not None:
            return await self.remote.set_signal(node, user, username, signal)
        return self._listening.set_signal(user, username, signal)

    async def unlisten(self, user: User, username: str) -> dict[str, Any]:
        """
        Stop listening, on the node that holds the broadcast now: the one
        the listen was relayed to, whichever node this request reaches (an
        HTTP C{DELETE} behind a balancer need not come back to the node its
        C{POST} reached).
        """
        node = await self._owner_elsewhere(user, username)
        if node is not None:
            return await self.remote.unlisten(node, user, username)
        return await self._listening.unlisten(user, username)

    # events from elsewhere ---------------------------------------------------------

    def connection_closed(self, connection: Peer) -> None:
        self.remote.page_closed(connection)
        for broadcast in list(self.broadcasts.values()):
            if broadcast.connection is connection:
                broadcast.connection = None
                self._detach(broadcast, "closed")
                continue
            self._listening.connection_closed(broadcast, connection)

    def friendship_changed(self, a: User, b: User, friends: bool) -> None:
        self._listening.friendship_changed(a, b, friends)
        self.taps.friendship_changed(a, b, friends)
