"""
The media pieces of a broadcast around its shared Opus packets
(``denoisecast.dsp.opus``): the send track that hands the pre-encoded
packets to one listener's RTP sender, and the publisher's shorter receive
buffer.

A listener therefore costs packetisation and SRTP, never an encoder.
"""

from __future__ import annotations

import asyncio

import av
from aiortc.jitterbuffer import JitterBuffer
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from aiortc.rtcrtpreceiver import RTCRtpReceiver

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
