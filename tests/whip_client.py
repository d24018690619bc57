"""
A WHIP client (RFC 9725) on aiortc, for the tests: it publishes a sound
file the way OBS or GStreamer's whipclientsink would, and checks every
answer against the RFC on its own (status, content type, Location, ETag),
independently of the server's code.

    client = WhipClient(base + "/whip/alice", token)
    answer = await client.offer(wav)        # POST: the session exists, media not yet flowing
    await client.connect()                  # apply the answer (and trickle, if asked)
    await client.stop()                     # DELETE the session

With C{trickle=True} the offer goes without its candidates and they follow
in a PATCH (``application/trickle-ice-sdpfrag``, RFC 8840), so a working
connection proves the server applied them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urljoin

import treq
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription, VideoStreamTrack
from aiortc.contrib.media import MediaPlayer
from twisted.internet import reactor
from twisted.internet.defer import ensureDeferred
from twisted.web.client import Agent, HTTPConnectionPool

from denoisecast.live.rtc.seam import aio

SDP = "application/sdp"
SDPFRAG = "application/trickle-ice-sdpfrag"


@dataclass
class HttpReply:
    status: int
    headers: dict[str, list[str]]
    body: bytes

    def header(self, name: str) -> str | None:
        values = self.headers.get(name.lower())
        return values[0] if values else None

    def all(self, name: str) -> list[str]:
        return self.headers.get(name.lower(), [])


class WhipError(Exception):
    """The server did not answer as RFC 9725 says it must."""

    def __init__(self, message: str, reply: HttpReply | None = None) -> None:
        super().__init__(f"{message}: {reply.status if reply else ''} {reply.body[:300]!r}" if reply else message)
        self.reply = reply


async def http(method: str, url: str, body: bytes | None = None, headers: dict[str, str] | None = None) -> HttpReply:
    """One request, no cookies, no redirects; every header of the answer kept."""
    agent = Agent(reactor, pool=HTTPConnectionPool(reactor, persistent=False))
    client = treq.client.HTTPClient(agent)
    response = await client.request(
        method, url, data=body, headers={k: [v] for k, v in (headers or {}).items()}, allow_redirects=False
    )
    content = await response.content()
    found: dict[str, list[str]] = {}
    for name, values in response.headers.getAllRawHeaders():
        found.setdefault(name.decode("latin-1").lower(), []).extend(v.decode("latin-1") for v in values)
    return HttpReply(response.code, found, content)


def split_candidates(sdp: str) -> tuple[str, list[str]]:
    """The SDP without its candidate and end-of-candidates lines, and the candidate lines."""
    kept, candidates = [], []
    for line in sdp.split("\r\n"):
        if line.startswith("a=candidate:"):
            candidates.append(line)
        elif line != "a=end-of-candidates":
            kept.append(line)
    return "\r\n".join(kept), candidates


def sdp_attribute(sdp: str, name: str) -> str | None:
    for line in sdp.split("\r\n"):
        if line.startswith(f"a={name}:"):
            return line.split(":", 1)[1]
    return None


@dataclass
class WhipClient:
    endpoint: str
    token: str | None
    trickle: bool = False
    pc: RTCPeerConnection | None = None
    location: str | None = None
    etag: str | None = None
    answer: str | None = None
    links: list[str] = field(default_factory=list)
    _candidates: list[str] = field(default_factory=list)
    _offer: str = ""

    def _auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"} if self.token is not None else {}

    async def post(self, offer: str, content_type: str = SDP) -> HttpReply:
        """POST an offer as it is; no checks (for the conformance tests)."""
        return await http("POST", self.endpoint, offer.encode(), {"Content-Type": content_type, **self._auth()})

    async def offer(self, source: Path, video: bool = False) -> str:
        """
        Make the peer connection sending C{source} and POST its offer;
        the answer must be 201, C{application/sdp}, with a Location and an
        ETag (this client supports trickle ICE, so it needs the tag).
        """
        self.pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        self.pc.addTrack(MediaPlayer(str(source)).audio)
        if video:  # as OBS sends: a video section beside the audio
            self.pc.addTrack(VideoStreamTrack())
        await aio(self.pc.setLocalDescription(await aio(self.pc.createOffer())))
        self._offer = self.pc.localDescription.sdp
        sdp = self._offer
        if self.trickle:
            sdp, self._candidates = split_candidates(sdp)
        reply = await self.post(sdp)
        if reply.status != 201:
            raise WhipError("POST did not answer 201 Created", reply)
        if (reply.header("content-type") or "").split(";")[0].strip() != SDP:
            raise WhipError("the answer is not application/sdp", reply)
        location = reply.header("location")
        if not location:
            raise WhipError("201 without a Location", reply)
        self.location = urljoin(self.endpoint, location)
        self.etag = reply.header("etag")
        if self.etag is None:
            raise WhipError("no ETag: a trickling client needs the ICE session's tag", reply)
        self.links = reply.all("link")
        self.answer = reply.body.decode()
        if not self.answer.startswith("v=0"):
            raise WhipError("the answer is not SDP", reply)
        return self.answer

    def fragment(self, ufrag: str | None = None) -> str:
        """The trickle-ICE fragment (RFC 8840) with this client's candidates."""
        lines = [
            f"a=ice-ufrag:{ufrag or sdp_attribute(self._offer, 'ice-ufrag')}",
            f"a=ice-pwd:{sdp_attribute(self._offer, 'ice-pwd')}",
            "m=audio 9 UDP/TLS/RTP/SAVPF 0",
            f"a=mid:{sdp_attribute(self._offer, 'mid')}",
            *self._candidates,
            "a=end-of-candidates",
        ]
        return "\r\n".join(lines) + "\r\n"

    async def patch(self, fragment: str, etag: str | None = None, content_type: str = SDPFRAG) -> HttpReply:
        assert self.location is not None
        headers = {"Content-Type": content_type, "If-Match": etag or self.etag or "*", **self._auth()}
        return await http("PATCH", self.location, fragment.encode(), headers)

    async def connect(self) -> None:
        """Apply the answer; when trickling, send the candidates (204 expected)."""
        assert self.pc is not None and self.answer is not None
        await aio(self.pc.setRemoteDescription(RTCSessionDescription(sdp=self.answer, type="answer")))
        if self.trickle:
            reply = await self.patch(self.fragment())
            if reply.status != 204:
                raise WhipError("PATCH with candidates did not answer 204", reply)

    async def delete(self) -> HttpReply:
        assert self.location is not None
        return await http("DELETE", self.location, headers=self._auth())

    async def stop(self) -> None:
        """DELETE the session (200 expected), then close the connection."""
        reply = await self.delete()
        if reply.status != 200:
            raise WhipError("DELETE did not answer 200", reply)
        await self.close()

    async def close(self) -> None:
        if self.pc is not None:
            await aio(self.pc.close())


def whip_cleanup(test: Any, client: WhipClient) -> None:
    """Close the client's peer connection when the test ends (aiortc's threads hang the process otherwise)."""
    test.addCleanup(lambda: ensureDeferred(client.close()))
