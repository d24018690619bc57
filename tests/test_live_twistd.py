"""
End to end: a real ``twistd denoisecast`` process, aiortc clients on the
machine's own address.  A publisher sends noisy espeak-ng speech; two
friends listen (one to the denoised signal, one to the raw one); a
non-friend is refused.  What the listeners hear follows the speech, and the
denoised noise floor in the pauses is at least 10 dB below the raw one.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import numpy as np
from twisted.internet import reactor
from twisted.internet.task import deferLater
from twisted.logger import Logger
from twisted.trial.unittest import TestCase

from tests.rtc_support import answer, best_correlation, envelope, listener, noisy_speech, publisher
from tests.support import Client
from tests.test_presence import befriend
from tests.test_twistd import TwistdProcess
from tests.ws_support import connect_ws


def noise_floor_db(received: np.ndarray, clean: np.ndarray, lag: int) -> float:
    """
    Median level (dBFS) of C{received}'s 20 ms windows where the clean
    speech (shifted by C{lag} windows) is silent, away from speech edges.

    The median, not the mean: when the network delivers a burst, the
    scheduler passes a chunk or two through raw rather than fall behind
    (counted in the metrics and logged by the test), and a mean would
    measure those instead of the floor.
    """
    quiet = envelope(clean) < 1e-4
    # Keep only windows well inside a pause: 10 windows (200 ms) from speech.
    inside = quiet.copy()
    for shift in range(1, 11):
        inside[shift:] &= quiet[:-shift]
        inside[:-shift] &= quiet[shift:]
    got = envelope(received)
    levels = [got[i + lag] for i in np.flatnonzero(inside) if i + lag < len(got)]
    assert len(levels) > 20, f"only {len(levels)} quiet windows heard"
    return float(20 * np.log10(np.median(levels)))


class LiveTwistdTests(TestCase):
    timeout = 120

    async def test_noisy_speech_denoised_for_friends(self) -> None:
        """
        Two friends hear the broadcast (envelope correlation with the clean
        speech above 0.6); the denoised listener's noise floor is at least
        10 dB below the raw listener's; a non-friend is refused with 403;
        the broadcast is recorded and the friend sees the recording.
        """
        workdir = Path(tempfile.mkdtemp(prefix="denoisecast-live-"))
        self.addCleanup(shutil.rmtree, workdir, True)
        noisy, clean, _ = noisy_speech(workdir, seconds_pause=1.5)
        server = TwistdProcess(self, workdir, "--silence-timeout", "5")
        await server.ready()
        clients = {name: Client(server.base) for name in ("alice", "bob", "dave", "carol")}
        for name, client in clients.items():
            await client.register(name)
        await befriend(clients["alice"], clients["bob"], "bob", "alice")
        await befriend(clients["alice"], clients["dave"], "dave", "alice")
        ws = {name: await connect_ws(self, server.base, client) for name, client in clients.items()}

        # Listeners must be in place before the speech starts: join first,
        # then start sending the file.
        pc, offer = await publisher(self, noisy)
        reply = await ws["alice"].request({"v": 1, "type": "publish", "sdp": offer})
        self.assertEqual(reply["type"], "answer", reply)
        recorders = {}
        for name, signal in (("bob", "denoised"), ("dave", "raw")):
            lpc, loffer, recorders[name] = await listener(self)
            heard = await ws[name].request(
                {"v": 1, "type": "listen", "user": "alice", "sdp": loffer, "signal": signal}
            )
            self.assertEqual((heard["type"], heard["signal"]), ("answer", signal), heard)
            await answer(lpc, heard["sdp"])
        _, coffer, _ = await listener(self)
        refused = await ws["carol"].request({"v": 1, "type": "listen", "user": "alice", "sdp": coffer})
        self.assertEqual((refused["status"], refused["code"]), (403, "not_friends"))
        await answer(pc, reply["sdp"])

        seconds = len(clean) / 48000 + 3.0
        await deferLater(reactor, seconds)
        stopped = await ws["alice"].request({"v": 1, "type": "stop"})
        self.assertEqual(stopped["type"], "stopped")

        metrics = (await clients["bob"].get("/metrics")).body.decode()
        engine = "\n".join(l for l in metrics.splitlines() if l.startswith("denoisecast_engine"))
        lag_count = next(l for l in metrics.splitlines() if l.startswith("denoisecast_reactor_lag_seconds_count"))
        self.assertGreater(float(lag_count.split()[1]), seconds * 10)  # asked every 50 ms, all through the broadcast
        Logger().info("Server metrics after the broadcast:\n{engine}", engine=engine)
        floors = {}
        for name, recorder in recorders.items():
            audio = recorder.audio()
            self.assertGreater(len(audio), len(clean) * 0.8, f"{name} heard too little")
            correlation, lag = best_correlation(audio, clean)
            self.assertGreater(correlation, 0.6, f"{name}: envelope correlation {correlation:.2f}\n{engine}")
            floors[name] = noise_floor_db(audio, clean, lag)
            Logger().info(
                "{name}: correlation {correlation:.2f}, noise floor {floor:.1f} dBFS, lag {lag} windows",
                name=name, correlation=correlation, floor=floors[name], lag=lag,
            )
        self.assertGreaterEqual(
            floors["dave"] - floors["bob"], 10.0,
            f"noise floors (dBFS): {floors}; server: "
            + "\n".join(l for l in server.output().splitlines() if "enoise" in l),
        )
        status = await clients["bob"].get("/api/streams/alice")
        self.assertEqual((status.status, status.body["live"]), (200, False))
        recorded = await clients["bob"].get("/api/recordings?owner=alice")
        self.assertEqual(recorded.status, 200, recorded.body)
        self.assertEqual(len(recorded.body["recordings"]), 1, recorded.body)
        Logger().info("Recording: {recording}", recording=recorded.body["recordings"][0])
