"""
Listeners from outside the browser app: a WHEP player's send-only peer
connection and a plain HTTP Ogg/Opus stream.  Each is a I{tap} on a
broadcast: it hears one signal (denoised or raw) of the broadcast's shared
Opus packets (C{Broadcast._deliver}), exactly as a browser listener does,
so a tap costs no encoder.  A person may hold several taps on one
broadcast (a phone and a car stereo), unlike the one browser listen the
WebSocket allows, so taps are kept by a session id of their own.

What opens a tap has already checked the listener's token or session; this
module applies the friends-only rule (C{Access.listenable}) and ends taps
when the broadcast ends or the friendship does.
"""

from __future__ import annotations

import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from aiortc import RTCPeerConnection

from denoisecast.audio.ogg import OggOpusStream
from denoisecast.audio.opus import opus_header
from denoisecast.errors import DenoiseCastError, forbidden, not_found
from denoisecast.handlers.access import Access
from denoisecast.live.broadcast import Broadcast
from denoisecast.live.peers import PeerConnections
from denoisecast.live.rtc.dtls import answer_as_dtls_server
from denoisecast.live.rtc.fanout import ListenerOutput, SharedPacket
from denoisecast.protocols.messages import server_message
from denoisecast.runtime.logs import logger
from denoisecast.storage.store import User

#: Taps one person may hold on one broadcast (a phone, a car stereo, a
#: WHEP player...): a friend's token cannot open thousands.
MAX_TAPS_PER_PERSON = 5
#: Seconds between checks that each tap's token (or session) is still
#: valid: revoking a token, or disabling an account, ends its streams.
RECHECK_SECONDS = 5.0
#: Seconds an HTTP listener may take nothing (its socket's buffers full)
#: before it is disconnected; meanwhile its packets are dropped.
STALL_SECONDS = 15.0


#: Asks again whether the token or session a tap was opened with is valid.
Recheck = Callable[[], Awaitable[bool]]


class Tap(Protocol):
    """What a broadcast delivers to besides its browser listeners."""

    session: str
    user: User
    signal: str
    #: Whether the credential the tap was opened with still holds (None: nothing to recheck).
    still_allowed: "Recheck | None"

    @property
    def late(self) -> int:
        """Packets this tap lost because its client could not keep up."""

    def send(self, packets: list[SharedPacket]) -> None: ...

    def stop(self, reason: str) -> None:
        """End the tap (the broadcast ended, the friendship did, the client left)."""


def new_session() -> str:
    """An unguessable session id: it is part of the WHEP session's URL."""
    return secrets.token_urlsafe(18)


@dataclass(eq=False)
class OggTap:
    """
    One HTTP listener's Ogg/Opus stream.  C{write} sends bytes to the
    client, C{finish} ends the response (C{finish(False)}: drops the
    connection without waiting for the client to read); C{now} is the clock the stall is
    measured with.  The web layer calls L{pause} and L{resume} as the
    client's connection fills and drains (Twisted's producer API): while
    paused, packets are dropped rather than buffered, so a client that
    reads slowly costs bounded memory, and one that stops reading for
    C{STALL_SECONDS} is cut off.
    """

    log = logger()

    session: str
    user: User
    signal: str
    write: Callable[[bytes], None]
    finish: Callable[[bool], None]
    now: Callable[[], float]
    stall_seconds: float = STALL_SECONDS
    late: int = 0
    on_stop: Callable[["OggTap", str], None] | None = None
    still_allowed: Recheck | None = None
    stream: OggOpusStream = field(init=False)
    paused_since: float | None = None
    stopped: str | None = None

    def __post_init__(self) -> None:
        self.stream = OggOpusStream(opus_header(), int.from_bytes(secrets.token_bytes(4), "big"))
        self.write(self.stream.headers())

    def pause(self) -> None:
        if self.paused_since is None:
            self.paused_since = self.now()

    def resume(self) -> None:
        self.paused_since = None

    def send(self, packets: list[SharedPacket]) -> None:
        if self.stopped is not None:
            return
        if self.paused_since is not None:
            self.late += len(packets)
            if self.now() - self.paused_since > self.stall_seconds:
                self.log.info(
                    "Disconnecting {user}'s HTTP stream: it read nothing for {seconds} s",
                    user=self.user["username"], seconds=self.stall_seconds,
                )
                self.stop("too_slow", end_page=False)
            return
        self.write(self.stream.pages([shared.payload for shared in packets]))

    def stop(self, reason: str, end_page: bool = True) -> None:
        """
        End the stream: an end-of-stream page (unless the client is not
        reading anyway), then the end of the response.
        """
        if self.stopped is not None:
            return
        self.stopped = reason
        if self.on_stop is not None:
            self.on_stop(self, reason)
        if end_page:
            self.write(self.stream.end())
        self.finish(end_page)


