"""
End to end over WHIP: a real ``twistd denoisecast`` process on loopback;
the aiortc WHIP client of tests/whip_client.py publishes noisy espeak-ng
speech with a publish token, as OBS would; two friends listen through the
browser app's path (WebSocket signalling, WebRTC), one to the denoised
signal and one to the raw one.  What they hear follows the speech, and the
denoised noise floor in the pauses is at least 20 dB below the raw one.
A second, independent client, GStreamer's webrtcbin
(tests/gst_whip_client.py), publishes the same way; its recording is
measured.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import json
import subprocess
import sys

import aioice.ice
from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.protocol import ProcessProtocol
from twisted.internet.task import deferLater
from twisted.logger import Logger
from twisted.trial.unittest import SkipTest, TestCase

from tests.rtc_support import answer, best_correlation, listener, noisy_speech, read_mono
from tests.support import Client
from tests.test_live_twistd import noise_floor_db
from tests.test_presence import befriend
from tests.test_twistd import TwistdProcess
from tests.whip_client import WhipClient, whip_cleanup
from tests.ws_support import connect_ws

LOOPBACK_ICE = Path(__file__).resolve().parent / "loopback_ice"
GST_CLIENT = Path(__file__).resolve().parent / "gst_whip_client.py"
#: Debian's own Python: it has PyGObject and the GStreamer typelibs.
SYSTEM_PYTHON = "/usr/bin/python3"


def gstreamer_problem() -> str | None:
    """Why the GStreamer client cannot run here, or None."""
    try:
        probe = subprocess.run([SYSTEM_PYTHON, str(GST_CLIENT), "--check"], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as error:
        return f"{SYSTEM_PYTHON} cannot run the GStreamer client: {error}"
    if probe.returncode != 0:
        return f"GStreamer's webrtcbin client cannot run (scripts/setup.sh installs it): {probe.stdout} {probe.stderr[-500:]}"
    return None


class ClientProcess(ProcessProtocol):
    """The GStreamer client's JSON lines, as they come; C{done} fires with its exit code."""

    def __init__(self) -> None:
        self.events: list[dict] = []
        self.stderr = b""
        self._buffer = b""
        self.done: Deferred[int] = Deferred()

    def outReceived(self, data: bytes) -> None:
        self._buffer += data
        while b"\n" in self._buffer:
            line, self._buffer = self._buffer.split(b"\n", 1)
            if line.strip():
                self.events.append(json.loads(line))

    def errReceived(self, data: bytes) -> None:
        self.stderr = (self.stderr + data)[-4000:]

    def processEnded(self, reason: object) -> None:
        self.done.callback(getattr(getattr(reason, "value", None), "exitCode", None))

    def seen(self, event: str) -> dict | None:
        return next((e for e in self.events if e["event"] == event), None)


def start_loopback_server(test: TestCase, workdir: Path) -> TwistdProcess:
    return TwistdProcess(
        test, workdir, "--silence-timeout", "5", "--ice-allow-networks", "127.0.0.0/8",
        env={"PYTHONPATH": os.pathsep.join(filter(None, [str(LOOPBACK_ICE), os.environ.get("PYTHONPATH")]))},
    )


