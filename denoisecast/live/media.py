"""
The media pieces of a broadcast: one Opus encoder per signal (denoised,
raw) whose packets are shared by every listener, and the send track that
hands those pre-encoded packets to one listener's RTP sender.

A listener therefore costs packetisation and SRTP, never an encoder.  The
encoder uses Opus's ``audio`` application (aiortc's own encoder uses
``voip``, whose high-pass filter colours music and voices).
"""

from __future__ import annotations

import asyncio
import fractions

import av
import numpy as np
from aiortc.jitterbuffer import JitterBuffer
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from aiortc.rtcrtpreceiver import RTCRtpReceiver

RATE = 48000
FRAME = 960  # 20 ms
TIME_BASE = fractions.Fraction(1, RATE)
#: Packets a listener may fall behind before the oldest is dropped (1 s).
QUEUE_PACKETS = 50


#: Frames aiortc's receiver holds before releasing the first (its own
#: default is 4, 80 ms; the server keeps 2, 40 ms: loopback and LAN
#: publishers rarely reorder more, and every frame held is latency).
RECEIVE_PREFETCH = 2


def shorten_receive_buffer(receiver: RTCRtpReceiver, prefetch: int = RECEIVE_PREFETCH) -> bool:
    """
    Give an audio receiver a jitter buffer that holds C{prefetch} frames.

    aiortc has no setting for it, so this replaces the receiver's private
    buffer before any packet arrives; if aiortc's internals change, it
    does nothing and says so (returns False).
    """
    name = "_RTCRtpReceiver__jitter_buffer"
    current = getattr(receiver, name, None)
    if not isinstance(current, JitterBuffer) or current._is_video:
        return False
    setattr(receiver, name, JitterBuffer(capacity=current.capacity, prefetch=prefetch))
    return True


class OpusStream:
    """
    Encodes a float32 48 kHz mono signal into 20 ms Opus packets.
    """

    def __init__(self, start_pts: int, bit_rate: int = 64000) -> None:
        codec = av.CodecContext.create("libopus", "w")
        codec.bit_rate = bit_rate
        codec.format = "s16"
        codec.layout = "mono"
        codec.sample_rate = RATE
        codec.time_base = TIME_BASE
        codec.options = {"application": "audio"}
        self.codec = codec
        self.pts = start_pts
        self._pending = np.zeros(0, dtype=np.float32)

    def encode(self, block: np.ndarray) -> list[av.Packet]:
        self._pending = np.concatenate([self._pending, block])
        packets: list[av.Packet] = []
        while len(self._pending) >= FRAME:
            chunk, self._pending = self._pending[:FRAME], self._pending[FRAME:]
            pcm = (np.clip(chunk, -1.0, 1.0) * 32767.0).astype(np.int16)
            frame = av.AudioFrame.from_ndarray(pcm[None, :], format="s16", layout="mono")
            frame.sample_rate = RATE
            frame.pts = self.pts
            frame.time_base = TIME_BASE
            self.pts += FRAME
            packets.extend(self.codec.encode(frame))
        return packets


class PacketTrack(MediaStreamTrack):
    """
    An audio track whose frames are pre-encoded Opus packets, for one listener.
    """

    kind = "audio"

    def __init__(self) -> None:
        super().__init__()
        self._queue: asyncio.Queue[av.Packet | None] = asyncio.Queue()
        self.late = 0

    def offer(self, packet: av.Packet) -> None:
        if self._queue.qsize() >= QUEUE_PACKETS:
            self._queue.get_nowait()
            self.late += 1
        self._queue.put_nowait(packet)

    async def recv(self) -> av.Packet:  # type: ignore[override]
        if self.readyState != "live":
            raise MediaStreamError
        packet = await self._queue.get()
        if packet is None:
            raise MediaStreamError
        return packet

    def stop(self) -> None:
        super().stop()
        self._queue.put_nowait(None)
