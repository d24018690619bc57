"""
End to end over WHIP: a real ``twistd denoisecast`` process on loopback;
the aiortc WHIP client of tests/whip_client.py publishes noisy espeak-ng
speech with a publish token, as OBS would; two friends listen through the
browser app's path (WebSocket signalling, WebRTC), one to the denoised
signal and one to the raw one.  What they hear follows the speech, and the
denoised noise floor in the pauses is at least 20 dB below the raw one.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import aioice.ice
from twisted.internet import reactor
from twisted.internet.task import deferLater
from twisted.logger import Logger
from twisted.trial.unittest import TestCase

from tests.rtc_support import answer, best_correlation, listener, noisy_speech
from tests.support import Client
from tests.test_live_twistd import noise_floor_db
from tests.test_presence import befriend
from tests.test_twistd import TwistdProcess
from tests.whip_client import WhipClient, whip_cleanup
from tests.ws_support import connect_ws

LOOPBACK_ICE = Path(__file__).resolve().parent / "loopback_ice"


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
        server = TwistdProcess(
            self, workdir, "--silence-timeout", "5", "--ice-allow-networks", "127.0.0.0/8",
            env={"PYTHONPATH": os.pathsep.join(filter(None, [str(LOOPBACK_ICE), os.environ.get("PYTHONPATH")]))},
        )
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
