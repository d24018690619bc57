"""
The live manager: owns every broadcast and every peer connection.

A broadcast is one user's microphone, received over WebRTC (aiortc on the
shared asyncio loop), decoded, converted to 48 kHz mono and pushed into the
denoise scheduler; the scheduler's output is Opus-encoded once per signal
and its packets go to every listener's send-only peer connection.  One
broadcast per user.  A broadcast ends on stop, on its WebSocket closing, on
ICE/DTLS failure or close, or when no audio arrived for the silence
timeout; ending always frees the scheduler slot, stops the listeners (who
are told) and updates presence.  Peer connections are cleaned up on both
"failed" and "closed".
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol, cast

import av
import numpy as np
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from twisted.internet.defer import Deferred, DeferredList, ensureDeferred
from twisted.internet.task import LoopingCall
from twisted.python.failure import Failure
from twisted.python.threadpool import ThreadPool

from denoisecast.audio import SAMPLE_RATE
from denoisecast.audio.opus import OpusStream
from denoisecast.errors import bad_request, conflict, forbidden, not_found
from denoisecast.handlers.access import Access
from denoisecast.jobs import SerialJobs
from denoisecast.live.candidates import CandidatePolicy, filter_candidates
from denoisecast.live.offers import check_offer
from denoisecast.live.rtc.fanout import ListenerOutput, SharedPacket
from denoisecast.live.rtc.media import decode_on_the_loop, shorten_receive_buffer
from denoisecast.live.rtc.seam import aio
from denoisecast.live.rtc.sockets import drain_on_read
from denoisecast.logs import logger
from denoisecast.presence import PresenceHub
from denoisecast.protocols.messages import SIGNALS, server_message
from denoisecast.recordings.disk import RecordingRefused
from denoisecast.storage.store import Store, User

#: Threads that encode broadcasts' Opus (each broadcast's blocks in order).
ENCODING_THREADS = 2
#: Seconds a broadcast whose publisher went away (page reloaded, network
#: dropped) waits for that person to publish again before it ends.
DEFAULT_RECONNECT_GRACE = 10.0
#: Audio (samples at 48 kHz) between two level reports to the broadcaster.
LEVEL_EVERY = 4800
#: The level reported for digital silence (dBFS).
SILENCE_DB = -100.0



class Peer(Protocol):
    def send_message(self, message: dict[str, Any]) -> None: ...


@dataclass(eq=False)
class Listener:
    user: User
    connection: Peer | None
    pc: RTCPeerConnection
    output: ListenerOutput
    signal: str


@dataclass(eq=False)
class Broadcast:
    log = logger()

    stream_id: str
    user: User
    connection: Peer | None
    pc: RTCPeerConnection
    live_since: datetime
    denoise: bool
    atten_lim_db: float
    handle: Any = None
    ingest: "asyncio.Task[None] | None" = None
    last_audio: float = field(default_factory=time.monotonic)
    frames_in: int = 0
    listeners: dict[int, Listener] = field(default_factory=dict)
    encoders: dict[str, OpusStream] = field(default_factory=dict)
    position: int = 0
    recording: Any = None
    #: The broadcast's queue on the live encoding pool, and the way back to the reactor.
    encoding: SerialJobs | None = None
    call_from_thread: Callable[..., None] | None = None
    #: Set while nobody publishes (page gone or media lost): the broadcast
    #: waits for its owner to come back until the grace timer fires.
    detached: Any = None
    #: Levels of the audio since the last report to the broadcaster.
    _level_samples: int = 0
    _level_energy: tuple[float, float] = (0.0, 0.0)

    def status(self) -> dict[str, Any]:
        return {
            "live_since": self.live_since,
            "denoise": self.denoise,
            "atten_lim_db": self.atten_lim_db,
            "listeners": len(self.listeners),
        }

    def report_level(self, output: np.ndarray, raw: np.ndarray) -> None:
        """
        Tell the broadcaster, a few times a second, how loud what listeners
        hear (denoised) and what the microphone sent (raw) are, so the page
        can show the noise going away.
        """
        def energy(block: np.ndarray) -> float:
            samples = block.astype(np.float64) / (32768.0 if block.dtype == np.int16 else 1.0)
            return float(np.sum(samples * samples))

        denoised, noisy = self._level_energy
        self._level_energy = (denoised + energy(output), noisy + energy(raw))
        self._level_samples += len(output)
        if self._level_samples < LEVEL_EVERY:
            return
        count = self._level_samples
        denoised, noisy = self._level_energy
        self._level_samples, self._level_energy = 0, (0.0, 0.0)
        if self.connection is None:
            return

        def db(total: float) -> float:
            rms = (total / count) ** 0.5
            return round(max(SILENCE_DB, 20.0 * float(np.log10(rms))) if rms > 0 else SILENCE_DB, 1)

        self.connection.send_message(server_message("level", denoised_db=db(denoised), raw_db=db(noisy)))

    def take_audio(self, pcm: np.ndarray) -> None:
        """The publisher's next samples, 48 kHz mono int16 (reactor thread)."""
        self.last_audio = time.monotonic()
        self.frames_in += 1
        self.handle.push(pcm)

    def on_output(self, output: np.ndarray, raw: np.ndarray) -> None:
        """
        Scheduler output (reactor thread): have each signal that someone
        listens to or that is being recorded encoded, once, and its packets
        handed to its listeners and to the recording.

        Encoding runs on the broadcast's queue on the live encoding pool
        (PyAV lets go of the GIL while libopus works, so it runs beside the
        reactor instead of taking a share of its thread); without one, it
        runs on the spot.
        """
        self.report_level(output, raw)
        recording = self.recording if self.recording is not None and self.recording.active else None
        blocks = {
            signal: block
            for signal, block in (("denoised", output), ("raw", raw))
            if recording is not None or any(listener.signal == signal for listener in self.listeners.values())
        }
        position, samples = self.position, len(output)
        self.position += samples
        if self.encoding is None or self.call_from_thread is None:
            self._deliver(position, samples, self._encode(position, blocks), recording)
            return
        call_from_thread = self.call_from_thread

        def encode() -> None:
            try:
                packets = self._encode(position, blocks)
            except Exception:
                # Fresh encoders for the next block keep both signals' timestamps on the broadcast's clock.
                self.encoders.clear()
                call_from_thread(self._encoding_failed, Failure())
                return
            call_from_thread(self._deliver, position, samples, packets, recording)

        self.encoding.submit(encode)

    def _encoding_failed(self, failure: Failure) -> None:
        """(Reactor thread.)  One block is lost; the broadcast goes on."""
        self.log.failure("Encoding a block of stream {stream} failed", failure, stream=self.stream_id)

    def _encode(self, position: int, blocks: dict[str, np.ndarray]) -> dict[str, list[SharedPacket]]:
        """(Encoding queue.)  A signal no longer wanted loses its encoder."""
        packets: dict[str, list[SharedPacket]] = {}
        for signal in SIGNALS:
            if signal not in blocks:
                self.encoders.pop(signal, None)
                continue
            encoder = self.encoders.get(signal)
            if encoder is None:
                encoder = self.encoders[signal] = OpusStream(position)
            packets[signal] = [SharedPacket.of(packet) for packet in encoder.encode(blocks[signal])]
        return packets

    def _deliver(self, position: int, samples: int, packets: dict[str, list[SharedPacket]], recording: Any) -> None:
        """(Reactor thread.)  Send to the listeners there are now, write to the recording."""
        for listener in self.listeners.values():
            shared = packets.get(listener.signal)
            if shared:
                listener.output.send(shared)
        if recording is not None and recording.active:
            recording.write(
                position,
                samples,
                [shared.packet for shared in packets["denoised"]],
                [shared.packet for shared in packets["raw"]],
            )


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
    ) -> None:
        self._grace = reconnect_grace
        self._recorder = recorder
        self._candidate_policy = candidate_policy or CandidatePolicy()
        self._reactor = reactor
        self._encoding = ThreadPool(minthreads=0, maxthreads=ENCODING_THREADS, name="denoisecast-opus")
        self._store = store
        self._access = access or Access(store)
        self._presence = presence
        self._scheduler = scheduler
        self._now = clock
        self._silence_timeout = silence_timeout
        self.broadcasts: dict[int, Broadcast] = {}
        self._starting: set[int] = set()
        self._peers: set[RTCPeerConnection] = set()
        self._cleanups: set[Deferred[None]] = set()
        self._watchdog = LoopingCall(self._check_silence)
        self._watchdog.clock = reactor
        self.observers: list[Callable[[], None]] = []
        #: Packets dropped for listeners of ended broadcasts (live ones are added when read).
        self._dropped_before = 0

    @property
    def packets_dropped(self) -> int:
        return self._dropped_before + sum(
            listener.output.late for b in self.broadcasts.values() for listener in b.listeners.values()
        )

    # lifecycle -----------------------------------------------------------------

    def start(self) -> None:
        if not self._encoding.started:
            self._encoding.start()
        if not self._watchdog.running:
            self._watchdog.start(min(1.0, self._silence_timeout / 2), now=False)

    async def shutdown(self) -> None:
        if self._watchdog.running:
            self._watchdog.stop()
        for user_id in list(self.broadcasts):
            await self._end(user_id, "shutdown")
        while self._cleanups:
            await DeferredList(list(self._cleanups))
        for pc in list(self._peers):
            await aio(pc.close())
        if self._encoding.started:
            self._encoding.stop()

    def live_status(self, user_id: int) -> dict[str, Any] | None:
        broadcast = self.broadcasts.get(user_id)
        return None if broadcast is None else broadcast.status()

    def listener_count(self) -> int:
        return sum(len(b.listeners) for b in self.broadcasts.values())

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
            live = {**self.public_status(broadcast), "detached": broadcast.detached is not None}
        return server_message("me", live=live, denoise=denoise, atten_lim_db=atten_lim_db)

    async def describe_owner(self, user: User) -> dict[str, Any]:
        """The C{me} event for a page that just connected."""
        broadcast = self.broadcasts.get(user["id"])
        if broadcast is not None:
            return self.owner_event(user["id"], broadcast.denoise, broadcast.atten_lim_db)
        prefs = await self._store.get_denoise_prefs(user["id"])
        return self.owner_event(user["id"], prefs["denoise"], prefs["atten_lim_db"])

    # peer connections ----------------------------------------------------------

    def _new_peer(self, on_gone: Callable[[], None]) -> RTCPeerConnection:
        # Explicitly empty: aiortc would otherwise ask a public STUN server,
        # which a self-hosted server must not do unasked.
        pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        self._peers.add(pc)

        @pc.on("connectionstatechange")
        def state_changed() -> None:
            if pc.connectionState in ("failed", "closed"):
                self._peers.discard(pc)
                on_gone()

        return pc

    async def _close_peer(self, pc: RTCPeerConnection) -> None:
        self._peers.discard(pc)
        try:
            await aio(pc.close())
        except Exception:
            self.log.failure("Closing a peer connection failed")

    async def _answer(self, pc: RTCPeerConnection, sdp: str, want: Callable[[], None] | None = None) -> str:
        """
        Apply a client's offer and return the answer; a bad offer is a 400.
        """
        check_offer(sdp)
        sdp, dropped = filter_candidates(sdp, self._candidate_policy)
        if dropped:
            self.log.info(
                "Ignored {count} remote ICE candidates outside the allowed networks: {addresses}",
                count=len(dropped),
                addresses=", ".join(dropped),
            )
        try:
            await aio(pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="offer")))
        except Exception as error:
            raise bad_request(f"The offer is not usable SDP: {error}", "bad_sdp") from None
        if not any(t.kind == "audio" for t in pc.getTransceivers()):
            raise bad_request("The offer has no audio.", "no_audio")
        if want is not None:
            want()
        answer = await aio(pc.createAnswer())
        await aio(pc.setLocalDescription(answer))
        if not drain_on_read(pc):
            self.log.warn("Cannot make the connection's sockets drain on read; asyncio reads one datagram per event")
        return pc.localDescription.sdp

    # publishing ----------------------------------------------------------------

    async def publish(self, user: User, connection: Peer | None, sdp: str) -> dict[str, Any]:
        me = user["id"]
        running = self.broadcasts.get(me)
        if me in self._starting or (running is not None and running.detached is None):
            raise conflict("already_live", "You are already live; stop that stream first.")
        self._starting.add(me)
        try:
            if running is not None:
                return await self._reattach(running, connection, sdp)
            return await self._publish(user, connection, sdp)
        finally:
            self._starting.discard(me)

    async def _receive(
        self, me: int, sdp: str, holder: dict[str, Broadcast]
    ) -> tuple[RTCPeerConnection, str, MediaStreamTrack, Any]:
        """
        A peer connection that receives the offer's audio: the answer, the
        track and the inline decoder (C{None} where aiortc's internals were
        not as expected).  Losing it detaches the broadcast in C{holder}.
        """
        tracks: list[MediaStreamTrack] = []

        def gone() -> None:
            broadcast = holder.get("b")
            if broadcast is not None and self.broadcasts.get(me) is broadcast and broadcast.pc is pc:
                self._detach(broadcast, "connection_lost")

        pc = self._new_peer(gone)
        pc.on("track", tracks.append)
        try:
            answer = await self._answer(pc, sdp)
            audio = [t for t in tracks if t.kind == "audio"]
            if not audio:
                raise bad_request("The offer sends no audio.", "no_audio")
            decoder = None
            for transceiver in pc.getTransceivers():
                if transceiver.kind != "audio":
                    continue
                if not shorten_receive_buffer(transceiver.receiver):
                    self.log.warn("Cannot shorten the receive buffer; aiortc's default applies")
                inline = decode_on_the_loop(transceiver.receiver)
                if inline is None:
                    self.log.warn("Cannot decode on the event loop; aiortc's decoder thread applies")
                elif transceiver.receiver.track is audio[0]:
                    decoder = inline
        except BaseException:
            await self._close_peer(pc)
            raise
        return pc, answer, audio[0], decoder

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
        broadcast.ingest = asyncio.ensure_future(self._ingest(broadcast, track))
        self.broadcasts[me] = broadcast
        await self._record(broadcast)
        self.log.info("{user} is live (stream {stream})", user=user["username"], stream=broadcast.stream_id)
        self._changed(me)
        return server_message("answer", role="publish", sdp=answer, stream=self.public_status(broadcast))

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
            await self._close_peer(pc)
            raise not_found("not_live", "That broadcast has ended; go live again.")
        old_pc, old_ingest = broadcast.pc, broadcast.ingest
        broadcast.pc, broadcast.connection = pc, connection
        if broadcast.detached is not None and broadcast.detached.active():
            broadcast.detached.cancel()
        broadcast.detached = None
        broadcast.last_audio = time.monotonic()
        if decoder is not None:
            decoder.sink = broadcast.take_audio
        broadcast.ingest = asyncio.ensure_future(self._ingest(broadcast, track))
        if old_ingest is not None:
            old_ingest.cancel()
        self._spawn(self._close_peer(old_pc))
        self.log.info("{user} is back (stream {stream})", user=broadcast.user["username"], stream=broadcast.stream_id)
        self._changed(me)
        return server_message(
            "answer", role="publish", sdp=answer, stream=self.public_status(broadcast), resumed=True
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

    async def _record(self, broadcast: Broadcast) -> None:
        """
        Start recording the broadcast; without a recorder, or when the owner's
        quota is used up or the recorder fails, the broadcast goes on unrecorded.
        """
        if self._recorder is None:
            return
        def model() -> str:
            return str(getattr(self._scheduler, "engine_info", {}).get("model", ""))

        def not_recording(reason: str) -> None:
            # The broadcast goes on; its owner learns it is no longer recorded.
            if broadcast.connection is not None:
                broadcast.connection.send_message(server_message("recording", recording=False, reason=reason))

        try:
            broadcast.recording = await self._recorder.start(
                broadcast.user, model, broadcast.denoise, broadcast.atten_lim_db,
                on_stopped=not_recording,
            )
        except RecordingRefused as refused:
            self.log.warn(
                "Not recording {user}'s broadcast: {reason} ({detail})",
                user=broadcast.user["username"], reason=refused.reason, detail=refused.detail,
            )
            not_recording(refused.reason)
        except Exception:
            self.log.failure("Cannot record {user}'s broadcast", user=broadcast.user["username"])
            not_recording("error")
        else:
            if broadcast.recording is None:
                not_recording("quota")
        if self.broadcasts.get(broadcast.user["id"]) is not broadcast and broadcast.recording is not None:
            await broadcast.recording.finish("complete")  # ended while the row was being made

    async def _ingest(self, broadcast: Broadcast, track: MediaStreamTrack) -> None:
        """
        Reads the publisher's track until it ends.  Opus normally bypasses it
        (``InlineDecoder.sink``); what comes this way (G.711, or everything
        where aiortc's internals were not as expected) is resampled here.
        """
        resampler = av.AudioResampler(format="s16", layout="mono", rate=SAMPLE_RATE)
        try:
            while True:
                frame = await track.recv()
                for out in resampler.resample(cast(av.AudioFrame, frame)):  # an audio track's frames
                    broadcast.take_audio(out.to_ndarray().reshape(-1))
        except (MediaStreamError, asyncio.CancelledError):
            return

    def public_status(self, broadcast: Broadcast) -> dict[str, Any]:
        return {"user": broadcast.user["username"], "live": True, **broadcast.status()}

    async def stop(self, user: User, reason: str) -> dict[str, Any]:
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
            await self._drop_listener(broadcast, listener, reason=gone)
        if broadcast.connection is not None:
            broadcast.connection.send_message(
                server_message("ended", role="publish", user=broadcast.user["username"], reason=reason)
            )
        self._changed(user_id)
        self._tell_owner(user_id, broadcast.denoise, broadcast.atten_lim_db)
        await self._close_peer(broadcast.pc)
        if broadcast.encoding is not None:
            # Blocks still being encoded reach the recording before it closes.
            await broadcast.encoding.flushed(self._reactor)
        if broadcast.recording is not None:
            try:
                await broadcast.recording.finish("complete")
            except Exception:
                self.log.failure("Finishing the recording of {user} failed", user=broadcast.user["username"])

    def _check_silence(self) -> None:
        now = time.monotonic()
        for user_id, broadcast in list(self.broadcasts.items()):
            if broadcast.detached is not None:
                continue  # its grace timer decides
            if now - broadcast.last_audio > self._silence_timeout:
                self._spawn(self._end(user_id, "silence"))

    async def set_denoise(self, user: User, enabled: bool | None, atten_lim_db: float | None) -> dict[str, Any]:
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

    # listening -----------------------------------------------------------------

    async def _friend_broadcast(self, user: User, username: str) -> Broadcast:
        other = await self._access.listenable(user, username)
        # Unknown users and non-friends get the same answer: nothing leaks.
        if other is None:
            raise forbidden("not_friends", "Only friends can listen.")
        broadcast = self.broadcasts.get(other["id"])
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
                self._spawn(self._drop_listener(broadcast, listener, reason="connection_lost"))

        pc = self._new_peer(gone)
        try:
            answer = await self._answer(pc, sdp, want=lambda: output.attach(pc.addTrack(output.track)))
        except BaseException:
            output.stop()
            await self._close_peer(pc)
            raise
        # Only a usable offer replaces a listen already there: a bad one changes nothing.
        while (old := broadcast.listeners.get(me)) is not None:
            await self._drop_listener(broadcast, old, reason="replaced")
        if self.broadcasts.get(broadcast.user["id"]) is not broadcast:
            output.stop()
            await self._close_peer(pc)
            raise not_found("not_live", f"{broadcast.user['username']} is not live.")
        listener = Listener(user, connection, pc, output, signal)
        holder["l"] = listener
        broadcast.listeners[me] = listener
        self._listeners_changed(broadcast)
        return server_message(
            "answer", role="listen", user=broadcast.user["username"],
            sdp=answer, signal=signal, stream=self.public_status(broadcast),
        )

    def set_signal(self, user: User, username: str, signal: str) -> dict[str, Any]:
        for broadcast in self.broadcasts.values():
            if broadcast.user["username"].lower() == username.lower():
                listener = broadcast.listeners.get(user["id"])
                if listener is not None:
                    listener.signal = signal
                    return server_message("signal", user=broadcast.user["username"], signal=signal)
        raise not_found("not_listening", f"You are not listening to {username}.")

    async def unlisten(self, user: User, username: str) -> dict[str, Any]:
        for broadcast in list(self.broadcasts.values()):
            if broadcast.user["username"].lower() == username.lower():
                listener = broadcast.listeners.get(user["id"])
                if listener is not None:
                    await self._drop_listener(broadcast, listener, reason="unlistened")
                    return server_message("unlistened", user=broadcast.user["username"])
        raise not_found("not_listening", f"You are not listening to {username}.")

    async def _drop_listener(self, broadcast: Broadcast, listener: Listener, reason: str) -> None:
        if broadcast.listeners.get(listener.user["id"]) is listener:
            del broadcast.listeners[listener.user["id"]]
            self._listeners_changed(broadcast)
        listener.output.stop()
        self._dropped_before += listener.output.late
        listener.output.track.late = 0
        if listener.connection is not None and reason != "unlistened":
            listener.connection.send_message(
                server_message("ended", role="listen", user=broadcast.user["username"], reason=reason)
            )
        await self._close_peer(listener.pc)

    def _listeners_changed(self, broadcast: Broadcast) -> None:
        if broadcast.connection is not None:
            broadcast.connection.send_message(server_message("listeners", count=len(broadcast.listeners)))
        if self.broadcasts.get(broadcast.user["id"]) is broadcast:
            self._changed(broadcast.user["id"])

    # events from elsewhere ---------------------------------------------------------

    def connection_closed(self, connection: Peer) -> None:
        for broadcast in list(self.broadcasts.values()):
            if broadcast.connection is connection:
                broadcast.connection = None
                self._detach(broadcast, "closed")
                continue
            for listener in list(broadcast.listeners.values()):
                if listener.connection is connection:
                    self._spawn(self._drop_listener(broadcast, listener, reason="closed"))

    def friendship_changed(self, a: User, b: User, friends: bool) -> None:
        if friends:
            return
        for one, other in ((a, b), (b, a)):
            broadcast = self.broadcasts.get(one["id"])
            if broadcast is None:
                continue
            listener = broadcast.listeners.get(other["id"])
            if listener is not None:
                self._spawn(self._drop_listener(broadcast, listener, reason="unfriended"))
