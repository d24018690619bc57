"""
Listening from outside the browser app, end to end: a real ``twistd
denoisecast`` process on loopback, a WHIP publisher (``tests/whip_client.py``)
sending noisy espeak-ng speech, and friends listening with listen tokens
over WHEP (an aiortc player) and over the plain HTTP Ogg/Opus stream
(FFmpeg's command-line player reading the URL, Chromium's <audio>, and a
late joiner reading the raw bytes), beside a listener on the browser app's
WebSocket path.  GStreamer's webrtcbin (tests/gst_whep_client.py) is a
second WHEP player that shares no code with the server or aiortc.
"""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import av
import numpy as np
from twisted.internet import reactor
from twisted.internet.defer import Deferred, ensureDeferred
from twisted.internet.task import deferLater
from twisted.logger import Logger
from twisted.trial.unittest import SkipTest, TestCase

from denoisecast.audio.ogg import BEGINNING, END
from tests.rtc_support import answer, best_correlation, listener, noisy_speech
from tests.support import Client, Reply
from tests.test_audio_ogg import parse_pages
from tests.test_live_twistd import noise_floor_db
from tests.test_presence import befriend
from tests.test_twistd import TwistdProcess
from tests.test_whip_twistd import SYSTEM_PYTHON, ClientProcess
from tests.whip_client import WhipClient, whip_cleanup
from tests.ws_support import connect_ws

LOOPBACK_ICE = Path(__file__).resolve().parent / "loopback_ice"
GST_PLAYER = Path(__file__).resolve().parent / "gst_whep_client.py"
RATE = 48000


async def listen_token(client: Client, name: str = "player") -> str:
    made = await client.post("/api/tokens", {"name": name, "scope": "listen"})
    assert made.status == 201, made
    return str(made.body["secret"])


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


class FfmpegListener:
    """FFmpeg reading the HTTP stream to raw 48 kHz mono float, as a player would."""

    def __init__(self, test: TestCase, url: str, workdir: Path, name: str) -> None:
        self.out = workdir / f"{name}.f32"
        self.log = workdir / f"{name}.log"
        with open(self.log, "wb") as log:
            self.process = subprocess.Popen(
                ["ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error", "-i", url,
                 "-f", "f32le", "-ac", "1", "-ar", str(RATE), "-y", str(self.out)],
                stdout=subprocess.DEVNULL, stderr=log,
            )
        test.addCleanup(self.kill)

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    async def ended(self, timeout: float) -> int | None:
        for _ in range(int(timeout / 0.1)):
            if self.process.poll() is not None:
                return self.process.returncode
            await deferLater(reactor, 0.1)
        return None

    def audio(self) -> np.ndarray:
        return np.fromfile(self.out, dtype=np.float32) if self.out.exists() else np.zeros(0, np.float32)


def decode_ogg(data: bytes) -> np.ndarray:
    with av.open(io.BytesIO(data), format="ogg") as container:
        frames = [f.to_ndarray().reshape(-1) for f in container.decode(audio=0)]
    return np.concatenate(frames) if frames else np.zeros(0, np.float32)


