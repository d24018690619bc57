"""
Recordings end to end in one process: the recorder writes both tracks as a
broadcast goes, the API lists, serves (seekable), summarises and deletes
them, only for the owner and friends, and a crash leaves something the
next start repairs.  Quota and length limits stop recording, not the
broadcast.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
from twisted.trial.unittest import TestCase

from denoisecast.audio.opus import OpusStream
from denoisecast.recordings.files import decode, recorded_duration
from denoisecast.recordings.recorder import Recorder
from tests.support import RunningServer, start_server

RATE = 48000


def tone(seconds: float, level: float = 0.3) -> np.ndarray:
    t = np.arange(int(seconds * RATE)) / RATE
    return (level * np.sin(2 * np.pi * 330 * t)).astype(np.float32)


class Feed:
    """Encodes blocks of both signals into packets and writes them, as a broadcast does."""

    def __init__(self, recording: Any, position: int = 0) -> None:
        self.recording = recording
        self.position = position
        self.encoders = (OpusStream(position), OpusStream(position))

    def write(self, denoised: np.ndarray, raw: np.ndarray) -> None:
        packets = [encoder.encode(block) for encoder, block in zip(self.encoders, (denoised, raw))]
        self.recording.write(self.position, len(denoised), *packets)
        self.position += len(denoised)


async def record(running: RunningServer, username: str, seconds: float, finish: bool = True) -> Any:
    user = await running.server.store.get_user_by_name(username)
    stopped: list[str] = []
    recording = await running.server.recorder.start(user, "deepfilternet3", True, 100.0, stopped.append)
    assert recording is not None
    signal = tone(seconds)
    feed = Feed(recording)
    for start in range(0, len(signal), 960):
        block = signal[start : start + 960]
        if start == 48000:
            recording.note(False, 100.0)
        feed.write(block, block * 2)
    if finish:
        await recording.finish()
    return recording


class RecorderTests(TestCase):
    async def test_both_tracks_written(self) -> None:
        """
        Both tracks decode, last as long as the broadcast (within 0.05 s),
        and the row holds duration, sizes, model, status and timeline.
        """
        running = await start_server(self)
        await running.client().register("alice")
        recording = await record(running, "alice", 2.5)
        for path in (recording.denoised_path, recording.raw_path):
            self.assertLess(abs(recorded_duration(path) - 2.5), 0.05)
        raw = decode(recording.raw_path)
        self.assertGreater(float(np.abs(raw).max()), 0.5)
        user = await running.server.store.get_user_by_name("alice")
        row = await running.server.store.get_visible_recording(recording.public_id, user["id"])
        self.assertEqual(row["status"], "complete")
        self.assertLess(abs(row["duration_seconds"] - 2.5), 0.05)
        self.assertEqual(row["denoised_bytes"], recording.denoised_path.stat().st_size)
        self.assertEqual(row["raw_bytes"], recording.raw_path.stat().st_size)
        self.assertEqual(
            json.loads(row["timeline"]),
            [{"t": 0.0, "denoise": True, "atten_lim_db": 100.0}, {"t": 1.0, "denoise": False, "atten_lim_db": 100.0}],
        )

    async def test_interrupted_repaired(self) -> None:
        """
        A recording left unfinished (the server died) is found by the next
        start, its duration read from the file, and marked interrupted.
        """
        running = await start_server(self)
        await running.client().register("alice")
        recording = await record(running, "alice", 3.0, finish=False)
        # Let the queued writes reach the files, as they would before a kill.
        await recording.written()
        running.server.recorder.active.clear()
        fresh = Recorder(running.server.store, running.server.recorder.reactor, running.server.config.data_dir, running.server.clock)
        fresh.start_pool()
        self.addCleanup(fresh.stop_pool)
        self.assertEqual(await fresh.repair(), 1)
        user = await running.server.store.get_user_by_name("alice")
        row = await running.server.store.get_visible_recording(recording.public_id, user["id"])
        self.assertEqual(row["status"], "interrupted")
        self.assertGreater(row["duration_seconds"], 2.0)
        self.assertEqual(await fresh.repair(), 0)

    async def test_recordings_without_audio_leave_no_row(self) -> None:
        """
        A recording that never received audio leaves no row: neither when
        it is finished (the broadcast ended before any audio came) nor when
        a crash left it unfinished and the next start repairs it.
        """
        running = await start_server(self)
        await running.client().register("alice")
        user = await running.server.store.get_user_by_name("alice")
        empty = await running.server.recorder.start(user, "deepfilternet3", True, 100.0, lambda reason: None)
        assert empty is not None
        await empty.finish()
        self.assertIsNone(await running.server.store.get_visible_recording(empty.public_id, user["id"]))
        self.assertEqual(running.server.recorder.active, {})
        crashed = await running.server.recorder.start(user, "deepfilternet3", True, 100.0, lambda reason: None)
        assert crashed is not None
        running.server.recorder.active.clear()
        self.assertEqual(await running.server.recorder.repair(), 0)
        self.assertIsNone(await running.server.store.get_visible_recording(crashed.public_id, user["id"]))

    async def test_finish_holds_no_pool_thread_while_writes_are_queued(self) -> None:
        """
        While a recording's writes are still queued, finishing it waits on
        the reactor: no recorder thread sits blocked waiting for them (such
        a thread is one fewer to run the writes it waits for).
        """
        import threading

        from twisted.internet import reactor
        from twisted.internet.task import deferLater

        running = await start_server(self)
        await running.client().register("alice")
        recording = await record(running, "alice", 1.0, finish=False)
        release = threading.Event()
        self.addCleanup(release.set)
        recording._jobs.submit(lambda: release.wait(30))  # a slow disk: the queue is busy
        finished = recording.finish()
        pool = running.server.recorder.pool
        for _ in range(20):
            await deferLater(reactor, 0.05, lambda: None)
        self.assertEqual(len(pool.working), 1)  # the slow write only
        self.assertFalse(finished.called)
        release.set()
        await finished
        self.assertEqual(await recording.finished, None)

    async def test_max_length_stops_recording(self) -> None:
        """
        Past the maximum length the recording stops early, the broadcaster
        is told why, and the file holds the allowed length.
        """
        running = await start_server(self)
        await running.client().register("alice")
        running.server.recorder.max_seconds = 1.0
        user = await running.server.store.get_user_by_name("alice")
        told: list[str] = []
        recording = await running.server.recorder.start(user, "m", True, 100.0, told.append)
        feed = Feed(recording)
        for block in np.split(tone(2.0), 100):
            feed.write(block, block)
        await recording.finished
        self.assertEqual(told, ["max_length"])
        self.assertLess(abs(recorded_duration(recording.denoised_path) - 1.0), 0.05)
        row = await running.server.store.get_visible_recording(recording.public_id, user["id"])
        self.assertEqual(row["status"], "stopped_early")

    async def test_quota(self) -> None:
        """
        A user over quota is told during the broadcast, and the next
        broadcast is not recorded at all.
        """
        running = await start_server(self)
        await running.client().register("alice")
        running.server.recorder.quota_bytes = 20_000
        user = await running.server.store.get_user_by_name("alice")
        told: list[str] = []
        recording = await running.server.recorder.start(user, "m", True, 100.0, told.append)
        feed = Feed(recording)
        for block in np.split(tone(8.0), 400):
            feed.write(block, block)
            await recording.written()
        await recording.finished
        self.assertEqual(told, ["quota"])
        self.assertIsNone(await running.server.recorder.start(user, "m", True, 100.0, told.append))


class RecordingApiTests(TestCase):
    async def setUp(self) -> None:
        self.running = await start_server(self)
        self.alice, self.bob, self.carol = (self.running.client() for _ in range(3))
        await self.alice.register("alice")
        await self.bob.register("bob")
        await self.carol.register("carol")
        await self.alice.post("/api/friends/requests", {"username": "bob"})
        await self.bob.post("/api/friends/requests/alice/accept")
        self.first = await record(self.running, "alice", 1.0)
        self.second = await record(self.running, "alice", 2.0)
        self.carols = await record(self.running, "carol", 1.0)

    async def test_list_newest_first_paginated(self) -> None:
        """
        Friends see the owner's recordings newest first, a page at a time;
        strangers' recordings never appear.
        """
        page = await self.bob.get("/api/recordings?limit=1")
        self.assertEqual([r["id"] for r in page.body["recordings"]], [self.second.public_id])
        rest = await self.bob.get(f"/api/recordings?limit=1&cursor={page.body['next']}")
        self.assertEqual([r["id"] for r in rest.body["recordings"]], [self.first.public_id])
        self.assertIsNone(rest.body["next"])
        own = await self.alice.get("/api/recordings?owner=alice")
        self.assertEqual(len(own.body["recordings"]), 2)
        self.assertTrue(own.body["recordings"][0]["denoise"])
        stranger = await self.carol.get("/api/recordings")
        self.assertEqual([r["id"] for r in stranger.body["recordings"]], [self.carols.public_id])
        bad = await self.bob.get("/api/recordings?cursor=%%%")
        self.assertEqual(bad.status, 400)

    async def test_access(self) -> None:
        """
        Owner and friend can read; a stranger, a guessed id and a logged-out
        client cannot, and the stranger gets the same 404 as a guess.
        """
        path = f"/api/recordings/{self.first.public_id}"
        self.assertEqual((await self.alice.get(path)).status, 200)
        self.assertEqual((await self.bob.get(path)).status, 200)
        stranger = await self.carol.get(path)
        guessed = await self.carol.get("/api/recordings/AAAAAAAAAAAAAAAA")
        self.assertEqual((stranger.status, stranger.body), (guessed.status, guessed.body))
        self.assertEqual(stranger.error_code, "no_such_recording")
        for suffix in ("/audio", "/waveform"):
            self.assertEqual((await self.carol.get(path + suffix)).status, 404)
        self.assertEqual((await self.running.client().get(path)).status, 401)
        traversal = await self.bob.get("/api/recordings/..%2F..%2Fdenoisecast.sqlite3/audio")
        self.assertEqual(traversal.status, 404)

    async def test_audio_seekable(self) -> None:
        """
        The audio route serves Ogg/Opus with Range support, either track.
        """
        path = f"/api/recordings/{self.second.public_id}/audio"
        whole = await self.bob.get(path)
        self.assertEqual(whole.status, 200)
        self.assertEqual(whole.header("content-type"), "audio/ogg; codecs=opus")
        self.assertEqual(whole.header("accept-ranges"), "bytes")
        self.assertEqual(whole.body[:4], b"OggS")
        part = await self.bob.get(path, headers={"Range": "bytes=100-199"})
        self.assertEqual((part.status, part.body), (206, whole.body[100:200]))
        raw = await self.bob.get(path + "?track=raw")
        self.assertEqual(raw.status, 200)
        self.assertNotEqual(raw.body, whole.body)
        self.assertEqual((await self.bob.get(path + "?track=other")).status, 400)
        self.assertEqual((await self.bob.get(path, headers={"Range": "bytes=99999999-"})).status, 416)

    async def test_waveform(self) -> None:
        """
        The waveform has a fixed number of points in [0, 1], computed once.
        """
        path = f"/api/recordings/{self.first.public_id}/waveform"
        reply = await self.bob.get(path)
        self.assertEqual(len(reply.body["points"]), 512)
        self.assertTrue(all(0 <= p <= 1 for p in reply.body["points"]))
        self.assertGreater(max(reply.body["points"]), 0.25)
        alice = await self.running.server.store.get_user_by_name("alice")
        row = await self.running.server.store.get_visible_recording(self.first.public_id, alice["id"])
        self.assertEqual(json.loads(row["peaks"]), reply.body["points"])

    async def test_waveform_work_leaves_the_recorder_free(self) -> None:
        """
        Computing waveforms (minutes for a long recording) never takes the
        threads that write live recordings: while two requests for a
        waveform are being computed, a live recording's writes still reach
        its files, and the two requests share one computation.
        """
        import threading

        from twisted.internet import reactor
        from twisted.internet.task import deferLater

        from denoisecast.recordings import library

        release = threading.Event()
        self.addCleanup(release.set)
        computed: list[str] = []
        real = library.file_peaks

        def slow_peaks(path: Any, points: int) -> list[float]:
            computed.append(threading.current_thread().name)
            release.wait(30)
            return real(path, points)

        self.patch(library, "file_peaks", slow_peaks)
        path = f"/api/recordings/{self.first.public_id}/waveform"
        requests = [self.bob.get(path), self.alice.get(path)]
        for _ in range(100):
            if computed:
                break
            await deferLater(reactor, 0.05)
        live = await record(self.running, "alice", 1.0, finish=False)
        written = live.written()
        written.addTimeout(10, reactor)
        await written
        self.assertFalse(release.is_set())
        release.set()
        replies = [await request for request in requests]
        self.assertEqual(replies[0].body, replies[1].body)
        self.assertEqual(len(computed), 1)
        self.assertNotIn("recorder", computed[0])
        await live.finish()

    async def test_delete(self) -> None:
        """
        Only the owner deletes; afterwards the row and both files are gone.
        """
        path = f"/api/recordings/{self.first.public_id}"
        refused = await self.bob.delete(path)
        self.assertEqual((refused.status, refused.error_code), (403, "not_owner"))
        self.assertEqual((await self.carol.delete(path)).status, 404)
        self.assertEqual((await self.alice.delete(path)).status, 204)
        self.assertFalse(self.first.denoised_path.exists())
        self.assertFalse(self.first.raw_path.exists())
        self.assertEqual((await self.alice.get(path)).status, 404)
        self.assertEqual((await self.alice.delete(path)).status, 404)
