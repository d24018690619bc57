"""
The Ogg/Opus page muxer (``denoisecast.audio.ogg``): the checksum against
RFC 3533's definition, lacing, page layout, granule positions, and real
decoders (PyAV and, where installed, ffprobe) reading what it writes,
including a stream that joins an encoder mid-way as a late listener does.
"""

from __future__ import annotations

import io
import shutil
import struct
import subprocess
import tempfile
from pathlib import Path

import av
import numpy as np
from twisted.trial.unittest import SkipTest, SynchronousTestCase

from denoisecast.audio.ogg import (
    BEGINNING,
    END,
    MAX_PACKETS_PER_PAGE,
    OggOpusStream,
    lacing,
    ogg_crc,
    opus_samples,
    opus_tags,
    page,
)
from denoisecast.audio.opus import FRAME, OpusStream, opus_header


def reference_crc(data: bytes) -> int:
    """RFC 3533's CRC, bit by bit: polynomial 0x04C11DB7, MSB first, initial 0, no final XOR."""
    crc = 0
    for byte in data:
        crc ^= byte << 24
        for _ in range(8):
            crc = ((crc << 1) ^ 0x04C11DB7) & 0xFFFFFFFF if crc & 0x80000000 else (crc << 1) & 0xFFFFFFFF
    return crc


def parse_pages(data: bytes) -> list[dict[str, object]]:
    """Split an Ogg stream into pages, checking each page's CRC."""
    pages = []
    offset = 0
    while offset < len(data):
        assert data[offset : offset + 4] == b"OggS", offset
        _, _, flags, granule, serial, sequence, crc, count = struct.unpack_from("<4sBBqIIIB", data, offset)
        table = data[offset + 27 : offset + 27 + count]
        size = 27 + count + sum(table)
        raw = data[offset : offset + size]
        assert ogg_crc(raw[:22] + b"\0\0\0\0" + raw[26:]) == crc, f"bad CRC on page {sequence}"
        packets, body, start = [], raw[27 + count :], 0
        length = 0
        for lace in table:
            length += lace
            if lace < 255:
                packets.append(body[start : start + length])
                start += length
                length = 0
        pages.append({"flags": flags, "granule": granule, "serial": serial, "sequence": sequence, "packets": packets})
        offset += size
    return pages


def speech_like(seconds: float) -> np.ndarray:
    t = np.arange(int(48000 * seconds)) / 48000
    return (0.3 * np.sin(2 * np.pi * 220 * t) * (0.5 + 0.5 * np.sin(2 * np.pi * 2 * t))).astype(np.float32)


def encoded(seconds: float) -> list[bytes]:
    stream = OpusStream()
    packets = stream.encode(speech_like(seconds)) + stream.flush()
    return [bytes(p) for p in packets]


def near(test: SynchronousTestCase, value: float, expected: float, delta: float) -> None:
    test.assertLessEqual(abs(value - expected), delta, f"{value} is not within {delta} of {expected}")


def decode(data: bytes) -> np.ndarray:
    with av.open(io.BytesIO(data), format="ogg") as container:
        frames = [f.to_ndarray().reshape(-1) for f in container.decode(audio=0)]
    return np.concatenate(frames) if frames else np.zeros(0, dtype=np.float32)


class ChecksumTests(SynchronousTestCase):
    def test_matches_the_definition(self) -> None:
        """The zlib-based CRC equals RFC 3533's bitwise one on varied inputs."""
        rng = np.random.default_rng(1)
        for size in (0, 1, 2, 27, 255, 1000, 4096):
            data = rng.integers(0, 256, size, dtype=np.uint8).tobytes()
            self.assertEqual(ogg_crc(data), reference_crc(data), size)

    def test_ffmpeg_pages_check(self) -> None:
        """Every page of an Ogg file FFmpeg's own muxer wrote carries the CRC this computes."""
        buffer = io.BytesIO()
        with av.open(buffer, "w", format="ogg") as container:
            stream = container.add_stream("libopus", rate=48000, layout="mono")
            frame = av.AudioFrame.from_ndarray(
                (speech_like(0.5) * 32767).astype(np.int16)[None, :], format="s16", layout="mono"
            )
            frame.sample_rate = 48000
            for packet in [*stream.encode(frame), *stream.encode(None)]:
                container.mux(packet)
        pages = parse_pages(buffer.getvalue())  # checks each page's CRC
        self.assertGreater(len(pages), 2)


class PageTests(SynchronousTestCase):
    def test_lacing(self) -> None:
        """Packets become 255-byte segments and a shorter last one; a multiple of 255 ends with a 0."""
        self.assertEqual(lacing(0), b"\x00")
        self.assertEqual(lacing(100), b"\x64")
        self.assertEqual(lacing(255), b"\xff\x00")
        self.assertEqual(lacing(600), b"\xff\xff\x5a")

    def test_layout(self) -> None:
        """A page's header fields, segment table and body are where RFC 3533 puts them."""
        made = page(0x1234, 7, 960, [b"a" * 300, b"b"], BEGINNING)
        (parsed,) = parse_pages(made)
        self.assertEqual(
            parsed, {"flags": BEGINNING, "granule": 960, "serial": 0x1234, "sequence": 7, "packets": [b"a" * 300, b"b"]}
        )

    def test_too_many_segments(self) -> None:
        """A page never holds more than 255 segments."""
        with self.assertRaises(ValueError):
            page(1, 0, 0, [b"x" * 255 * 255])

    def test_opus_samples(self) -> None:
        """Durations from the TOC byte: 20 ms CELT, 2 x 10 ms SILK, 3 frames of 20 ms hybrid (code 3)."""
        self.assertEqual(opus_samples(bytes([31 << 3])), 960)
        self.assertEqual(opus_samples(bytes([(0 << 3) | 1])), 960)
        self.assertEqual(opus_samples(bytes([(13 << 3) | 3, 3])), 2880)
        self.assertEqual(opus_samples(b""), 0)
        self.assertEqual(opus_samples(encoded(0.1)[0]), FRAME)

    def test_tags(self) -> None:
        """OpusTags: magic, vendor string, no comments."""
        self.assertEqual(opus_tags("X"), b"OpusTags\x01\x00\x00\x00X\x00\x00\x00\x00")


