"""
WHIP (RFC 9725) against an in-process server, with the aiortc WHIP client
of tests/whip_client.py on loopback: status codes, Location, ETag, Link
and CORS headers, trickle ICE by PATCH, DELETE ending the broadcast
(presence, recording), the owner's page setting denoise on a WHIP
broadcast, and hostile SDP, headers and tokens.
"""

from __future__ import annotations

import json
from ipaddress import ip_network
from pathlib import Path
from typing import Any

import aioice.ice
from aiortc import RTCConfiguration, RTCPeerConnection
from twisted.internet import reactor
from twisted.internet.task import deferLater
from twisted.trial.unittest import TestCase

from denoisecast.live.rtc.seam import aio
from denoisecast.protocols.messages import MAX_SDP
from tests.rtc_support import noisy_speech_file, publisher
from tests.support import Client, RunningServer, start_server
from tests.test_presence import befriend
from tests.whip_client import SDP, SDPFRAG, WhipClient, http, whip_cleanup
from tests.ws_support import connect_ws

LOOPBACK = (ip_network("127.0.0.0/8"),)


async def wait_for(predicate: Any, timeout: float = 20.0, what: str = "condition") -> None:
    for _ in range(int(timeout / 0.05)):
        if predicate():
            return
        await deferLater(reactor, 0.05)
    raise AssertionError(f"{what} not met within {timeout} s")


async def make_token(client: Client, scope: str, name: str = "device") -> str:
    reply = await client.post("/api/tokens", {"name": name, "scope": scope})
    assert reply.status == 201, reply
    return reply.body["secret"]


def offer_with(sdp: str, codec_line: str, payload: str) -> str:
    """The offer's audio section reduced to one codec of our choosing."""
    out = []
    for line in sdp.split("\r\n"):
        if line.startswith("m=audio"):
            fields = line.split()
            line = " ".join(fields[:3] + [payload])
        elif line.startswith(("a=rtpmap:", "a=fmtp:", "a=rtcp-fb:")):
            continue
        elif line.startswith("a=mid:"):
            out.append(line)
            line = codec_line
        out.append(line)
    return "\r\n".join(out)


