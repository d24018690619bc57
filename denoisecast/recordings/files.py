"""
Recording files: Ogg/Opus written page by page, and read back.

The writer flushes every Ogg page to the file as soon as the muxer emits
it (pages of at most 200 ms), so a server killed mid-broadcast leaves a
file that decodes up to its last fraction of a second; ``recorded_duration``
is how the next start learns how much of such a file survived.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import av
import numpy as np

from denoisecast.audio.opus import RATE, TIME_BASE, OpusStream, opus_header
from denoisecast.runtime.filemodes import PRIVATE_FILE_MODE

PAGE_MICROSECONDS = 200_000


class OggOpusWriter:
    """
    Muxes 20 ms Opus packets (``denoisecast.audio.opus.OpusStream``'s) into an
    Ogg file, written as it goes.  A broadcast hands over the packets it
    encoded for its listeners, so recording costs no encoder of its own.
    """

    def __init__(self, path: Path, origin: int = 0) -> None:
        """
        C{origin} is the sample position, in the packets' timeline, that
        becomes the start of the file.
        """
        self.path = path
        self._origin = origin
        # Created owner/group-only before FFmpeg opens it (which keeps an
        # existing file's mode): recordings are private to their owner's friends.
        path.touch(mode=PRIVATE_FILE_MODE, exist_ok=True)
        self._container = av.open(
            str(path),
            "w",
            format="ogg",
            options={"page_duration": str(PAGE_MICROSECONDS)},
            container_options={"flush_packets": "1"},
        )
        stream = self._container.add_stream("libopus", rate=RATE)
        stream.codec_context.layout = "mono"
        header = opus_header()
        stream.codec_context.extradata = header
        self._pre_skip = int.from_bytes(header[10:12], "little")
        self._stream = stream
        self._encoder: OpusStream | None = None
        self.closed = False

    def write_packets(self, packets: Iterable[av.Packet]) -> None:
        """
        Append packets.  Each is copied before muxing (which rewrites its
        timestamps), because listeners' senders share the originals.
        """
        if self.closed:
            raise ValueError("recording already finalised")
        for packet in packets:
            if packet.pts is None:
                continue
            pts = packet.pts - self._origin
            if pts < -self._pre_skip:
                continue  # audio from before the file's start (an encoder that ran ahead of it)
            copy = av.Packet(bytes(packet))
            copy.pts = copy.dts = pts
            copy.duration = packet.duration
            copy.time_base = TIME_BASE
            copy.stream = self._stream
            self._container.mux(copy)

    def write(self, block: np.ndarray) -> None:
        """Encode and append float samples (for callers without packets: tools, tests)."""
        if self._encoder is None:
            self._encoder = OpusStream(self._origin)
        self.write_packets(self._encoder.encode(block))

    def close(self) -> None:
        """Write the final page (with what a C{write} encoder still holds)."""
        if self.closed:
            return
        if self._encoder is not None:
            self.write_packets(self._encoder.flush())
        self._container.close()
        self.closed = True


def recorded_duration(path: Path) -> float:
    """
    Seconds of audio a (possibly truncated) Ogg/Opus file holds, from its
    packets' timestamps; 0 for a file with no readable audio.
    """
    end: Any = 0  # an int, then a Fraction of the stream's time base
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


def _decoded_frames(path: Path) -> Iterator[av.AudioFrame]:
    """
    The file's audio as float32 48 kHz mono frames, one at a time (a
    truncated tail ends the frames; what decoded is kept).
    """
    with av.open(str(path)) as container:
        resampler = av.AudioResampler(format="flt", layout="mono", rate=RATE)
        try:
            for frame in container.decode(audio=0):
                yield from resampler.resample(frame)
        except av.error.FFmpegError:
            pass  # a truncated tail: keep what decoded
        yield from resampler.resample(None)


def decode(path: Path) -> np.ndarray:
    """
    The whole file as float32 48 kHz mono (for tests and re-processing;
    the waveform uses L{file_peaks}, which does not hold it all).
    """
    blocks = [frame.to_ndarray().reshape(-1) for frame in _decoded_frames(path)]
    return np.concatenate(blocks) if blocks else np.zeros(0, dtype=np.float32)


def file_peaks(path: Path, points: int = 512) -> list[float]:
    """
    C{peaks(decode(path), points)}, exactly, without holding the decoded
    file: a 240-minute recording is 2.7 GB of float samples, this keeps one
    frame and the C{points} maxima.

    The slices' edges depend on the decoded length, so the file is decoded
    twice: once to count samples, once to take each slice's maximum.
    Decoding Opus is cheap beside holding its output; the result is kept
    in the recording's row, so this runs once per finished recording.
    """
    try:
        total = sum(frame.samples for frame in _decoded_frames(path))
    except (av.error.FFmpegError, OSError):
        return [0.0] * points  # not audio at all
    if total == 0:
        return [0.0] * points
    edges = np.linspace(0, total, points + 1).astype(np.int64)
    maxima = np.zeros(points, dtype=np.float64)
    position = 0
    for frame in _decoded_frames(path):
        magnitude = np.abs(frame.to_ndarray().reshape(-1))
        end = position + len(magnitude)
        index = max(0, int(np.searchsorted(edges, position, side="right")) - 1)
        while index < points and edges[index] < end:
            first, last = max(int(edges[index]), position), min(int(edges[index + 1]), end)
            if last > first:
                maxima[index] = max(maxima[index], float(magnitude[first - position : last - position].max()))
            index += 1
        position = end
    return [round(min(1.0, float(value)), 4) for value in maxima]


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
