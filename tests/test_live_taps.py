"""
HTTP listeners' flow control (``live/taps.py``, ``web/routes/listen.py``):
Twisted's real HTTP channel over a test transport, a fake clock, and the
tap in between.  A client that stops reading costs bounded memory: while
its connection is full its packets are dropped, not queued, and after
``STALL_SECONDS`` it is cut off.  The broadcast's end writes an
end-of-stream page and finishes the response.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from twisted.internet.address import IPv4Address
from twisted.internet.error import ConnectionDone
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure
from twisted.trial.unittest import TestCase
from twisted.web.resource import Resource
from twisted.web.server import Site

from denoisecast.audio.ogg import END
from denoisecast.audio.opus import OpusStream
from denoisecast.live.rtc.fanout import SharedPacket
from denoisecast.live.taps import MAX_TAPS_PER_PERSON, STALL_SECONDS, Taps
from denoisecast.web.routes.listen import OggListenResource
from tests.test_audio_ogg import parse_pages, speech_like

ALICE = {"id": 1, "username": "alice"}
BOB = {"id": 2, "username": "bob"}


class FriendsOnly:
    async def listenable(self, viewer: Any, username: str) -> Any:
        return ALICE if viewer["id"] == BOB["id"] and username == "alice" else None


def packets() -> list[SharedPacket]:
    stream = OpusStream()
    return [SharedPacket.of(p) for p in stream.encode(speech_like(0.1))]


def body_of(response: bytes) -> bytes:
    """The chunked body of a raw HTTP/1.1 response, de-chunked."""
    _, _, rest = response.partition(b"\r\n\r\n")
    out = b""
    while rest:
        size_line, _, rest = rest.partition(b"\r\n")
        size = int(size_line, 16)
        if size == 0:
            break
        out, rest = out + rest[:size], rest[size + 2 :]
    return out


class HttpTapTests(TestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.broadcast = SimpleNamespace(user=ALICE, connection=None, taps={}, listener_count=lambda: 0)
        self.changed: list[int] = []
        taps = Taps(
            {ALICE["id"]: self.broadcast},  # type: ignore[dict-item]  # only what taps use
            None,  # type: ignore[arg-type]  # no peer connections here
            FriendsOnly(),  # type: ignore[arg-type]
            lambda running: None,
            self.changed.append,
            self.clock.seconds,
        )
        live = SimpleNamespace(taps=taps)
        self.taps = taps
        self.valid_tokens = {"bob-token"}

        async def bob_token(token: str) -> Any:
            return BOB if token in self.valid_tokens else None

        async def no_session(token: str) -> None:
            return None

        root = Resource()
        root.putChild(b"listen", OggListenResource(live, bob_token, no_session))  # type: ignore[arg-type]
        self.site = Site(root, timeout=None)

    def connect(self, path: bytes, method: bytes = b"GET") -> tuple[Any, StringTransport]:
        channel = self.site.buildProtocol(IPv4Address("TCP", "127.0.0.1", 5555))
        transport = StringTransport()
        channel.makeConnection(transport)
        channel.dataReceived(method + b" " + path + b" HTTP/1.1\r\nHost: example\r\nContent-Length: 0\r\n\r\n")
        return channel, transport

    def test_stream_and_clean_end(self) -> None:
        """
        A friend's token opens a chunked audio/ogg response with header
        pages at once; delivered packets arrive as a page; the broadcast's
        end writes an end-of-stream page and finishes the response.
        """
        channel, transport = self.connect(b"/listen/alice.ogg?token=bob-token")
        self.assertIn(b"200 OK", transport.value().split(b"\r\n")[0])
        self.assertIn(b"Content-Type: audio/ogg", transport.value())
        self.assertEqual(len(self.broadcast.taps), 1)
        self.assertEqual(self.changed, [ALICE["id"]])
        (tap,) = self.broadcast.taps.values()
        tap.send(packets())
        tap.stop("ended")
        self.assertEqual(self.broadcast.taps, {})
        self.assertTrue(transport.value().endswith(b"0\r\n\r\n"))
        pages = parse_pages(body_of(transport.value()))
        self.assertEqual([len(p["packets"]) for p in pages], [1, 1, 5, 0])  # type: ignore[arg-type]
        self.assertEqual(pages[-1]["flags"], END)

    def test_slow_client_dropped_then_cut_off(self) -> None:
        """
        While the connection is full (Twisted pauses its producer), packets
        are dropped, not buffered; reading again resumes the pages; a client
        that reads nothing for longer than STALL_SECONDS is disconnected.
        """
        channel, transport = self.connect(b"/listen/alice.ogg?token=bob-token")
        (tap,) = self.broadcast.taps.values()
        transport.producer.pauseProducing()  # what the transport does when its buffer passes its limit
        before = len(transport.value())
        for _ in range(10):
            tap.send(packets())
            self.clock.advance(0.1)
        self.assertEqual(len(transport.value()), before)
        self.assertEqual(tap.late, 50)
        transport.producer.resumeProducing()
        tap.send(packets())
        self.assertGreater(len(transport.value()), before)
        transport.producer.pauseProducing()
        tap.send(packets())
        self.clock.advance(STALL_SECONDS + 1)
        tap.send(packets())
        self.assertTrue(transport.disconnecting)
        self.assertEqual(self.broadcast.taps, {})

    def test_client_leaves(self) -> None:
        """A client that closes the connection leaves the broadcast's taps."""
        channel, transport = self.connect(b"/listen/alice.ogg?token=bob-token")
        channel.connectionLost(Failure(ConnectionDone()))
        self.assertEqual(self.broadcast.taps, {})

    async def test_revoked_token_ends_the_stream(self) -> None:
        """
        The periodic recheck ends a stream whose token was revoked (with an
        end page, the response finished) and leaves the others.
        """
        self.valid_tokens.add("phone-token")
        _, revoked = self.connect(b"/listen/alice.ogg?token=bob-token")
        _, kept = self.connect(b"/listen/alice.ogg?token=phone-token")
        self.assertEqual(len(self.broadcast.taps), 2)
        await self.taps.recheck()
        self.assertEqual(len(self.broadcast.taps), 2)
        self.valid_tokens.discard("bob-token")
        await self.taps.recheck()
        self.assertEqual(len(self.broadcast.taps), 1)
        self.assertTrue(revoked.value().endswith(b"0\r\n\r\n"))
        self.assertEqual(parse_pages(body_of(revoked.value()))[-1]["flags"], END)
        self.assertFalse(kept.value().endswith(b"0\r\n\r\n"))

    def test_streams_per_person(self) -> None:
        """One person holds at most MAX_TAPS_PER_PERSON streams on a broadcast; the next is a 429."""
        for _ in range(MAX_TAPS_PER_PERSON):
            _, transport = self.connect(b"/listen/alice.ogg?token=bob-token")
            self.assertIn(b"200 OK", transport.value().split(b"\r\n")[0])
        _, transport = self.connect(b"/listen/alice.ogg?token=bob-token")
        self.assertIn(b"429", transport.value().split(b"\r\n")[0])
        self.assertIn(b'"too_many_streams"', transport.value())
        self.assertEqual(len(self.broadcast.taps), MAX_TAPS_PER_PERSON)

    def test_refused(self) -> None:
        """
        No token, a bad one, a stranger's name, a path that is no stream, a
        POST: 401, 401, 403, 404, 405, each with the JSON error shape.
        """
        for path, status, method in (
            (b"/listen/alice.ogg", b"401", b"GET"),
            (b"/listen/alice.ogg?token=wrong", b"401", b"GET"),
            (b"/listen/carol.ogg?token=bob-token", b"403", b"GET"),
            (b"/listen/alice.mp3?token=bob-token", b"404", b"GET"),
            (b"/listen/alice.ogg?token=bob-token", b"405", b"POST"),
        ):
            _, transport = self.connect(path, method)
            self.assertIn(status, transport.value().split(b"\r\n")[0], path)
            self.assertIn(b'{"error":{"code":', transport.value())
        self.assertEqual(self.broadcast.taps, {})
