"""
Recordings of real broadcasts: a real ``twistd denoisecast`` process, an
aiortc publisher sending noisy espeak-ng speech.  The recording's two tracks
decode and last as long as the broadcast; the denoised one is quieter in
the pauses; a server killed mid-broadcast leaves files that decode, and the
next start marks the recording interrupted with its real duration.
"""

from __future__ import annotations

import shutil
import signal
import tempfile
from pathlib import Path

from twisted.internet import reactor
from twisted.internet.task import deferLater
from twisted.trial.unittest import TestCase

from denoisecast.recordings.files import decode, recorded_duration
from tests.rtc_support import answer, best_correlation, noisy_speech, publisher
from tests.support import Client, finalised_recordings
from tests.test_live_twistd import noise_floor_db
from tests.test_twistd import TwistdProcess
from tests.ws_support import connect_ws

RATE = 48000


async def wait_for(predicate, seconds: float = 20.0) -> None:  # type: ignore[no-untyped-def]
    for _ in range(int(seconds / 0.1)):
        if await predicate():
            return
        await deferLater(reactor, 0.1)
    raise AssertionError("timed out waiting")


class RecordedBroadcastTests(TestCase):
    timeout = 120

    def workdir(self) -> Path:
        path = Path(tempfile.mkdtemp(prefix="denoisecast-rec-"))
        self.addCleanup(shutil.rmtree, path, True)
        return path

    async def go_live(self, workdir: Path, server: TwistdProcess):  # type: ignore[no-untyped-def]
        noisy, clean, _ = noisy_speech(workdir, seconds_pause=1.5)
        alice = Client(server.base)
        await alice.register("alice")
        ws = await connect_ws(self, server.base, alice)
        pc, offer = await publisher(self, noisy)
        reply = await ws.request({"v": 1, "type": "publish", "sdp": offer})
        self.assertEqual(reply["type"], "answer", reply)
        await answer(pc, reply["sdp"])
        return alice, ws, clean

    async def test_broadcast_recorded(self) -> None:
        """
        Both tracks decode, last as long as the audio broadcast (within
        0.2 s), follow the speech, and the denoised track's noise floor in
        the pauses is lower than the raw track's.
        """
        workdir = self.workdir()
        server = TwistdProcess(self, workdir)
        await server.ready()
        alice, ws, clean = await self.go_live(workdir, server)
        await deferLater(reactor, len(clean) / RATE + 1.5)
        self.assertEqual((await ws.request({"v": 1, "type": "stop"}))["type"], "stopped")

        async def complete() -> bool:
            listed = await alice.get("/api/recordings")
            rows = listed.body["recordings"]
            return bool(rows) and rows[0]["status"] == "complete"

        await wait_for(complete)
        (row,) = (await alice.get("/api/recordings")).body["recordings"]
        broadcast = len(clean) / RATE
        tracks = {}
        for track in ("denoised", "raw"):
            reply = await alice.get(f"/api/recordings/{row['id']}/audio?track={track}")
            self.assertEqual(reply.status, 200)
            path = workdir / f"{track}.ogg"
            path.write_bytes(reply.body)
            self.assertLess(abs(recorded_duration(path) - broadcast), 0.2, track)
            tracks[track] = decode(path)
            self.assertLess(abs(len(tracks[track]) / RATE - broadcast), 0.2, track)
        self.assertLess(abs(row["duration_seconds"] - broadcast), 0.2)
        self.assertEqual(row["model"], "deepfilternet3")
        self.assertEqual(row["timeline"][0]["denoise"], True)
        floors = {}
        for track, audio in tracks.items():
            correlation, lag = best_correlation(audio, clean)
            self.assertGreater(correlation, 0.6, track)
            floors[track] = noise_floor_db(audio, clean, lag)
        self.assertLess(floors["denoised"], floors["raw"] - 10.0, floors)
        # Database and recordings are not readable by other users of the machine.
        data = workdir / "denoisecast-data"
        private = [data, *data.rglob("*")]
        self.assertTrue(any(p.suffix == ".ogg" for p in private) and any(p.suffix == ".sqlite3" for p in private))
        for path in private:
            self.assertEqual(path.stat().st_mode & 0o007, 0, f"{path} is open to others")

    async def test_killed_server_recording_repaired(self) -> None:
        """
        SIGKILL mid-broadcast: the partial files decode; after a restart the
        recording is marked interrupted with the duration the files hold.
        """
        workdir = self.workdir()
        server = TwistdProcess(self, workdir)
        await server.ready()
        alice, ws, clean = await self.go_live(workdir, server)
        await deferLater(reactor, 4.0)
        server.process.send_signal(signal.SIGKILL)
        server.process.wait(10)
        files = sorted((workdir / "denoisecast-data" / "recordings").glob("*/*.ogg"))
        self.assertEqual([f.name.split(".", 1)[1] for f in files], ["denoised.ogg", "raw.ogg"])
        for path in files:
            self.assertGreater(len(decode(path)) / RATE, 2.0, path.name)
        survived = recorded_duration(files[0])

        again = TwistdProcess(self, workdir)
        await again.ready()
        alice.base = again.base

        async def repaired() -> bool:
            rows = (await alice.get("/api/recordings")).body["recordings"]
            return bool(rows) and rows[0]["status"] == "interrupted"

        await wait_for(repaired)
        (row,) = (await alice.get("/api/recordings")).body["recordings"]
        self.assertLess(abs(row["duration_seconds"] - survived), 0.05)
        self.assertGreater(row["duration_seconds"], 2.0)
        self.assertEqual(row["denoised_bytes"], files[0].stat().st_size)

    async def test_sigterm_finalises(self) -> None:
        """
        SIGTERM mid-broadcast: the server finalises the recording (status
        complete, duration from the file) before it exits.
        """
        workdir = self.workdir()
        server = TwistdProcess(self, workdir)
        await server.ready()
        alice, ws, _ = await self.go_live(workdir, server)
        await deferLater(reactor, 3.0)
        server.process.send_signal(signal.SIGTERM)
        for _ in range(200):
            if server.process.poll() is not None:
                break
            await deferLater(reactor, 0.1)
        # twistd ends a clean signal-initiated shutdown by exiting with that
        # signal, as Unix programs should.
        self.assertIn(server.process.returncode, (0, -signal.SIGTERM), server.output())
        self.assertIn("Server Shut Down", server.output())
        files = sorted((workdir / "denoisecast-data" / "recordings").glob("*/*.denoised.ogg"))
        again = TwistdProcess(self, workdir)
        await again.ready()
        alice.base = again.base
        (row,) = (await alice.get("/api/recordings")).body["recordings"]
        self.assertEqual(row["status"], "complete")
        self.assertGreater(row["duration_seconds"], 1.5)
        self.assertLess(abs(row["duration_seconds"] - recorded_duration(files[0])), 0.05)