class WhipTests(TestCase):
    timeout = 120

    async def setUp(self) -> None:
        # Host candidates on loopback only, for the server and the clients alike (one process).
        self.patch(aioice.ice, "get_host_addresses", lambda use_ipv4, use_ipv6: ["127.0.0.1"] if use_ipv4 else [])
        self.running: RunningServer = await start_server(
            self,
            ice_allow_networks=LOOPBACK,
            stun_urls=("stun:stun.example.net:3478",),
            turn_urls=("turn:turn.example.net:3478?transport=udp",),
            turn_secret="s3cret",
            reconnect_grace=0.5,
        )
        self.alice, self.bob, self.carol = (self.running.client() for _ in range(3))
        for name, client in (("alice", self.alice), ("bob", self.bob), ("carol", self.carol)):
            await client.register(name)
        await befriend(self.alice, self.bob, "bob", "alice")
        self.token = await make_token(self.alice, "publish", "OBS")
        self.endpoint = self.running.base + "/whip/alice"
        self.wav: Path = noisy_speech_file(self)

    def client(self, token: str | None = None, trickle: bool = False, user: str = "alice") -> WhipClient:
        client = WhipClient(self.running.base + f"/whip/{user}", token if token is not None else self.token, trickle)
        whip_cleanup(self, client)
        return client

    @property
    def live(self) -> Any:
        return self.running.server.live

    async def alice_id(self) -> int:
        return (await self.running.server.store.get_user_by_name("alice"))["id"]

    async def audio_arrives(self, frames: int = 25) -> None:
        """Wait until the broadcast has ingested C{frames} frames (20 ms each) of audio."""
        me = await self.alice_id()
        await wait_for(
            lambda: me in self.live.broadcasts and self.live.broadcasts[me].frames_in >= frames,
            what="audio from the WHIP client",
        )

    async def test_publish_like_the_browser_then_delete(self) -> None:
        """
        A WHIP POST answers 201 with an SDP answer, a Location under the
        endpoint and an ETag, and Link headers for the STUN and TURN
        servers (TURN with time-limited credentials); the broadcast is a
        broadcast like the browser's: a friend sees it live, the owner's
        page turns denoise off and sets the strength on it, and DELETE on
        the Location ends it (a second DELETE is 404), presence says not
        live and the recording is complete.
        """
        client = self.client()
        await client.offer(self.wav)
        # The server takes the DTLS server role (live/rtc/dtls.py), so that
        # clients with RSA certificates (GStreamer) share a cipher with it.
        self.assertIn("a=setup:passive", client.answer)
        self.assertTrue(client.location.startswith(self.endpoint + "/"), client.location)
        self.assertRegex(client.etag, r'^"[^"]+"$')
        self.assertEqual(len(client.links), 2, client.links)
        self.assertIn('<stun:stun.example.net:3478>; rel="ice-server"', client.links)
        turn = next(link for link in client.links if link.startswith("<turn:"))
        self.assertRegex(turn, r'username="\d+:alice"; credential="[^"]+"; credential-type="password"')
        await client.connect()
        await self.audio_arrives()
        status = await self.bob.get("/api/streams/alice")
        self.assertEqual((status.status, status.body["live"]), (200, True))

        ws = await connect_ws(self, self.running.base, self.alice)
        reply = await ws.request({"v": 1, "type": "denoise", "enabled": False, "atten_lim_db": 12})
        self.assertEqual((reply["type"], reply["enabled"], reply["atten_lim_db"]), ("denoise", False, 12), reply)
        broadcast = self.live.broadcasts[await self.alice_id()]
        self.assertEqual((broadcast.denoise, broadcast.atten_lim_db), (False, 12))

        await client.stop()
        self.assertNotIn(await self.alice_id(), self.live.broadcasts)
        status = await self.bob.get("/api/streams/alice")
        self.assertEqual(status.body["live"], False)
        again = await client.delete()
        self.assertEqual((again.status, again.header("access-control-allow-origin")), (404, "*"))
        recordings = await self.bob.get("/api/recordings?owner=alice")
        self.assertEqual([r["status"] for r in recordings.body["recordings"]], ["complete"])

    async def test_trickle_ice(self) -> None:
        """
        An offer without candidates connects once they arrive by PATCH
        (204); a PATCH with new ICE credentials (an ICE restart) is 422, a
        stale If-Match 412, another content type 415, a garbage candidate
        400; none of them disturbs the session.
        """
        client = self.client(trickle=True)
        offer = await client.offer(self.wav)
        self.assertNotIn("a=candidate:", client._offer.split("m=audio")[0])
        self.assertTrue(offer)
        await client.connect()
        await self.audio_arrives()
        restart = await client.patch(client.fragment(ufrag="abcd"))
        self.assertEqual(restart.status, 422, restart)
        stale = await client.patch(client.fragment(), etag='"old"')
        self.assertEqual(stale.status, 412, stale)
        wrong = await client.patch(client.fragment(), content_type=SDP)
        self.assertEqual(wrong.status, 415, wrong)
        garbage = await client.patch("a=candidate:nonsense\r\n")
        self.assertEqual(garbage.status, 400, garbage)
        self.assertIn(await self.alice_id(), self.live.broadcasts)
        await client.stop()

    async def test_video_declined(self) -> None:
        """
        An offer with video beside the audio (as OBS sends) is answered
        with the video declined (inactive), so the server decodes none of
        it, and the audio is ingested as usual.
        """
        client = self.client()
        answer = await client.offer(self.wav, video=True)
        video = answer.split("m=video", 1)[1]
        self.assertIn("a=inactive", video)
        self.assertIn("a=recvonly", answer.split("m=audio", 1)[1].split("m=video")[0])
        await client.connect()
        await self.audio_arrives()
        broadcast = self.live.broadcasts[await self.alice_id()]
        receiving = [t.kind for t in broadcast.pc.getTransceivers() if t.currentDirection in ("recvonly", "sendrecv")]
        self.assertEqual(receiving, ["audio"])
        await client.stop()

    async def test_connection_loss_ends_the_session(self) -> None:
        """
        When the WHIP client's peer connection closes without DELETE, the
        broadcast ends after the reconnect grace, and the session's
        Location is gone (404).
        """
        client = self.client()
        await client.offer(self.wav)
        await client.connect()
        await self.audio_arrives()
        await client.close()
        me = await self.alice_id()
        await wait_for(lambda: me not in self.live.broadcasts, what="the broadcast to end")
        self.assertEqual((await client.delete()).status, 404)
        self.assertEqual(len(self.running.server.whip_sessions), 0)

    async def test_reconnect_within_grace_resumes(self) -> None:
        """
        A WHIP client that lost its connection and publishes again within
        the reconnect grace (as OBS retries) resumes the same broadcast:
        same stream, same start, one recording; the old session is gone
        (404) and the new one ends it.
        """
        running = await start_server(self, ice_allow_networks=LOOPBACK, reconnect_grace=10.0)
        owner = running.client()
        await owner.register("alice")
        token = await make_token(owner, "publish")
        first = WhipClient(running.base + "/whip/alice", token)
        whip_cleanup(self, first)
        await first.offer(self.wav)
        await first.connect()
        live = running.server.live
        me = (await running.server.store.get_user_by_name("alice"))["id"]
        await wait_for(lambda: me in live.broadcasts and live.broadcasts[me].frames_in >= 25, what="audio")
        before = live.broadcasts[me]
        await first.close()
        await wait_for(lambda: before.detached is not None, what="the broadcast to wait for its publisher")
        second = WhipClient(running.base + "/whip/alice", token)
        whip_cleanup(self, second)
        await second.offer(self.wav)
        await second.connect()
        self.assertIs(live.broadcasts[me], before)
        self.assertIsNone(before.detached)
        self.assertEqual((await first.delete()).status, 404)
        await second.stop()
        self.assertNotIn(me, live.broadcasts)
        recordings = (await owner.get("/api/recordings")).body["recordings"]
        self.assertEqual(len(recordings), 1)

    async def test_tokens_and_people(self) -> None:
        """
        No token, a malformed, unknown, revoked or listen token are 401
        with WWW-Authenticate: Bearer; the session cookie does not stand
        in for a token; bob's valid token on alice's endpoint or session is
        403; another user's session id is 404 to its holder's own URL.
        """
        _, offer = await publisher(self, self.wav)
        listen = await make_token(self.alice, "listen")
        revoked = await make_token(self.alice, "publish", "old")
        listed = (await self.alice.get("/api/tokens")).body["tokens"]
        await self.alice.delete(f"/api/tokens/{next(t['id'] for t in listed if t['name'] == 'old')}")
        for token, code in ((None, "unauthenticated"), ("x", "invalid_token"), ("dcp_" + "A" * 43, "invalid_token"),
                            (revoked, "invalid_token"), (listen, "invalid_token")):
            headers = {"Content-Type": SDP}
            if token is not None:
                headers["Authorization"] = f"Bearer {token}"
            reply = await http("POST", self.endpoint, offer.encode(), headers)
            self.assertEqual(reply.status, 401, (token, reply))
            self.assertIn(code, reply.body.decode())
            self.assertTrue(reply.header("www-authenticate").startswith("Bearer"), reply.headers)
            self.assertEqual(reply.header("access-control-allow-origin"), "*")
        # The browser's session cookie (and its CSRF header) is no token.
        cookie = await self.alice.request("POST", "/whip/alice", raw=offer.encode(), headers={"Content-Type": SDP})
        self.assertEqual(cookie.status, 401)
        bob_token = await make_token(self.bob, "publish")
        other = await self.client(bob_token).post(offer)
        self.assertEqual(other.status, 403, other)
        self.assertEqual((await self.client(bob_token, user="nobody").post(offer)).status, 403)
        client = self.client()
        await client.offer(self.wav)
        session = client.location.rsplit("/", 1)[1]
        as_bob = await http("DELETE", client.location, headers={"Authorization": f"Bearer {bob_token}"})
        self.assertEqual(as_bob.status, 403)
        own_url = await http("DELETE", f"{self.running.base}/whip/bob/{session}", headers={"Authorization": f"Bearer {bob_token}"})
        self.assertEqual(own_url.status, 404)
        self.assertEqual(len(self.running.server.whip_sessions), 1)
        await client.stop()
        self.assertEqual(self.running.server.live.broadcasts, {})

    async def test_hostile_offers(self) -> None:
        """
        Another content type is 415; garbage is 400; a body over the API's
        limit or an offer over the SDP limit is 413; video only, audio that
        only receives, or audio without Opus or G.711 is 406; being live
        already (over WHIP or from the browser) is 409.  Nothing goes live
        on a refusal and every error keeps the API's JSON shape.
        """
        client = self.client()
        _, offer = await publisher(self, self.wav)
        video = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        self.addCleanup(lambda: aio(video.close()))
        video.addTransceiver("video", direction="sendonly")
        await aio(video.setLocalDescription(await aio(video.createOffer())))
        receiving = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        self.addCleanup(lambda: aio(receiving.close()))
        receiving.addTransceiver("audio", direction="recvonly")
        await aio(receiving.setLocalDescription(await aio(receiving.createOffer())))
        g722 = offer_with(offer, "a=rtpmap:9 G722/8000", "9")
        cases = [
            (offer, "application/json", 415, "unsupported_media_type"),
            (offer, "text/plain", 415, "unsupported_media_type"),
            ("hello", SDP, 400, "bad_sdp"),
            ("v=0\r\nm=audio 9 RTP/AVP 0\r\n\x00\xff", SDP, 400, "bad_sdp"),
            ("v=0\r\n" + "a=x\r\n" * (MAX_SDP // 5), SDP, 413, "body_too_large"),
            ("v=0\r\n" + "a" * 100_000, SDP, 413, "body_too_large"),
            (video.localDescription.sdp, SDP, 406, "no_audio"),
            (receiving.localDescription.sdp, SDP, 406, "no_audio"),
            (g722, SDP, 406, "no_usable_codec"),
        ]
        for sdp, content_type, status, code in cases:
            reply = await client.post(sdp, content_type)
            self.assertEqual(reply.status, status, (sdp[:60], reply))
            self.assertEqual(json.loads(reply.body)["error"]["code"], code, reply)
        self.assertEqual(self.live.broadcasts, {})
        await client.offer(self.wav)
        again = await self.client().post(offer)
        self.assertEqual(again.status, 409, again)
        await client.stop()
        # Live from the browser path: WHIP is refused too.
        _, offer2 = await publisher(self, self.wav)
        self.assertEqual((await self.alice.post("/api/streams/alice", {"sdp": offer2})).status, 201)
        self.assertEqual((await self.client().post(offer)).status, 409)

    async def test_hostile_headers(self) -> None:
        """
        Bytes that are not text in Authorization, Content-Type or If-Match,
        a huge Authorization header, and a Bearer with odd Unicode are
        clear 4xx answers in the JSON shape, never a 500.
        """
        from tests.test_hostile_input import raw_exchange

        _, offer = await publisher(self, self.wav)
        body = offer.encode()
        cases = [
            (b"Authorization: Bearer \xff\xfex\r\nContent-Type: application/sdp\r\n", b"401"),
            (b"Authorization: Bearer " + "\u00e9\u202e\U0001f399".encode() * 20 + b"\r\nContent-Type: application/sdp\r\n", b"401"),
            (b"Authorization: Bearer " + b"A" * 8000 + b"\r\nContent-Type: application/sdp\r\n", b"401"),
            (b"Authorization: Bearer " + self.token.encode() + b"\r\nContent-Type: \xff\xfe/sdp\r\n", b"415"),
        ]
        for headers, status in cases:
            answer = await raw_exchange(
                self.running,
                b"POST /whip/alice HTTP/1.1\r\nHost: x\r\nConnection: close\r\n" + headers
                + b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body,
            )
            first = answer.split(b"\r\n", 1)[0]
            self.assertIn(status, first, (headers[:80], answer[:400]))
            self.assertIn(b'"error"', answer)
        self.assertEqual(self.live.broadcasts, {})

    async def test_options_and_cors(self) -> None:
        """
        OPTIONS on the endpoint is a CORS preflight (methods, headers, the
        exposed Location, ETag and Link) with the STUN server in Link; TURN
        credentials only to a valid publish token.  A cross-site Origin
        does not stop a POST with a valid token (no cookie is involved).
        """
        bare = await http("OPTIONS", self.endpoint, headers={"Origin": "https://studio.example",
                                                              "Access-Control-Request-Method": "POST"})
        self.assertEqual(bare.status, 204, bare)
        self.assertEqual(bare.header("access-control-allow-origin"), "*")
        self.assertIn("POST", bare.header("access-control-allow-methods"))
        self.assertIn("Authorization", bare.header("access-control-allow-headers"))
        exposed = {h.strip() for h in bare.header("access-control-expose-headers").split(",")}
        self.assertEqual(exposed, {"Location", "ETag", "Link"})
        self.assertEqual(bare.all("link"), ['<stun:stun.example.net:3478>; rel="ice-server"'])
        authed = await http("OPTIONS", self.endpoint, headers={"Authorization": f"Bearer {self.token}"})
        self.assertEqual(len(authed.all("link")), 2)
        session = await http("OPTIONS", self.endpoint + "/whatever")
        self.assertEqual(session.status, 204)
        self.assertIn("DELETE", session.header("access-control-allow-methods"))
        self.assertIn("PATCH", session.header("access-control-allow-methods"))
        _, offer = await publisher(self, self.wav)
        reply = await http("POST", self.endpoint, offer.encode(), {
            "Content-Type": SDP, "Authorization": f"Bearer {self.token}", "Origin": "https://studio.example"})
        self.assertEqual(reply.status, 201, reply)
        self.assertEqual(reply.header("set-cookie"), None)
        wrong_method = await http("GET", self.endpoint)
        self.assertEqual(wrong_method.status, 405)
        self.assertIn("POST", wrong_method.header("allow"))
        await self.live.stop(await self.running.server.store.get_user_by_name("alice"), "stopped")

