"""
Opus encoding of 48 kHz mono float signals into 20 ms packets.

A broadcast encodes each of its signals (denoised, raw) once; the packets
go to every listener's RTP sender and into the recording's Ogg file alike,
so neither a listener nor a recording costs an encoder.  The encoder uses
Opus's ``audio`` application (aiortc's own encoder uses ``voip``, whose
high-pass filter colours music and voices).
"""

from __future__ import annotations

import fractions
from functools import cache

import av
import numpy as np

from denoisecast.audio import SAMPLE_RATE

RATE = SAMPLE_RATE  # Opus runs at the live path's rate
FRAME = 960  # 20 ms, Opus's natural frame for speech
TIME_BASE = fractions.Fraction(1, RATE)
BIT_RATE = 64000


def _encoder() -> av.AudioCodecContext:
    codec = av.CodecContext.create("libopus", "w")
    codec.bit_rate = BIT_RATE
    codec.format = "s16"
    codec.layout = "mono"
    codec.sample_rate = RATE
    codec.time_base = TIME_BASE
    codec.options = {"application": "audio"}
    codec.open()
    return codec


@cache
def opus_header() -> bytes:
    """
    The ``OpusHead`` every ``OpusStream`` has (mono, 48 kHz, the encoder's
    pre-skip): what an Ogg file of its packets needs in its first page.
    """
    header = _encoder().extradata
    assert header is not None and header.startswith(b"OpusHead")
    return bytes(header)


class OpusStream:
    """
    Encodes a float32 48 kHz mono signal, in blocks of any length, into
    20 ms Opus packets whose timestamps continue from C{start_pts}.
    """

    def __init__(self, start_pts: int = 0) -> None:
        self.codec = _encoder()
        self.pts = start_pts
        self._pending = np.zeros(0, dtype=np.float32)

    def encode(self, block: np.ndarray) -> list[av.Packet]:
        self._pending = np.concatenate([self._pending, np.asarray(block, dtype=np.float32)])
        packets: list[av.Packet] = []
        whole = len(self._pending) - len(self._pending) % FRAME
        if whole == 0:
            return packets
        pcm = (np.clip(self._pending[:whole], -1.0, 1.0) * 32767.0).round().astype(np.int16)
        self._pending = self._pending[whole:]
        for start in range(0, whole, FRAME):
            frame = av.AudioFrame.from_ndarray(pcm[None, start : start + FRAME], format="s16", layout="mono")
            frame.sample_rate = RATE
            frame.pts = self.pts
            frame.time_base = TIME_BASE
            self.pts += FRAME
            packets.extend(self.codec.encode(frame))
        return packets

    def flush(self) -> list[av.Packet]:
        """The rest: pending samples padded to a whole frame, and what the encoder holds back."""
        packets = self.encode(np.zeros((FRAME - len(self._pending)) % FRAME, dtype=np.float32))
        return packets + list(self.codec.encode(None))
