"""
Recording files: Ogg/Opus written page by page, and read back.

The writer flushes every Ogg page to the file as soon as the muxer emits
it (pages of at most 200 ms), so a server killed mid-broadcast leaves a
file that decodes up to its last fraction of a second; ``recorded_duration``
is how the next start learns how much of such a file survived.
"""

from __future__ import annotations

import fractions
from pathlib import Path

import av
import numpy as np

RATE = 48000
FRAME = 960  # 20 ms, Opus's natural frame for speech
TIME_BASE = fractions.Fraction(1, RATE)
PAGE_MICROSECONDS = 200_000


class OggOpusWriter:
    """
    Encodes a float32 48 kHz mono signal into an Ogg/Opus file, written as
    it goes.
    """

    def __init__(self, path: Path, bit_rate: int = 48000) -> None:
        self.path = path
        self._container = av.open(
            str(path),
            "w",
            format="ogg",
            options={"page_duration": str(PAGE_MICROSECONDS)},
            container_options={"flush_packets": "1"},
        )
        stream = self._container.add_stream("libopus", rate=RATE)
        stream.codec_context.bit_rate = bit_rate
        stream.codec_context.layout = "mono"
        stream.codec_context.format = "s16"
        stream.codec_context.options = {"application": "audio"}
        self._stream = stream
        self._pending = np.zeros(0, dtype=np.float32)
        self._pts = 0
        self.closed = False

    @property
    def samples_written(self) -> int:
        return self._pts

    def write(self, block: np.ndarray) -> None:
        """
        Append samples; whole 20 ms frames are encoded and muxed at once.
        """
        if self.closed:
            raise ValueError("recording already finalised")
        self._pending = np.concatenate([self._pending, np.asarray(block, dtype=np.float32)])
        whole = len(self._pending) - len(self._pending) % FRAME
        if whole == 0:
            return
        chunk, self._pending = self._pending[:whole], self._pending[whole:]
        pcm = (np.clip(chunk, -1.0, 1.0) * 32767.0).round().astype(np.int16)
        for start in range(0, whole, FRAME):
            frame = av.AudioFrame.from_ndarray(pcm[None, start : start + FRAME], format="s16", layout="mono")
            frame.sample_rate = RATE
            frame.pts = self._pts
            frame.time_base = TIME_BASE
            self._pts += FRAME
            for packet in self._stream.encode(frame):
                self._container.mux(packet)

    def close(self) -> None:
        """
        Encode what is pending (padded to a whole frame), flush the encoder
        and write the final page.
        """
        if self.closed:
            return
        if len(self._pending):
            self.write(np.zeros(FRAME - len(self._pending), dtype=np.float32))
        for packet in self._stream.encode(None):
            self._container.mux(packet)
        self._container.close()
        self.closed = True


def recorded_duration(path: Path) -> float:
    """
    Seconds of audio a (possibly truncated) Ogg/Opus file holds, from its
    packets' timestamps; 0 for a file with no readable audio.
    """
    end = 0
    try:
        with av.open(str(path)) as container:
            stream = container.streams.audio[0]
            base = stream.time_base or TIME_BASE
            for packet in container.demux(stream):
                if packet.pts is None:
                    continue
                end = max(end, (packet.pts + (packet.duration or 0)) * base)
    except (av.error.FFmpegError, IndexError, OSError):
        pass
    return float(end)


def decode(path: Path) -> np.ndarray:
    """
    The whole file as float32 48 kHz mono (for tests, peaks and re-processing).
    """
    blocks = []
    with av.open(str(path)) as container:
        resampler = av.AudioResampler(format="flt", layout="mono", rate=RATE)
        try:
            for frame in container.decode(audio=0):
                for out in resampler.resample(frame):
                    blocks.append(out.to_ndarray().reshape(-1))
        except av.error.FFmpegError:
            pass  # a truncated tail: keep what decoded
        for out in resampler.resample(None):
            blocks.append(out.to_ndarray().reshape(-1))
    return np.concatenate(blocks) if blocks else np.zeros(0, dtype=np.float32)


def peaks(signal: np.ndarray, points: int = 512) -> list[float]:
    """
    A waveform summary: the peak magnitude of each of C{points} equal
    slices, in [0, 1], for the browser to draw.
    """
    if len(signal) == 0:
        return [0.0] * points
    edges = np.linspace(0, len(signal), points + 1).astype(np.int64)
    magnitude = np.abs(signal)
    out = []
    for first, last in zip(edges[:-1], edges[1:]):
        out.append(float(magnitude[first:last].max()) if last > first else 0.0)
    return [round(min(1.0, value), 4) for value in out]