@dataclass(eq=False)
class WhepTap:
    """A WHEP player: a send-only peer connection fed like a browser listener's."""

    session: str
    user: User
    signal: str
    pc: RTCPeerConnection
    output: ListenerOutput
    close: Callable[[RTCPeerConnection], Any]
    on_stop: Callable[["WhepTap", str], None] | None = None
    still_allowed: Recheck | None = None

    @property
    def late(self) -> int:
        return self.output.late

    def send(self, packets: list[SharedPacket]) -> None:
        self.output.send(packets)

    def stop(self, reason: str) -> None:
        if self.on_stop is not None:
            self.on_stop(self, reason)
            self.on_stop = None
        self.output.stop()
        self.close(self.pc)


class Taps:
    """
    The taps on the broadcasts in C{broadcasts} (the manager's table, by
    owner).  C{changed} tells the owner's friends and pages that a
    broadcast's listeners changed; C{spawn} runs a cleanup the manager's
    shutdown waits for.
    """

    log = logger()

    def __init__(
        self,
        broadcasts: dict[int, Broadcast],
        peers: PeerConnections,
        access: Access,
        spawn: Callable[[Any], None],
        changed: Callable[[int], None],
        now: Callable[[], float],
        locate: Callable[[int], Awaitable[str | None]] | None = None,
    ) -> None:
        self._broadcasts = broadcasts
        #: The base URL of the node holding a user's broadcast when another
        #: node holds it (None: here, not live, or that node has no URL).
        self._locate = locate
        self._peers = peers
        self._access = access
        self._spawn = spawn
        self._changed = changed
        self._now = now
        #: Packets dropped by taps that have ended.
        self.dropped_before = 0

    def count(self) -> int:
        return sum(len(b.taps) for b in self._broadcasts.values())

    @property
    def packets_dropped(self) -> int:
        return self.dropped_before + sum(t.late for b in self._broadcasts.values() for t in b.taps.values())

    async def broadcast(self, user: User, username: str, where: str = "") -> Broadcast:
        """
        The live broadcast of C{username} if C{user} may listen to it: 403
        for strangers and unknown names alike (nothing leaks), 404 for a
        friend who is not live.  A broadcast held by another node is a 307
        to the same C{where} (the request's path and query) on that node:
        a tap's media and its session live on the broadcast's own node, and
        WHEP players and HTTP clients follow redirects (RFC 9725, section
        4.5), where a browser page's listen is relayed over the bus instead.
        """
        other = await self._access.listenable(user, username)
        if other is None:
            raise forbidden("not_friends", "Only friends can listen.")
        broadcast = self._broadcasts.get(other["id"])
        if broadcast is None:
            elsewhere = await self._locate(int(other["id"])) if self._locate and where else None
            if elsewhere:
                raise DenoiseCastError(
                    307, "live_elsewhere", f"{other['username']} is live on another server.",
                    {"Location": elsewhere + where},
                )
            raise not_found("not_live", f"{other['username']} is not live.")
        return broadcast

    def make_room(self, broadcast: Broadcast, user: User) -> None:
        """429 if C{user} already holds the most taps one person may on C{broadcast}."""
        held = sum(1 for tap in broadcast.taps.values() if tap.user["id"] == user["id"])
        if held >= MAX_TAPS_PER_PERSON:
            raise DenoiseCastError(
                429, "too_many_streams",
                f"You are listening to this broadcast {held} times already; close one of those first.",
            )

    def _add(self, broadcast: Broadcast, tap: OggTap | WhepTap) -> None:
        broadcast.taps[tap.session] = tap
        tap.on_stop = lambda stopped, reason: self._remove(broadcast, stopped)
        self._listeners_changed(broadcast)

    def _remove(self, broadcast: Broadcast, tap: Tap) -> None:
        session, late = tap.session, tap.late
        if broadcast.taps.get(session) is tap:
            del broadcast.taps[session]
            self.dropped_before += late
            self._listeners_changed(broadcast)

    def _listeners_changed(self, broadcast: Broadcast) -> None:
        if broadcast.connection is not None:
            broadcast.connection.send_message(server_message("listeners", count=broadcast.listener_count()))
        if self._broadcasts.get(broadcast.user["id"]) is broadcast:
            self._changed(broadcast.user["id"])

    def open_ogg(
        self, broadcast: Broadcast, user: User, signal: str,
        write: Callable[[bytes], None], finish: Callable[[bool], None], still_allowed: Recheck | None = None,
    ) -> OggTap:
        """Start an HTTP listener's stream (its header pages are written at once)."""
        self.make_room(broadcast, user)
        tap = OggTap(new_session(), user, signal, write, finish, self._now, still_allowed=still_allowed)
        self._add(broadcast, tap)
        self.log.info(
            "{listener} listens to {user} over HTTP ({signal})",
            listener=user["username"], user=broadcast.user["username"], signal=signal,
        )
        return tap

    async def open_whep(
        self, broadcast: Broadcast, user: User, sdp: str, signal: str, still_allowed: Recheck | None = None
    ) -> tuple[str, str]:
        """A WHEP player's offer: the session id and the answer."""
        self.make_room(broadcast, user)
        output = ListenerOutput()
        holder: dict[str, WhepTap] = {}

        def gone() -> None:
            tap = holder.get("t")
            if tap is not None:
                tap.stop("connection_lost")

        pc = self._peers.new(gone)

        def send_audio() -> None:
            output.attach(pc.addTrack(output.track))
            # As for publishers: GStreamer's players need aiortc as the DTLS server.
            if not answer_as_dtls_server(pc):
                self.log.warn("Cannot choose the DTLS server role; aiortc answers as the DTLS client")

        try:
            answer = await self._peers.answer(pc, sdp, want=send_audio)
        except BaseException:
            output.stop()
            await self._peers.close(pc)
            raise
        if self._broadcasts.get(broadcast.user["id"]) is not broadcast:
            output.stop()
            await self._peers.close(pc)
            raise not_found("not_live", f"{broadcast.user['username']} is not live.")
        tap = WhepTap(
            new_session(), user, signal, pc, output, lambda pc: self._spawn(self._peers.close(pc)),
            still_allowed=still_allowed,
        )
        holder["t"] = tap
        self._add(broadcast, tap)
        self.log.info(
            "{listener} listens to {user} over WHEP ({signal})",
            listener=user["username"], user=broadcast.user["username"], signal=signal,
        )
        return tap.session, answer

    def find_whep(self, session: str) -> WhepTap | None:
        for broadcast in self._broadcasts.values():
            tap = broadcast.taps.get(session)
            if isinstance(tap, WhepTap):
                return tap
        return None

    def end_all(self, broadcast: Broadcast, reason: str) -> None:
        """The broadcast ended: every tap on it ends."""
        for tap in list(broadcast.taps.values()):
            tap.stop(reason)

    async def recheck(self) -> None:
        """
        End the taps whose token was revoked or whose account was disabled
        (their friendships are followed as they change; the credentials
        are asked again every C{RECHECK_SECONDS}).
        """
        for broadcast in list(self._broadcasts.values()):
            for tap in list(broadcast.taps.values()):
                if tap.still_allowed is None:
                    continue
                try:
                    allowed = await tap.still_allowed()
                except Exception:
                    self.log.failure("Checking a listener's token failed; the listener stays")
                    continue
                if not allowed:
                    self.log.info(
                        "{listener}'s stream of {user} ends: its token or session is no longer valid",
                        listener=tap.user["username"], user=broadcast.user["username"],
                    )
                    tap.stop("revoked")

    def friendship_changed(self, a: User, b: User, friends: bool) -> None:
        """An unfriended pair stops hearing each other here too."""
        if friends:
            return
        for one, other in ((a, b), (b, a)):
            broadcast = self._broadcasts.get(one["id"])
            if broadcast is None:
                continue
            for tap in list(broadcast.taps.values()):
                if tap.user["id"] == other["id"]:
                    tap.stop("unfriended")
