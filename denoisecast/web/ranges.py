"""
Serving a file with HTTP Range support, so HTML5 players can seek.

Byte ranges per RFC 9110: a single range is answered 206 with
Content-Range; several are answered 206 as multipart/byteranges; a range
that is malformed or selects nothing is 416 with ``Content-Range: bytes
*/size``.  At most L{MAX_RANGES} ranges are accepted, and overlapping or
nearly adjacent ones are merged (RFC 9110 section 15.3.7.2 allows it), so
an answer never holds more bytes than the file plus its part headers.
Positions too long to be a file offset are read as "past any end".  An ``If-Range`` validator that no longer matches (the file
changed) turns the request into a plain 200 of the whole file, so a client
never stitches pieces of two versions together.  Units other than bytes
are ignored, as the RFC asks.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from email.utils import formatdate, parsedate_to_datetime
from pathlib import Path

from twisted.web.server import Request
from twisted.web.static import (
    MultipleRangeStaticProducer,
    NoRangeStaticProducer,
    SingleRangeStaticProducer,
    StaticProducer,
)

MAX_RANGES = 16
#: Ranges closer than this are sent as one: a part's own headers cost about as much.
MERGE_GAP = 80
#: More digits than any file offset has (2**63 has 19): such a number means "beyond the end".
_MAX_DIGITS = 18
_BEYOND = 10**_MAX_DIGITS
_SPEC = re.compile(r"\s*(\d*)\s*-\s*(\d*)\s*\Z")


def _position(digits: str) -> int:
    """
    A byte position, without turning thousands of digits into an int
    (Python refuses more than 4300 of them, and the work is quadratic).
    """
    stripped = digits.lstrip("0") or "0"
    return _BEYOND if len(stripped) > _MAX_DIGITS else int(stripped)


def merge_ranges(ranges: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """
    C{ranges} sorted, with those that overlap or lie within L{MERGE_GAP}
    bytes of each other joined.
    """
    merged: list[tuple[int, int]] = []
    for first, last in sorted(ranges):
        if merged and first <= merged[-1][1] + 1 + MERGE_GAP:
            merged[-1] = (merged[-1][0], max(merged[-1][1], last))
        else:
            merged.append((first, last))
    return merged


class Unsatisfiable(ValueError):
    """
    The Range header is malformed or selects no byte of the file.
    """


@dataclass(frozen=True)
class FileVersion:
    size: int
    etag: str
    last_modified: str
    mtime: float

    @classmethod
    def of(cls, path: Path) -> "FileVersion":
        status = path.stat()
        return cls(
            size=status.st_size,
            etag=f'"{status.st_size:x}-{status.st_mtime_ns:x}"',
            last_modified=formatdate(status.st_mtime, usegmt=True),
            mtime=status.st_mtime,
        )


def parse_ranges(header: str, size: int) -> list[tuple[int, int]] | None:
    """
    The byte ranges C{header} asks for, as inclusive (first, last) pairs
    clipped to the file, or C{None} when the header is not about bytes.

    @raise Unsatisfiable: malformed, too many ranges, or none overlaps the file.
    """
    unit, sep, specs = header.partition("=")
    if not sep or unit.strip().lower() != "bytes":
        return None
    parts = specs.split(",")
    if len(parts) > MAX_RANGES:
        raise Unsatisfiable("too many ranges")
    ranges = []
    for part in parts:
        match = _SPEC.match(part)
        if match is None:
            raise Unsatisfiable(f"malformed range {part!r}")
        first, last = match.group(1), match.group(2)
        if not first and not last:
            raise Unsatisfiable("empty range")
        if not first:
            length = _position(last)
            if length == 0:
                continue
            ranges.append((max(0, size - length), size - 1))
            continue
        start = _position(first)
        end = _position(last) if last else _BEYOND
        if end < start:
            raise Unsatisfiable(f"backwards range {part!r}")
        if start >= size:
            continue
        ranges.append((start, min(end, size - 1)))
    if not ranges:
        raise Unsatisfiable("no range overlaps the file")
    return merge_ranges(ranges)


def if_range_matches(value: str, version: FileVersion) -> bool:
    """
    Whether an If-Range validator still names this version of the file.
    """
    value = value.strip()
    if value.startswith('"') or value.startswith("W/"):
        return value == version.etag
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return False
    return int(when.timestamp()) == int(version.mtime)


def serve_file(request: Request, path: Path, content_type: str) -> int | bytes:
    """
    Answer C{request} with C{path}, honouring Range and If-Range.

    Returns what a resource's render method returns.
    """
    from twisted.web.server import NOT_DONE_YET

    version = FileVersion.of(path)
    request.setHeader(b"accept-ranges", b"bytes")
    request.setHeader(b"etag", version.etag.encode())
    request.setHeader(b"last-modified", version.last_modified.encode())
    request.setHeader(b"cache-control", b"private, no-cache")
    request.setHeader(b"x-content-type-options", b"nosniff")
    ranges = None
    header = request.getHeader("range")
    if header is not None:
        if_range = request.getHeader("if-range")
        if if_range is None or if_range_matches(if_range, version):
            try:
                ranges = parse_ranges(header, version.size)
            except Unsatisfiable:
                request.setResponseCode(416)
                request.setHeader(b"content-range", f"bytes */{version.size}".encode())
                request.setHeader(b"content-type", b"application/json")
                return b'{"error":{"code":"range_not_satisfiable","message":"The requested range is not satisfiable."}}'
    handle = open(path, "rb")
    if ranges is None:
        request.setHeader(b"content-type", content_type.encode())
        request.setHeader(b"content-length", str(version.size).encode())
        producer: StaticProducer = NoRangeStaticProducer(request, handle)
    elif len(ranges) == 1:
        (first, last), = ranges
        request.setResponseCode(206)
        request.setHeader(b"content-type", content_type.encode())
        request.setHeader(b"content-range", f"bytes {first}-{last}/{version.size}".encode())
        request.setHeader(b"content-length", str(last - first + 1).encode())
        producer = SingleRangeStaticProducer(request, handle, first, last - first + 1)
    else:
        boundary = secrets.token_hex(16)
        parts = []
        total = 0
        for first, last in ranges:
            head = (
                f"\r\n--{boundary}\r\nContent-Type: {content_type}\r\n"
                f"Content-Range: bytes {first}-{last}/{version.size}\r\n\r\n"
            ).encode()
            parts.append((head, first, last - first + 1))
            total += len(head) + last - first + 1
        tail = f"\r\n--{boundary}--\r\n".encode()
        request.setResponseCode(206)
        request.setHeader(b"content-type", f'multipart/byteranges; boundary="{boundary}"'.encode())
        request.setHeader(b"content-length", str(total + len(tail)).encode())
        producer = MultipleRangeStaticProducer(request, handle, parts + [(tail, 0, 0)])
    if request.method == b"HEAD":
        handle.close()
        return b""
    if request.channel is None:
        # The client went away while the access check ran (players abort
        # requests when they seek); nothing to send.
        handle.close()
        return NOT_DONE_YET
    producer.start()
    return NOT_DONE_YET


__all__ = ["FileVersion", "Unsatisfiable", "if_range_matches", "merge_ranges", "parse_ranges", "serve_file"]
