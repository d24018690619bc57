"""
HTTP Range serving (used for recordings): single, suffix, open-ended and
multiple ranges, malformed and out-of-bounds ranges (416), If-Range, HEAD,
and the headers players rely on.
"""

from __future__ import annotations

import os
from email.utils import formatdate
from pathlib import Path

from twisted.internet import reactor
from twisted.trial.unittest import SynchronousTestCase, TestCase
from twisted.web.resource import Resource
from twisted.web.server import Site

from denoisecast.web.ranges import Unsatisfiable, parse_ranges, serve_file
from tests.support import Client

CONTENT = bytes(range(256)) * 40  # 10240 bytes


class ParseTests(SynchronousTestCase):
    def test_forms(self) -> None:
        """
        Normal, suffix, open-ended, clipped and multiple ranges parse to
        inclusive pairs within the file.
        """
        self.assertEqual(parse_ranges("bytes=0-99", 1000), [(0, 99)])
        self.assertEqual(parse_ranges("bytes=-100", 1000), [(900, 999)])
        self.assertEqual(parse_ranges("bytes=-5000", 1000), [(0, 999)])
        self.assertEqual(parse_ranges("bytes=990-", 1000), [(990, 999)])
        self.assertEqual(parse_ranges("bytes=990-5000", 1000), [(990, 999)])
        self.assertEqual(parse_ranges("bytes= 0-0 , 100-119", 1000), [(0, 0), (100, 119)])
        self.assertIsNone(parse_ranges("items=0-5", 1000))

    def test_unsatisfiable(self) -> None:
        """
        Malformed specs, backwards ranges, ranges past the end, empty
        suffixes and too many ranges are unsatisfiable.
        """
        for header in ["bytes=abc", "bytes=5-1", "bytes=1000-", "bytes=-0", "bytes=-", "bytes=", "bytes=1-2-3",
                       "bytes=" + ",".join(["0-1"] * 17), "bytes=2000-3000"]:
            with self.assertRaises(Unsatisfiable, msg=header):
                parse_ranges(header, 1000)


class HostileRangeTests(SynchronousTestCase):
    def test_huge_numbers(self) -> None:
        """
        Numbers of thousands of digits are read as "beyond any file", as RFC
        9110 asks: a last position is clipped, a suffix is the whole file, a
        first position past the end selects nothing.
        """
        huge = "9" * 5000
        self.assertEqual(parse_ranges(f"bytes=0-{huge}", 1000), [(0, 999)])
        self.assertEqual(parse_ranges(f"bytes=-{huge}", 1000), [(0, 999)])
        self.assertEqual(parse_ranges(f"bytes=10-{huge},{huge}-", 1000), [(10, 999)])
        with self.assertRaises(Unsatisfiable):
            parse_ranges(f"bytes={huge}-", 1000)
        with self.assertRaises(Unsatisfiable):
            parse_ranges(f"bytes={huge}-{huge}", 1000)

    def test_overlapping_ranges_merged(self) -> None:
        """
        Overlapping, adjacent and nearly adjacent ranges are merged into one
        (RFC 9110 section 15.3.7.2), so no byte is sent twice: sixteen times
        the whole file is the file once.
        """
        self.assertEqual(parse_ranges("bytes=" + ",".join(["0-"] * 16), 1000), [(0, 999)])
        self.assertEqual(parse_ranges("bytes=500-599,0-99,50-149,-100", 1000), [(0, 149), (500, 599), (900, 999)])
        self.assertEqual(parse_ranges("bytes=0-9,10-19", 1000), [(0, 19)])
        self.assertEqual(parse_ranges("bytes=0-9,30-39", 1000), [(0, 39)])
        self.assertEqual(parse_ranges("bytes=0-9,500-509", 1000), [(0, 9), (500, 509)])


class FileResource(Resource):
    isLeaf = True

    def __init__(self, path: Path) -> None:
        super().__init__()
        self.path = path

    def render_GET(self, request):  # type: ignore[no-untyped-def]
        return serve_file(request, self.path, "audio/ogg")

    render_HEAD = render_GET