class RecordingLimitTests(TestCase):
    timeout = 120

    async def test_quota_reached_broadcaster_told(self) -> None:
        """
        With a tiny quota the broadcast goes on, the broadcaster is told it
        is no longer recorded, and the recording ends stopped_early; the
        next broadcast is not recorded at all and says so at once.
        """
        workdir = Path(tempfile.mkdtemp(prefix="denoisecast-quota-"))
        self.addCleanup(shutil.rmtree, workdir, True)
        server = TwistdProcess(self, workdir, "--recording-quota-mb", "0.01")
        await server.ready()
        alice, ws, _ = await RecordedBroadcastTests.go_live(self, workdir, server)  # type: ignore[arg-type]
        told = await ws.expect("recording", timeout=20)
        self.assertEqual((told["recording"], told["reason"]), (False, "quota"))
        status = await alice.get("/api/streams/alice")
        self.assertTrue(status.body["live"])
        # The broadcaster is told at once; the row is finalised right after.
        rows = await finalised_recordings(alice)
        self.assertEqual([r["status"] for r in rows], ["stopped_early"])
        await ws.request({"v": 1, "type": "stop"})
        pc, offer = await publisher(self, workdir / "noisy.wav")
        ws.send({"v": 1, "type": "publish", "sdp": offer, "id": "again"})
        seen = [await ws.next(10)]
        while seen[-1].get("id") != "again":
            seen.append(await ws.next(10))
        self.assertEqual(seen[-1]["type"], "answer", seen)
        told = [m for m in seen if m["type"] == "recording"]
        self.assertEqual([(m["recording"], m["reason"]) for m in told], [(False, "quota")])
        rows = (await alice.get("/api/recordings")).body["recordings"]
        self.assertEqual(len(rows), 1)