class WhipTwistdTests(TestCase):
    timeout = 180

    async def test_whip_broadcast_denoised_for_friends(self) -> None:
        """
        A WHIP publisher's noisy speech reaches two friends listening over
        the WebSocket path (envelope correlation with the clean speech
        above 0.6); the denoised listener's noise floor in the pauses is at
        least 20 dB below the raw listener's; presence shows the broadcast
        live, DELETE on the session ends it, and it is recorded.
        """
        self.patch(aioice.ice, "get_host_addresses", lambda use_ipv4, use_ipv6: ["127.0.0.1"] if use_ipv4 else [])
        workdir = Path(tempfile.mkdtemp(prefix="denoisecast-whip-"))
        self.addCleanup(shutil.rmtree, workdir, True)
        noisy, clean, _ = noisy_speech(workdir, seconds_pause=1.5)
        server = start_loopback_server(self, workdir)
        await server.ready()
        clients = {name: Client(server.base) for name in ("alice", "bob", "dave")}
        for name, client in clients.items():
            await client.register(name)
        await befriend(clients["alice"], clients["bob"], "bob", "alice")
        await befriend(clients["alice"], clients["dave"], "dave", "alice")
        made = await clients["alice"].post("/api/tokens", {"name": "OBS", "scope": "publish"})
        self.assertEqual(made.status, 201, made)
        ws = {name: await connect_ws(self, server.base, clients[name]) for name in ("bob", "dave")}

        whip = WhipClient(server.base + "/whip/alice", made.body["secret"])
        whip_cleanup(self, whip)
        await whip.offer(noisy)  # live now; media flows once the answer is applied
        status = await clients["bob"].get("/api/streams/alice")
        self.assertEqual((status.status, status.body["live"]), (200, True), status)
        recorders = {}
        for name, signal in (("bob", "denoised"), ("dave", "raw")):
            lpc, loffer, recorders[name] = await listener(self)
            heard = await ws[name].request({"v": 1, "type": "listen", "user": "alice", "sdp": loffer, "signal": signal})
            self.assertEqual((heard["type"], heard["signal"]), ("answer", signal), heard)
            await answer(lpc, heard["sdp"])
        await whip.connect()

        seconds = len(clean) / 48000 + 3.0
        await deferLater(reactor, seconds)
        await whip.stop()
        for name in ("bob", "dave"):
            ended = await ws[name].expect("ended", timeout=10.0)
            self.assertEqual(ended["user"], "alice", ended)

        floors = {}
        for name, recorder in recorders.items():
            audio = recorder.audio()
            self.assertGreater(len(audio), len(clean) * 0.8, f"{name} heard too little")
            correlation, lag = best_correlation(audio, clean)
            self.assertGreater(correlation, 0.6, f"{name}: envelope correlation {correlation:.2f}")
            floors[name] = noise_floor_db(audio, clean, lag)
            Logger().info(
                "WHIP -> {name}: correlation {correlation:.2f}, noise floor {floor:.1f} dBFS, lag {lag} windows",
                name=name, correlation=correlation, floor=floors[name], lag=lag,
            )
        self.assertGreaterEqual(floors["dave"] - floors["bob"], 20.0, f"noise floors (dBFS): {floors}")
        status = await clients["bob"].get("/api/streams/alice")
        self.assertEqual(status.body["live"], False)
        recorded = await clients["bob"].get("/api/recordings?owner=alice")
        self.assertEqual([r["status"] for r in recorded.body["recordings"]], ["complete"], recorded.body)

    async def test_gstreamer_webrtcbin_client(self) -> None:
        """
        GStreamer's webrtcbin, a WebRTC stack independent of aiortc,
        publishes noisy speech over WHIP with its own checks (201,
        application/sdp, Location, ETag; DELETE 200 after the file ends);
        a friend sees the broadcast live meanwhile; the recording follows
        the clean speech (envelope correlation above 0.6) and its denoised
        track's noise floor in the pauses is at least 20 dB below its raw
        track's.
        """
        problem = gstreamer_problem()
        if problem is not None:
            raise SkipTest(problem)
        workdir = Path(tempfile.mkdtemp(prefix="denoisecast-gst-"))
        self.addCleanup(shutil.rmtree, workdir, True)
        noisy, clean, _ = noisy_speech(workdir, seconds_pause=1.5)
        server = start_loopback_server(self, workdir)
        await server.ready()
        alice, bob = Client(server.base), Client(server.base)
        await alice.register("alice")
        await bob.register("bob")
        await befriend(alice, bob, "bob", "alice")
        token = (await alice.post("/api/tokens", {"name": "GStreamer", "scope": "publish"})).body["secret"]

        client = ClientProcess()
        process = reactor.spawnProcess(
            client, SYSTEM_PYTHON, [SYSTEM_PYTHON, str(GST_CLIENT), server.base + "/whip/alice", token, str(noisy)],
            env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), **({"GST_DEBUG": os.environ["GST_DEBUG"], "GST_DEBUG_FILE": "/tmp/whip-gst.log"} if "GST_DEBUG" in os.environ else {})},
        )
        self.addCleanup(lambda: process.pid is not None and process.signalProcess("KILL"))
        for _ in range(600):
            if client.seen("connected") or client.done.called:
                break
            await deferLater(reactor, 0.05)
        answered = client.seen("answered")
        self.assertIsNotNone(answered, (client.events, client.stderr))
        self.assertEqual((answered["status"], answered["content_type"]), (201, "application/sdp"), answered)
        self.assertTrue(answered["location"].startswith("/whip/alice/"), answered)
        self.assertIsNotNone(client.seen("connected"), (client.events, client.stderr, server.output()[-3000:]))
        status = await bob.get("/api/streams/alice")
        self.assertEqual(status.body["live"], True)
        code = await client.done
        self.assertEqual(code, 0, (client.events, client.stderr))
        self.assertEqual(client.seen("deleted")["status"], 200)
        self.assertEqual((await bob.get("/api/streams/alice")).body["live"], False)

        recorded = (await bob.get("/api/recordings?owner=alice")).body["recordings"]
        self.assertEqual([r["status"] for r in recorded], ["complete"], recorded)
        floors = {}
        for track in ("denoised", "raw"):
            reply = await bob.get(f"/api/recordings/{recorded[0]['id']}/audio?track={track}")
            self.assertEqual(reply.status, 200)
            path = workdir / f"{track}.ogg"
            path.write_bytes(reply.body)
            audio = read_mono(path)
            correlation, lag = best_correlation(audio, clean)
            self.assertGreater(correlation, 0.6, f"{track}: envelope correlation {correlation:.2f}")
            floors[track] = noise_floor_db(audio, clean, lag)
            Logger().info(
                "GStreamer WHIP recording, {track}: correlation {correlation:.2f}, noise floor {floor:.1f} dBFS",
                track=track, correlation=correlation, floor=floors[track],
            )
        self.assertGreaterEqual(floors["raw"] - floors["denoised"], 20.0, f"noise floors (dBFS): {floors}")
