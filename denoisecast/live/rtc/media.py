"""
The media pieces of a broadcast around its shared Opus packets
(``denoisecast.audio.opus``): the send track that hands the pre-encoded
packets to one listener's RTP sender, and the publisher's shorter receive
buffer.

A listener therefore costs packetisation and SRTP, never an encoder.
"""

from __future__ import annotations

import asyncio
import queue
import threading
from collections.abc import Callable
from typing import Any

import av
import numpy as np
import numpy.typing as npt
from aiortc.codecs import get_decoder
from aiortc.jitterbuffer import JitterBuffer
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from aiortc.rtcrtpreceiver import RTCRtpReceiver

from denoisecast.audio import SAMPLE_RATE
from denoisecast.runtime.logs import logger

#: Packets a listener may fall behind before the oldest is dropped (1 s).
QUEUE_PACKETS = 50


#: Complete frames aiortc's receiver holds before releasing the oldest (its
#: own default is 4, 80 ms).  The server keeps 1: a frame counts as complete
#: only once the next packet is there, and frames leave only in sequence
#: order, so a packet that arrives one late is still put back in its place;
#: what a longer hold would smooth (arrival jitter) the 100 ms chunks
#: absorb anyway.  Measured: 20 ms of the server's own latency instead of 41-64
#: ms with 2 frames (docs/performance.md).
RECEIVE_PREFETCH = 1


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




class InlineDecoder:
    """
    Stands in for the queue that an aiortc receiver feeds its decoder
    thread with, and decodes on the spot instead (on the event loop, which
    is the reactor thread).

    aiortc hands every received frame to a decoder thread and every decoded
    frame back to the loop: two thread handoffs per 20 ms frame, each a
    wake-up and a fight for the GIL.  In a profile of the server with ten
    publishers and a hundred listeners, waking other threads took half of
    the reactor thread's time.  Decoding 20 ms of Opus costs tens of
    microseconds, far less than the handoffs.  The thread aiortc starts
    with this object waits, idle, until the receiver stops.

    With a ``sink``, Opus goes further: libopus decodes straight to 48 kHz
    mono int16 (it downmixes a stereo stream itself) and the samples go to
    the sink, without the track's queue, a coroutine switch, PyAV's
    resampler and a frame object per 20 ms.  That was a third of the
    reactor thread's own work per publisher frame.  Other codecs (G.711 at
    8 kHz) still go through the track, whose reader resamples them.
    """

    log = logger()

    def __init__(self, receiver: RTCRtpReceiver) -> None:
        self._receiver = receiver
        self._decoder: Any = None
        self._codec_name: str | None = None
        self._stopped = threading.Event()
        #: Receives each decoded 20 ms of Opus as 48 kHz mono int16, on the reactor thread.
        self.sink: Callable[[npt.NDArray[np.int16]], None] | None = None
        self._mono: Any = None
        self._no_queue_logged = False

    def _track_queue(self) -> "asyncio.Queue[Any] | None":
        """
        The frame queue of the receiver's track (aiortc's private state,
        made when an offer with audio arrives); None, said once, if it is
        not what this expects.
        """
        frames = getattr(getattr(self._receiver, "_track", None), "_queue", None)
        if isinstance(frames, asyncio.Queue):
            return frames
        if not self._no_queue_logged:
            self._no_queue_logged = True
            self.log.warn("aiortc's receiver track has no frame queue; frames not sent to the sink are dropped")
        return None

    def put(self, task: Any) -> None:
        if task is None:
            self._stopped.set()
            ending = self._track_queue()
            if ending is not None:
                ending.put_nowait(None)  # the track ends
            return
        codec, encoded_frame = task
        if self.sink is not None and codec.name == "opus":
            self._to_sink(encoded_frame.data)
            return
        queue = self._track_queue()
        if queue is None:
            return
        if codec.name != self._codec_name:
            self._decoder, self._codec_name = get_decoder(codec), codec.name
        try:
            frames = self._decoder.decode(encoded_frame)
        except av.FFmpegError:
            return  # a damaged frame: Opus conceals it with the next one
        for frame in frames:
            queue.put_nowait(frame)

    def _to_sink(self, data: bytes) -> None:
        if self._mono is None:
            self._mono = av.CodecContext.create("libopus", "r")
            self._mono.format, self._mono.layout, self._mono.sample_rate = "s16", "mono", SAMPLE_RATE
        try:
            frames = self._mono.decode(av.Packet(data))
        except av.FFmpegError:
            return
        assert self.sink is not None
        for frame in frames:
            self.sink(frame.to_ndarray().reshape(-1))

    def get(self) -> None:
        """(aiortc's decoder thread.)  Nothing to do until the receiver stops."""
        self._stopped.wait()
        return None


def decode_on_the_loop(receiver: RTCRtpReceiver) -> InlineDecoder | None:
    """
    Make an audio receiver decode on the event loop (``InlineDecoder``);
    call before the connection starts receiving.  Private aiortc state
    again: if it is not what this expects, nothing changes (returns None).
    """
    name = "_RTCRtpReceiver__decoder_queue"
    if not isinstance(getattr(receiver, name, None), queue.Queue) or getattr(
        receiver, "_RTCRtpReceiver__decoder_thread", True
    ) is not None:
        return None
    decoder = InlineDecoder(receiver)
    setattr(receiver, name, decoder)
    return decoder


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

    async def recv(self) -> av.Packet:
        if self.readyState != "live":
            raise MediaStreamError
        packet = await self._queue.get()
        if packet is None:
            raise MediaStreamError
        return packet

    def stop(self) -> None:
        super().stop()
        self._queue.put_nowait(None)