class StreamTests(SynchronousTestCase):
    def stream(self, packets: list[bytes], per_call: int = 5) -> tuple[bytes, OggOpusStream]:
        muxer = OggOpusStream(opus_header(), 42)
        out = [muxer.headers()]
        for start in range(0, len(packets), per_call):
            out.append(muxer.pages(packets[start : start + per_call]))
        out.append(muxer.end())
        return b"".join(out), muxer

    def test_structure(self) -> None:
        """
        OpusHead alone on a beginning-of-stream page, OpusTags alone on the
        next, both at granule 0; then one page per call whose granule is the
        samples so far; an empty end page last; pages numbered in order.
        """
        packets = encoded(1.0)
        data, _ = self.stream(packets)
        pages = parse_pages(data)
        self.assertEqual(pages[0]["flags"], BEGINNING)
        self.assertEqual(pages[0]["packets"], [opus_header()])
        self.assertTrue(pages[1]["packets"][0].startswith(b"OpusTags"))  # type: ignore[index]
        self.assertEqual([p["granule"] for p in pages[:2]], [0, 0])
        audio = pages[2:-1]
        self.assertEqual([p["granule"] for p in audio], [FRAME * min(5 * (i + 1), len(packets)) for i in range(len(audio))])
        self.assertEqual(pages[-1]["flags"], END)
        self.assertEqual(pages[-1]["packets"], [])
        self.assertEqual([p["sequence"] for p in pages], list(range(len(pages))))
        self.assertEqual({p["serial"] for p in pages}, {42})
        self.assertEqual([q for p in audio for q in p["packets"]], packets)  # type: ignore[attr-defined]

    def test_big_calls_split(self) -> None:
        """More packets than a page may carry are split over several pages."""
        packets = encoded(1.5)
        _, muxer = self.stream(packets, per_call=len(packets))
        data, _ = self.stream(packets, per_call=len(packets))
        audio = parse_pages(data)[2:-1]
        self.assertEqual(len(audio), -(-len(packets) // MAX_PACKETS_PER_PAGE))
        self.assertEqual(muxer.granule, FRAME * len(packets))

    def test_pyav_decodes(self) -> None:
        """PyAV (FFmpeg's demuxer and libopus) decodes the stream to the encoded signal's length and level."""
        source = speech_like(1.0)
        data, _ = self.stream(encoded(1.0))
        decoded = decode(data)
        pre_skip = int.from_bytes(opus_header()[10:12], "little")
        near(self, len(decoded), len(source) + FRAME - pre_skip, FRAME)
        rms = lambda x: float(np.sqrt(np.mean(x**2)))  # noqa: E731
        near(self, rms(decoded[FRAME:-FRAME]), rms(source), rms(source) * 0.2)

    def test_late_joiner_decodes(self) -> None:
        """
        A stream that starts with packets from the middle of an encoder's
        output (a listener joining a broadcast that is on) decodes with
        granule positions from 0, to the length of what it carried.
        """
        packets = encoded(2.0)
        late = packets[37:]
        data, muxer = self.stream(late)
        self.assertEqual(muxer.granule, FRAME * len(late))
        decoded = decode(data)
        pre_skip = int.from_bytes(opus_header()[10:12], "little")
        near(self, len(decoded), FRAME * len(late) - pre_skip, FRAME)
        self.assertGreater(float(np.abs(decoded).max()), 0.1)

    def test_ffprobe_reads(self) -> None:
        """ffprobe (Debian's FFmpeg) reads it as one Opus stream of the expected duration."""
        if shutil.which("ffprobe") is None:
            raise SkipTest("ffprobe is not installed (scripts/setup.sh installs ffmpeg)")
        data, _ = self.stream(encoded(1.0))
        with tempfile.TemporaryDirectory() as directory:
            path = Path(directory) / "stream.ogg"
            path.write_bytes(data)
            result = subprocess.run(
                ["ffprobe", "-v", "error", "-show_entries", "stream=codec_name,sample_rate,channels:format=duration",
                 "-of", "default=nw=1", str(path)],
                capture_output=True, text=True, check=True,
            )
        fields = dict(line.split("=", 1) for line in result.stdout.split())
        self.assertEqual((fields["codec_name"], fields["sample_rate"], fields["channels"]), ("opus", "48000", "1"))
        near(self, float(fields["duration"]), 1.0, 0.05)
        self.assertEqual(result.stderr, "")

    def test_bad_head(self) -> None:
        """Only an OpusHead packet starts a stream."""
        with self.assertRaises(ValueError):
            OggOpusStream(b"nothing", 1)
