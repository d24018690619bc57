"""
Ogg pages of Opus packets, built by hand for live streams (RFC 3533, RFC 7845).

A live HTTP listener joins a broadcast at any moment and hears the
broadcast's shared Opus packets (``denoisecast.audio.opus``), so each one
needs its own Ogg stream around the same packets: header pages of its own,
granule positions that start at 0 when it joined, its own page numbers.
FFmpeg's muxer (the one recordings use) writes to files and owns the
packets' timestamps; this module only frames bytes, so one broadcast's
packets cost every listener a few dozen bytes of page header and a CRC,
never an encoder or a container object.

Pure: no Twisted, no PyAV.  The page layout, the CRC (polynomial
0x04C11DB7, not reflected, initial value 0, no final XOR) and the lacing
are RFC 3533's; the header packets and the granule positions are RFC 7845's.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Sequence

#: The largest number of packets one page carries: a page is sent as soon
#: as it is made, so this bounds a page, it never waits for one to fill.
MAX_PACKETS_PER_PAGE = 50
#: Header type flags (RFC 3533 section 6).
CONTINUED, BEGINNING, END = 0x01, 0x02, 0x04

_HEADER = struct.Struct("<4sBBqIIIB")
_MAX_SEGMENTS = 255


#: Each byte value with its bits in reverse order.
_REVERSED_BITS = bytes(int(f"{value:08b}"[::-1], 2) for value in range(256))


def ogg_crc(data: bytes) -> int:
    """
    The Ogg page checksum of C{data} (computed with the CRC field zeroed).

    Ogg's CRC is the unreflected form of the polynomial zlib's CRC-32 uses
    reflected, so it is zlib's (C speed) over the bytes with their bits
    reversed, without zlib's initial and final inversion, read backwards.
    A per-byte table loop in Python cost about 0.2 ms per page, per listener.
    """
    reflected = zlib.crc32(data.translate(_REVERSED_BITS), 0xFFFFFFFF) ^ 0xFFFFFFFF
    return int(f"{reflected:032b}"[::-1], 2)


def lacing(size: int) -> bytes:
    """The segment table entries of one packet of C{size} bytes."""
    return b"\xff" * (size // 255) + bytes((size % 255,))


def page(serial: int, sequence: int, granule: int, packets: Sequence[bytes], flags: int = 0) -> bytes:
    """
    One Ogg page holding whole C{packets}.  C{granule} is the position
    after its last packet (-1: no packet ends on this page).
    """
    segments = b"".join(lacing(len(p)) for p in packets)
    if len(segments) > _MAX_SEGMENTS:
        raise ValueError(f"{len(packets)} packets need {len(segments)} segments; a page holds 255")
    header = _HEADER.pack(b"OggS", 0, flags, granule, serial, sequence, 0, len(segments))
    body = header + segments + b"".join(packets)
    crc = ogg_crc(body)
    return body[:22] + struct.pack("<I", crc) + body[26:]


def opus_tags(vendor: str, comments: Sequence[str] = ()) -> bytes:
    """The ``OpusTags`` header packet (RFC 7845 section 5.2)."""
    encoded = vendor.encode()
    parts = [b"OpusTags", struct.pack("<I", len(encoded)), encoded, struct.pack("<I", len(comments))]
    for comment in comments:
        text = comment.encode()
        parts += [struct.pack("<I", len(text)), text]
    return b"".join(parts)


def opus_samples(packet: bytes) -> int:
    """
    The 48 kHz samples one Opus packet decodes to, from its TOC byte
    (RFC 6716 section 3.1): what its granule position advances by.
    """
    if not packet:
        return 0
    toc = packet[0]
    config = toc >> 3
    if config < 12:  # SILK: 10, 20, 40, 60 ms
        frame = (480, 960, 1920, 2880)[config % 4]
    elif config < 16:  # hybrid: 10, 20 ms
        frame = (480, 960)[config % 2]
    else:  # CELT: 2.5, 5, 10, 20 ms
        frame = (120, 240, 480, 960)[config % 4]
    code = toc & 3
    if code == 0:
        frames = 1
    elif code in (1, 2):
        frames = 2
    else:
        frames = packet[1] & 0x3F if len(packet) > 1 else 0
    return frame * frames


class OggOpusStream:
    """
    One listener's Ogg/Opus stream: header pages first, then a page per
    call with the packets given (split where a page would be too big),
    then an end page.  Granule positions count from 0 at the first packet
    this stream carries.
    """

    def __init__(self, opus_head: bytes, serial: int, vendor: str = "DenoiseCast") -> None:
        if not opus_head.startswith(b"OpusHead"):
            raise ValueError("not an OpusHead packet")
        self._head = opus_head
        self._tags = opus_tags(vendor)
        self.serial = serial & 0xFFFFFFFF
        self.sequence = 0
        self.granule = 0
        self.ended = False

    def _page(self, granule: int, packets: Sequence[bytes], flags: int = 0) -> bytes:
        made = page(self.serial, self.sequence, granule, packets, flags)
        self.sequence = (self.sequence + 1) & 0xFFFFFFFF
        return made

    def headers(self) -> bytes:
        """The two header pages: ``OpusHead`` (beginning of stream), ``OpusTags``."""
        return self._page(0, [self._head], BEGINNING) + self._page(0, [self._tags])

    def pages(self, packets: Sequence[bytes]) -> bytes:
        """Pages carrying C{packets}, in order; nothing for no packets."""
        out = []
        for start in range(0, len(packets), MAX_PACKETS_PER_PAGE):
            chunk = packets[start : start + MAX_PACKETS_PER_PAGE]
            self.granule += sum(opus_samples(p) for p in chunk)
            out.append(self._page(self.granule, chunk))
        return b"".join(out)

    def end(self) -> bytes:
        """The last page: no packets, the end-of-stream flag."""
        self.ended = True
        return self._page(self.granule, [], END)
