"""
One broadcast: its state, the levels its owner sees, the encoding of its
output (Opus once per signal, on the broadcast's own queue) and the
delivery of the packets to its listeners and its recording.

What starts, re-attaches and ends a broadcast is the manager's
(C{live/manager.py}); who listens is C{live/listener.py}'s; the peer
connections are C{live/peers.py}'s.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol, cast

import av
import numpy as np
from aiortc import RTCPeerConnection
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from twisted.python.failure import Failure

from denoisecast.audio import SAMPLE_RATE
from denoisecast.audio.opus import OpusStream
from denoisecast.live.rtc.fanout import SharedPacket
from denoisecast.protocols.messages import SIGNALS, server_message
from denoisecast.recordings.disk import RecordingRefused
from denoisecast.runtime.jobs import SerialJobs
from denoisecast.runtime.logs import logger
from denoisecast.storage.store import User

if TYPE_CHECKING:
    from denoisecast.live.listener import Listener
    from denoisecast.live.taps import Tap

#: Audio (samples at 48 kHz) between two level reports to the broadcaster.
LEVEL_EVERY = 4800
#: The level reported for digital silence (dBFS).
SILENCE_DB = -100.0


class Peer(Protocol):
    """A client's signalling connection (the WebSocket), or what stands for it."""

    def send_message(self, message: dict[str, Any]) -> None: ...


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
    #: Listeners from outside the browser app (WHEP, HTTP), by session (C{live/taps.py}).
    taps: dict[str, Tap] = field(default_factory=dict)
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
            "listeners": self.listener_count(),
        }

    def listener_count(self) -> int:
        """Everyone listening: in the browser app, over WHEP and over HTTP."""
        return len(self.listeners) + len(self.taps)

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
            if recording is not None
            or any(listener.signal == signal for listener in self.listeners.values())
            or any(tap.signal == signal for tap in self.taps.values())
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
        for tap in list(self.taps.values()):  # a tap may end while it is sent to
            shared = packets.get(tap.signal)
            if shared:
                tap.send(shared)
        if recording is not None and recording.active:
            recording.write(
                position,
                samples,
                [shared.packet for shared in packets["denoised"]],
                [shared.packet for shared in packets["raw"]],
            )


def public_status(broadcast: Broadcast) -> dict[str, Any]:
    """What friends and the owner's pages see of a broadcast."""
    return {"user": broadcast.user["username"], "live": True, **broadcast.status()}


async def read_track(broadcast: Broadcast, track: MediaStreamTrack) -> None:
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


async def start_recording(
    broadcast: Broadcast, recorder: Any, scheduler: Any, is_current: Callable[[], bool]
) -> None:
    """
    Start recording the broadcast; without a recorder, or when the owner's
    quota is used up or the recorder fails, the broadcast goes on unrecorded.
    C{is_current} says whether the broadcast is still live once the
    recording's row exists (it may have ended meanwhile).
    """
    if recorder is None:
        return
    def model() -> str:
        return str(getattr(scheduler, "engine_info", {}).get("model", ""))

    def not_recording(reason: str) -> None:
        # The broadcast goes on; its owner learns it is no longer recorded.
        if broadcast.connection is not None:
            broadcast.connection.send_message(server_message("recording", recording=False, reason=reason))

    try:
        broadcast.recording = await recorder.start(
            broadcast.user, model, broadcast.denoise, broadcast.atten_lim_db,
            on_stopped=not_recording,
        )
    except RecordingRefused as refused:
        Broadcast.log.warn(
            "Not recording {user}'s broadcast: {reason} ({detail})",
            user=broadcast.user["username"], reason=refused.reason, detail=refused.detail,
        )
        not_recording(refused.reason)
    except Exception:
        Broadcast.log.failure("Cannot record {user}'s broadcast", user=broadcast.user["username"])
        not_recording("error")
    else:
        if broadcast.recording is None:
            not_recording("quota")
    if not is_current() and broadcast.recording is not None:
        await broadcast.recording.finish("complete")  # ended while the row was being made