def gstreamer_problem() -> str | None:
    """Why the GStreamer WHEP player cannot run here, or None."""
    try:
        probe = subprocess.run([SYSTEM_PYTHON, str(GST_PLAYER), "--check"], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as error:
        return f"{SYSTEM_PYTHON} cannot run the GStreamer player: {error}"
    if probe.returncode != 0:
        return f"GStreamer's webrtcbin player cannot run: {probe.stdout} {probe.stderr[-300:]}"
    return None


class ListenTwistdTests(TestCase):
    timeout = 180

    async def test_whep_and_http_listeners(self) -> None:
        """
        A WHIP publisher goes live; with listen tokens, two WHEP players
        (aiortc, and GStreamer's webrtcbin where it runs), two FFmpeg players
        (denoised and raw), and beside them a listener on the browser app's
        WebSocket path, hear the broadcast: envelopes
        follow the clean speech (correlation above 0.6) and the denoised
        noise floor in pauses is at least 20 dB below the raw one on every
        denoised path; Chromium's <audio> plays the .ogg URL with the
        session cookie alone.  A late joiner gets a
        decodable stream with its own header pages; every HTTP stream ends
        with an end-of-stream page when the broadcast stops (FFmpeg exits
        0); a friend who is unfriended while listening is cut off and their
        token refused; strangers, bad tokens, one's own stream, bad SDP and
        a wrong content type are refused with the documented statuses, as
        is a revoked token, and a stream whose token is revoked while it
        plays ends before the broadcast does.
        """
        if shutil.which("ffmpeg") is None:
            raise SkipTest("ffmpeg is not installed (scripts/setup.sh installs it)")
        import aioice.ice

        self.patch(aioice.ice, "get_host_addresses", lambda use_ipv4, use_ipv6: ["127.0.0.1"] if use_ipv4 else [])
        workdir = Path(tempfile.mkdtemp(prefix="denoisecast-listen-"))
        self.addCleanup(shutil.rmtree, workdir, True)
        noisy, clean, _ = noisy_speech(workdir, seconds_pause=1.5)
        # The broadcast is live from the WHIP POST, its audio flows from the
        # answer: the players join in between, slowly on a busy machine.
        server = TwistdProcess(
            self, workdir, "--silence-timeout", "30", "--ice-allow-networks", "127.0.0.0/8",
            env={"PYTHONPATH": os.pathsep.join(filter(None, [str(LOOPBACK_ICE), os.environ.get("PYTHONPATH")]))},
        )
        await server.ready()
        warm = self.warm_browser(noisy)  # Chromium starts while the accounts are made
        names = ("alice", "bob", "dave", "erin", "carol")
        clients = {name: Client(server.base) for name in names}
        for name, client in clients.items():
            await client.register(name)
        for friend in ("bob", "dave", "erin"):
            await befriend(clients["alice"], clients[friend], friend, "alice")
        tokens = {name: await listen_token(clients[name]) for name in ("bob", "dave", "erin", "carol")}
        anon = Client(server.base)
        url = f"{server.base}/listen/alice.ogg"

        # Before the broadcast: a friend hears 404, everyone else the usual refusals.
        not_live = await anon.get("/listen/alice.ogg", headers=bearer(tokens["bob"]))
        self.assertEqual((not_live.status, not_live.error_code), (404, "not_live"), not_live)

        made = await clients["alice"].post("/api/tokens", {"name": "OBS", "scope": "publish"})
        whip = WhipClient(server.base + "/whip/alice", made.body["secret"])
        whip_cleanup(self, whip)
        await whip.offer(noisy)  # live now; media flows once the answer is applied

        await self.refusals(anon, tokens)
        revoked = await clients["dave"].post("/api/tokens", {"name": "old phone", "scope": "listen"})
        self.assertEqual((await clients["dave"].delete(f"/api/tokens/{revoked.body['token']['id']}")).status, 204)
        for path in ("/listen/alice.ogg", "/whep/alice"):
            gone = await anon.request("GET" if path.endswith(".ogg") else "POST", path, raw=b"v=0\r\n", csrf=False,
                                      headers={**bearer(revoked.body["secret"]), "Content-Type": "application/sdp"})
            self.assertEqual((gone.status, gone.error_code), (401, "invalid_token"), f"{path}: {gone}")
        whep_pc, whep_offer, whep_recorder = await listener(self)
        session = await self.whep_conformance(anon, tokens, whep_offer)
        await answer(whep_pc, session.body.decode())
        seconds = len(clean) / RATE + 3.0
        gst = await self.gstreamer_player(server.base, tokens["dave"], workdir, seconds - 1.0)
        players = {
            "bob": FfmpegListener(self, f"{url}?token={tokens['bob']}", workdir, "bob"),
            "dave": FfmpegListener(self, f"{url}?signal=raw&token={tokens['dave']}", workdir, "dave"),
        }
        # erin listens by header, and is unfriended half-way.
        erin: Deferred[Reply] = ensureDeferred(anon.get("/listen/alice.ogg", headers=bearer(tokens["erin"])))
        # bob also listens in the browser app's way, on the WebSocket.
        ws = await connect_ws(self, server.base, clients["bob"])
        browser_pc, browser_offer, browser_recorder = await listener(self)
        heard = await ws.request({"v": 1, "type": "listen", "user": "alice", "sdp": browser_offer})
        self.assertEqual(heard["type"], "answer", heard)
        await answer(browser_pc, heard["sdp"])
        await self.wait_listeners(clients["bob"], 5)
        await warm
        await whip.connect()
        # And in Chromium, a logged-in friend's <audio> plays the .ogg URL with the session cookie.
        chromium = self.audio_element(noisy, server.base, clients["bob"].cookie("dc_session") or "")

        # dave's phone listens with a token of its own, which dave then revokes.
        phone = await clients["dave"].post("/api/tokens", {"name": "phone", "scope": "listen"})
        phone_stream: Deferred[Reply] = ensureDeferred(
            anon.get("/listen/alice.ogg", headers=bearer(phone.body["secret"]))
        )
        await deferLater(reactor, 1.0)
        self.assertFalse(phone_stream.called)
        self.assertEqual((await clients["dave"].delete(f"/api/tokens/{phone.body['token']['id']}")).status, 204)
        await deferLater(reactor, seconds / 2 - 1.0)
        late: Deferred[Reply] = ensureDeferred(anon.get("/listen/alice.ogg", headers=bearer(tokens["bob"])))
        self.assertEqual((await clients["alice"].delete("/api/friends/erin")).status, 204)
        cut = await erin
        self.assertEqual(parse_pages(cut.body)[-1]["flags"], END)
        refused = await anon.get("/listen/alice.ogg", headers=bearer(tokens["erin"]))
        self.assertEqual((refused.status, refused.error_code), (403, "not_friends"), refused)
        await deferLater(reactor, seconds / 2)
        self.assertTrue(phone_stream.called, "a revoked token's stream was not ended while the broadcast ran")
        self.assertEqual(parse_pages((await phone_stream).body)[-1]["flags"], END)
        await whip.stop()

        played = await chromium
        Logger().info("Chromium's <audio> on the .ogg URL: {played}", played=played)
        if played is not None:
            self.assertIsNone(played["error"], played)
            self.assertGreaterEqual(played["time"], 1.0, played)  # real time: a loaded machine plays late
        for name, player in players.items():
            self.assertEqual(await player.ended(15.0), 0, f"{name}: {player.log.read_text()}")
        if gst is not None:
            client, out = gst
            code = await client.done
            self.assertEqual(code, 0, f"GStreamer WHEP player: {client.events} {client.stderr[-2000:]!r}")
            self.assertEqual((client.seen("deleted") or {}).get("status"), 200, client.events)
        late_reply = await late
        self.check_late_joiner(late_reply.body)
        deleted = await anon.delete(session.header("location") or "", headers=bearer(tokens["bob"]))
        self.assertEqual(deleted.status, 404)  # the broadcast's end ended the session

        audio_of = {
            "whep": whep_recorder.audio(),
            "browser": browser_recorder.audio(),
            **{name: p.audio() for name, p in players.items()},
        }
        if gst is not None:
            audio_of["gstreamer"] = np.fromfile(gst[1], dtype=np.float32)
        floors = {}
        for name, audio in audio_of.items():
            self.assertGreater(len(audio), len(clean) * 0.8, f"{name} heard too little")
            correlation, lag = best_correlation(audio, clean)
            self.assertGreater(correlation, 0.6, f"{name}: envelope correlation {correlation:.2f}")
            floors[name] = noise_floor_db(audio, clean, lag)
            Logger().info(
                "{name}: correlation {correlation:.2f}, noise floor {floor:.1f} dBFS, lag {lag} windows",
                name=name, correlation=correlation, floor=floors[name], lag=lag,
            )
        for denoised in ("whep", "browser", "bob", *(["gstreamer"] if gst is not None else [])):
            self.assertGreaterEqual(floors["dave"] - floors[denoised], 20.0, f"noise floors (dBFS): {floors}")
        self.assertNotIn(tokens["bob"], server.output())

    async def gstreamer_player(
        self, base: str, token: str, workdir: Path, seconds: float
    ) -> tuple[ClientProcess, Path] | None:
        """
        GStreamer's webrtcbin as a second, independent WHEP player
        (tests/gst_whep_client.py), connected and listening for C{seconds};
        None, said in the log, where it cannot run.
        """
        problem = gstreamer_problem()
        if problem is not None:
            Logger().warn("Without the GStreamer WHEP player: {problem}", problem=problem)
            return None
        out = workdir / "gstreamer.f32"
        client = ClientProcess()
        process = reactor.spawnProcess(
            client, SYSTEM_PYTHON,
            [SYSTEM_PYTHON, str(GST_PLAYER), base + "/whep/alice", token, str(out), f"{seconds:.1f}"],
            env={"PATH": os.environ.get("PATH", "/usr/bin:/bin")},
        )
        self.addCleanup(lambda: process.pid is not None and process.signalProcess("KILL"))
        for _ in range(600):
            if client.seen("connected") or client.done.called:
                break
            await deferLater(reactor, 0.1)
        self.assertIsNotNone(client.seen("connected"), f"GStreamer WHEP player: {client.events} {client.stderr[-2000:]!r}")
        return client, out

    def warm_browser(self, microphone: Path) -> "Deferred[None]":
        """Start the module's Chromium (if there is one), which takes seconds on a busy machine."""
        from twisted.internet.defer import succeed

        from tests.browser_support import need_browser, shared_browser

        try:
            need_browser()
        except SkipTest:
            return succeed(None)
        return shared_browser(microphone).call(lambda browser: None)

    def audio_element(self, microphone: Path, base: str, session: str) -> "Deferred[dict[str, Any] | None]":
        """
        Chromium plays /listen/alice.ogg in an <audio> element of a page of
        the server's, the session cookie its only credential; fires with how
        far it played and its media error (None without Chromium).
        """
        from twisted.internet.defer import succeed

        from tests.browser_support import need_browser, shared_browser

        try:
            need_browser()
        except SkipTest:
            return succeed(None)

        def play(browser: Any) -> dict[str, Any]:
            context = browser.new_context()
            try:
                context.add_cookies([{"name": "dc_session", "value": session, "url": base}])
                page = context.new_page()
                page.goto(base + "/static/icon.svg")
                return page.evaluate(
                    """async () => {
                        const audio = new Audio('/listen/alice.ogg');
                        await audio.play();
                        const start = performance.now();
                        while (audio.currentTime < 1.5 && !audio.error && performance.now() - start < 15000)
                            await new Promise(resolve => setTimeout(resolve, 100));
                        return {time: audio.currentTime, error: audio.error && audio.error.code};
                    }"""
                )
            finally:
                context.close()

        return shared_browser(microphone).call(play)

    async def wait_listeners(self, client: Client, count: int) -> None:
        for _ in range(200):
            status = await client.get("/api/streams/alice")
            if status.body["listeners"] >= count:
                return
            await deferLater(reactor, 0.1)
        self.fail(f"listeners never reached {count}: {status.body}")

    async def refusals(self, anon: Client, tokens: dict[str, str]) -> None:
        """The HTTP stream's refusals, while alice is live."""
        cases: list[tuple[str, dict[str, str], int, str]] = [
            ("/listen/alice.ogg", {}, 401, "unauthenticated"),
            ("/listen/alice.ogg", bearer("dcl_" + "x" * 43), 401, "invalid_token"),
            ("/listen/alice.ogg", {"Authorization": "Basic Ym9iOmJvYg=="}, 401, "invalid_token"),
            ("/listen/alice.ogg?token=nonsense", {}, 401, "invalid_token"),
            ("/listen/alice.ogg", bearer(tokens["carol"]), 403, "not_friends"),
            ("/listen/nobody.ogg", bearer(tokens["bob"]), 403, "not_friends"),
            ("/listen/bob.ogg", bearer(tokens["bob"]), 403, "not_friends"),
            ("/listen/alice.ogg?signal=loud", bearer(tokens["bob"]), 400, "invalid_field"),
            ("/listen/alice", bearer(tokens["bob"]), 404, "not_found"),
        ]
        for path, headers, status, code in cases:
            got = await anon.get(path, headers=headers)
            self.assertEqual((got.status, got.error_code), (status, code), f"{path} {headers}: {got}")
        head = await anon.request("HEAD", "/listen/alice.ogg", headers=bearer(tokens["bob"]))
        self.assertEqual((head.status, head.header("content-type")), (200, "audio/ogg"))

    async def whep_conformance(self, anon: Client, tokens: dict[str, str], offer: str) -> Reply:
        """WHEP's statuses and headers; returns the created session's reply (bob, denoised)."""
        sdp = {"Content-Type": "application/sdp"}
        options = await anon.request("OPTIONS", "/whep/alice", csrf=False)
        self.assertEqual(options.status, 204)
        self.assertEqual(options.header("accept-post"), "application/sdp")
        self.assertEqual(options.header("access-control-allow-origin"), "*")
        self.assertIn("Authorization", options.header("access-control-allow-headers") or "")
        cases: list[tuple[dict[str, str], bytes, int, str]] = [
            ({**sdp}, offer.encode(), 401, "unauthenticated"),
            ({**sdp, **bearer(tokens["bob"] + "x")}, offer.encode(), 401, "invalid_token"),
            ({**sdp, **bearer(tokens["carol"])}, offer.encode(), 403, "not_friends"),
            ({"Content-Type": "application/json", **bearer(tokens["bob"])}, offer.encode(), 415, "unsupported_media_type"),
            ({**sdp, **bearer(tokens["bob"])}, b"v=0\r\nnot sdp", 400, "no_audio"),
            ({**sdp, **bearer(tokens["bob"])}, b"\xff\xfe", 400, "bad_sdp"),
            ({**sdp, **bearer(tokens["bob"])}, offer.replace("a=recvonly", "a=sendonly").encode(), 400, "bad_sdp"),
        ]
        for headers, body, status, code in cases:
            got = await anon.request("POST", "/whep/alice", raw=body, headers=headers, csrf=False)
            self.assertEqual((got.status, got.error_code), (status, code), f"{headers}: {got}")
        created = await anon.request("POST", "/whep/alice", raw=offer.encode(), headers={**sdp, **bearer(tokens["bob"])}, csrf=False)
        self.assertEqual(created.status, 201, created)
        self.assertEqual(created.header("content-type"), "application/sdp")
        location = created.header("location") or ""
        self.assertTrue(location.startswith("/whep/alice/"), location)
        self.assertEqual(created.header("etag"), f'"{location.rsplit("/", 1)[1]}"')
        self.assertIn("a=sendonly", created.body.decode())
        patch = await anon.request("PATCH", location, raw=b"a=end-of-candidates\r\n", csrf=False,
                                   headers={"Content-Type": "application/trickle-ice-sdpfrag", **bearer(tokens["bob"])})
        self.assertEqual((patch.status, patch.header("allow")), (405, "DELETE, OPTIONS"))
        others = await anon.request("DELETE", location, headers=bearer(tokens["dave"]), csrf=False)
        self.assertEqual(others.status, 404)
        # A second session, ended by its owner.
        spare_pc, spare_offer, _ = await listener(self)
        spare = await anon.request("POST", "/whep/alice?signal=raw", raw=spare_offer.encode(),
                                   headers={**sdp, **bearer(tokens["dave"])}, csrf=False)
        self.assertEqual(spare.status, 201, spare)
        ended = await anon.request("DELETE", spare.header("location") or "", headers=bearer(tokens["dave"]), csrf=False)
        self.assertEqual(ended.status, 200)
        again = await anon.request("DELETE", spare.header("location") or "", headers=bearer(tokens["dave"]), csrf=False)
        self.assertEqual(again.status, 404)
        return created

    def check_late_joiner(self, data: Any) -> None:
        """A stream joined mid-broadcast: header pages first, granules from 0, an end page, decodable."""
        pages = parse_pages(data)
        self.assertEqual(pages[0]["flags"], BEGINNING)
        self.assertTrue(pages[0]["packets"][0].startswith(b"OpusHead"))  # type: ignore[index]
        self.assertTrue(pages[1]["packets"][0].startswith(b"OpusTags"))  # type: ignore[index]
        first_audio = pages[2]
        self.assertEqual(first_audio["granule"], 960 * len(first_audio["packets"]))  # type: ignore[arg-type]
        self.assertEqual(pages[-1]["flags"], END)
        audio = decode_ogg(data)
        self.assertGreater(len(audio), RATE * 2)
        self.assertGreater(float(np.abs(audio).max()), 0.05)
