"""
A full disk while recording: the broadcast goes on, the publisher is told
the recording stopped, the row is finalised with what reached the disk,
/api/health reports the disk, and new recordings are refused with a clear
reason until space returns.  On a real (small tmpfs) filesystem.
"""

from __future__ import annotations

from typing import Any

from twisted.trial.unittest import TestCase

from denoisecast.recordings.files import recorded_duration
from denoisecast.recordings.recorder import RecordingRefused
from tests.filesystems import fill, small_filesystem
from tests.support import RunningServer, start_server
from tests.test_recordings import Feed, tone

MIB = 1024 * 1024


async def wait_until(predicate: Any, seconds: float = 20.0) -> None:
    from twisted.internet import reactor
    from twisted.internet.task import deferLater

    for _ in range(int(seconds / 0.05)):
        if predicate():
            return
        await deferLater(reactor, 0.05)
    raise AssertionError("condition not met in time")


class DiskFullTests(TestCase):
    timeout = 120

    async def server_on_small_disk(self, **config: Any) -> tuple[RunningServer, Any]:
        mount = small_filesystem(self, size_kib=4096)
        running = await start_server(self, data_dir=mount, **config)
        await running.client().register("alice")
        return running, mount

    async def test_disk_fills_during_a_recording(self) -> None:
        """
        The disk fills mid-recording (writes fail with ENOSPC): the owner is
        told once (reason disk_full), the row is finalised as stopped_early
        with the duration and sizes of what is on disk, health says the disk
        is full, a new recording is refused with disk_full; once space
        returns, health is ok and recording works again.
        """
        running, mount = await self.server_on_small_disk(recording_min_free_bytes=0)
        recorder = running.server.recorder
        user = await running.server.store.get_user_by_name("alice")
        stopped: list[str] = []
        recording = await recorder.start(user, "deepfilternet3", True, 100.0, stopped.append)
        assert recording is not None
        feed = Feed(recording)
        signal = tone(2.0)
        for start in range(0, len(signal), 960):
            feed.write(signal[start : start + 960], signal[start : start + 960])
        await recording.written()
        self.assertTrue(recording.denoised_path.exists())
        filler = fill(mount)
        block = tone(0.02)
        for _ in range(3000):  # up to 60 s of audio, until the failure is noticed
            if not recording.active:
                break
            feed.write(block, block)
            if feed.position % 48000 == 0:
                await recording.written()
        await wait_until(lambda: stopped != [])
        self.assertEqual(stopped, ["disk_full"])
        await recording.finished
        row = await running.server.store.get_visible_recording(recording.public_id, user["id"])
        self.assertEqual(row["status"], "stopped_early")
        on_disk = recorded_duration(recording.denoised_path)
        self.assertGreater(on_disk, 1.5)
        self.assertAlmostEqual(row["duration_seconds"], on_disk, places=3)
        self.assertEqual(row["denoised_bytes"], recording.denoised_path.stat().st_size)
        self.assertEqual(row["raw_bytes"], recording.raw_path.stat().st_size)

        client = running.client()
        health = await client.get("/api/health")
        self.assertEqual((health.status, health.body["status"], health.body["disk"]), (200, "degraded", "full"))
        with self.assertRaises(RecordingRefused) as refused:
            await recorder.start(user, "deepfilternet3", True, 100.0, stopped.append)
        self.assertEqual(refused.exception.reason, "disk_full")

        filler.unlink()
        health = await client.get("/api/health")
        self.assertEqual((health.status, health.body["status"], health.body["disk"]), (200, "ok", "ok"))
        again = await recorder.start(user, "deepfilternet3", True, 100.0, stopped.append)
        self.assertIsNotNone(again)
        assert again is not None
        await again.finish()
        self.assertEqual(self.flushLoggedErrors(), [])

    async def test_low_free_space_refuses_new_recordings(self) -> None:
        """
        Below the configured free space a new recording is refused
        (disk_full) and health reports the disk low, before the disk is
        actually full, so the database beside the recordings keeps room.
        """
        running, mount = await self.server_on_small_disk(recording_min_free_bytes=2 * MIB)
        user = await running.server.store.get_user_by_name("alice")
        self.assertIsNotNone(await running.server.recorder.start(user, "m", True, 100.0, lambda reason: None))
        filler = fill(mount, leave_bytes=1 * MIB)
        with self.assertRaises(RecordingRefused) as refused:
            await running.server.recorder.start(user, "m", True, 100.0, lambda reason: None)
        self.assertEqual(refused.exception.reason, "disk_full")
        health = await running.client().get("/api/health")
        self.assertEqual((health.body["status"], health.body["disk"]), ("degraded", "low"))
        self.assertLess(health.body["disk_free_bytes"], 2 * MIB)
        filler.unlink()
        self.assertIsNotNone(await running.server.recorder.start(user, "m", True, 100.0, lambda reason: None))


class LiveDiskFullTests(TestCase):
    timeout = 120

    async def test_broadcast_goes_on_and_publisher_is_told(self) -> None:
        """
        A live broadcast from a real aiortc publisher, its recording on a
        small disk that fills: the publisher gets a ``recording`` message
        (recording false, reason disk_full), the broadcast stays live and
        audio keeps arriving, and when it stops its row holds what reached
        the disk.
        """
        from tests.rtc_support import answer, noisy_speech_file, publisher
        from tests.support import finalised_recordings
        from tests.test_live_manager import start_live
        from tests.ws_support import connect_ws

        mount = small_filesystem(self, size_kib=4096)
        running = await start_live(self, data_dir=mount, recording_min_free_bytes=0)
        alice = running.client()
        await alice.register("alice")
        ws = await connect_ws(self, running.base, alice)
        pc, offer = await publisher(self, noisy_speech_file(self))
        reply = await ws.request({"v": 1, "type": "publish", "sdp": offer})
        self.assertEqual(reply["type"], "answer", reply)
        await answer(pc, reply["sdp"])
        broadcast = next(iter(running.server.live.broadcasts.values()))
        recording = broadcast.recording
        await wait_until(lambda: recording.seconds > 1.0 and recording.denoised_path.exists(), 30.0)
        fill(mount)
        told = await ws.expect("recording", timeout=30.0)
        self.assertEqual((told["recording"], told["reason"]), (False, "disk_full"))
        frames = broadcast.frames_in
        await wait_until(lambda: broadcast.frames_in > frames + 25, 10.0)
        self.assertIn(broadcast, running.server.live.broadcasts.values())
        reply = await ws.request({"v": 1, "type": "stop"})
        self.assertEqual(reply["type"], "stopped")
        rows = await finalised_recordings(alice)
        self.assertEqual([row["status"] for row in rows], ["stopped_early"])
        self.assertGreater(rows[0]["duration_seconds"], 0.5)
        self.assertEqual(rows[0]["denoised_bytes"], recording.denoised_path.stat().st_size)