class ServeTests(TestCase):
    def setUp(self) -> None:
        self.path = Path(self.mktemp())
        self.path.write_bytes(CONTENT)
        os.utime(self.path, (1_700_000_000, 1_700_000_000))
        port = reactor.listenTCP(0, Site(FileResource(self.path)), interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        self.client = Client(f"http://127.0.0.1:{port.getHost().port}")

    async def test_whole_file(self) -> None:
        """
        Without Range: 200, the whole file, Content-Type, Accept-Ranges, ETag.
        """
        reply = await self.client.get("/")
        self.assertEqual(reply.status, 200)
        self.assertEqual(reply.body, CONTENT)
        self.assertEqual(reply.header("content-type"), "audio/ogg")
        self.assertEqual(reply.header("accept-ranges"), "bytes")
        self.assertIsNotNone(reply.header("etag"))

    async def test_single_ranges(self) -> None:
        """
        Normal, suffix and open-ended ranges are 206 with the right bytes
        and Content-Range.
        """
        for header, first, last in [("bytes=100-199", 100, 199), ("bytes=-10", 10230, 10239), ("bytes=10000-", 10000, 10239)]:
            reply = await self.client.get("/", headers={"Range": header})
            self.assertEqual(reply.status, 206, header)
            self.assertEqual(reply.body, CONTENT[first : last + 1], header)
            self.assertEqual(reply.header("content-range"), f"bytes {first}-{last}/10240")
            self.assertEqual(reply.header("content-type"), "audio/ogg")

    async def test_multiple_ranges(self) -> None:
        """
        Several ranges come back as multipart/byteranges with each part's
        bytes and Content-Range.
        """
        reply = await self.client.get("/", headers={"Range": "bytes=0-9,100-109"})
        self.assertEqual(reply.status, 206)
        kind = reply.header("content-type")
        self.assertTrue(kind.startswith("multipart/byteranges; boundary="), kind)
        boundary = kind.split("boundary=")[1].strip('"').encode()
        parts = [p for p in reply.body.split(b"--" + boundary) if p.strip() not in (b"", b"--")]
        self.assertEqual(len(parts), 2)
        for part, (first, last) in zip(parts, [(0, 9), (100, 109)]):
            head, _, data = part.partition(b"\r\n\r\n")
            self.assertIn(f"Content-Range: bytes {first}-{last}/10240".encode(), head)
            self.assertEqual(data[: last - first + 1], CONTENT[first : last + 1])

    async def test_unsatisfiable(self) -> None:
        """
        Malformed and out-of-bounds ranges are 416 with Content-Range */size.
        """
        for header in ["bytes=20000-", "bytes=abc", "bytes=9-3"]:
            reply = await self.client.get("/", headers={"Range": header})
            self.assertEqual(reply.status, 416, header)
            self.assertEqual(reply.header("content-range"), "bytes */10240")

    async def test_hostile_headers(self) -> None:
        """
        A 5000-digit number is served (clipped), not a 500; sixteen open
        ranges of the whole file send the file once, as a single range.
        """
        reply = await self.client.get("/", headers={"Range": "bytes=0-" + "9" * 5000})
        self.assertEqual((reply.status, reply.body), (206, CONTENT))
        reply = await self.client.get("/", headers={"Range": "bytes=" + "9" * 5000 + "-"})
        self.assertEqual(reply.status, 416)
        reply = await self.client.get("/", headers={"Range": "bytes=" + ",".join(["0-"] * 16)})
        self.assertEqual((reply.status, reply.header("content-range")), (206, "bytes 0-10239/10240"))
        self.assertEqual(reply.body, CONTENT)
        self.assertEqual(self.flushLoggedErrors(), [])

    async def test_if_range(self) -> None:
        """
        If-Range with the current ETag or date honours Range; a stale one
        gets the whole file with 200.
        """
        etag = (await self.client.get("/")).header("etag")
        fresh = await self.client.get("/", headers={"Range": "bytes=0-9", "If-Range": etag})
        self.assertEqual((fresh.status, fresh.body), (206, CONTENT[:10]))
        dated = await self.client.get(
            "/", headers={"Range": "bytes=0-9", "If-Range": formatdate(1_700_000_000, usegmt=True)}
        )
        self.assertEqual(dated.status, 206)
        stale = await self.client.get("/", headers={"Range": "bytes=0-9", "If-Range": '"old-version"'})
        self.assertEqual((stale.status, stale.body), (200, CONTENT))
        old_date = await self.client.get(
            "/", headers={"Range": "bytes=0-9", "If-Range": formatdate(1_600_000_000, usegmt=True)}
        )
        self.assertEqual(old_date.status, 200)

    async def test_head(self) -> None:
        """
        HEAD gives the headers of the GET and no body.
        """
        reply = await self.client.request("HEAD", "/", headers={"Range": "bytes=0-99"})
        self.assertEqual(reply.status, 206)
        self.assertEqual(reply.header("content-length"), "100")
        self.assertEqual(reply.body, b"")


class GoneClientTests(SynchronousTestCase):
    def test_client_gone_before_serving(self) -> None:
        """
        A client that disconnected before the file is served (players abort
        requests when they seek) is not an error.
        """
        from twisted.web.server import NOT_DONE_YET
        from twisted.web.test.requesthelper import DummyRequest

        path = Path(self.mktemp())
        path.write_bytes(CONTENT)
        request = DummyRequest([b""])
        request.channel = None
        self.assertIs(serve_file(request, path, "audio/ogg"), NOT_DONE_YET)
        self.assertEqual(request.written, [])
