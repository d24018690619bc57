"""
The write side of recordings: each broadcast's two tracks written as it
happens, its row kept current, and unfinished recordings repaired at start.

A recording is made of the Opus packets the broadcast encodes for its
listeners anyway, so it costs muxing and file writes, not encoders.  Those
happen on a small thread pool, never the reactor thread; each recording's
packets go through its own L{SerialJobs} queue, so they reach the file in
order even though the pool has several threads.
"""

from __future__ import annotations

import errno
import json
import secrets
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import av
from twisted.internet.defer import Deferred
from twisted.internet.threads import deferToThreadPool
from twisted.python.threadpool import ThreadPool

from denoisecast.recordings.disk import DiskState, DiskWatch, RecordingRefused
from denoisecast.recordings.files import RATE, OggOpusWriter, recorded_duration
from denoisecast.runtime.filemodes import PRIVATE_DIR_MODE
from denoisecast.runtime.jobs import SerialJobs
from denoisecast.runtime.logs import logger
from denoisecast.storage.store import Store, User

#: How often (seconds of audio) a live recording's row is brought up to date.
PROGRESS_EVERY = 5.0
#: Packets are handed to the write threads in batches of this much audio:
#: every handoff wakes a thread and costs the reactor thread a GIL switch,
#: and a crash loses at most this much.
WRITE_EVERY = 0.5
#: Free space under which new recordings are refused and running ones stop.
DEFAULT_MIN_FREE_BYTES = 64 * 1024 * 1024

__all__ = ["DiskState", "Recorder", "Recording", "RecordingRefused", "recording_paths"]


def recording_paths(data_dir: Path, owner_id: int, public_id: str) -> tuple[Path, Path]:
    """
    Where a recording's denoised and raw tracks live.  Built from the
    owner's numeric id and the server-made public id only.
    """
    if not public_id.replace("-", "").replace("_", "").isalnum():
        raise ValueError("not a recording id")
    folder = data_dir / "recordings" / str(owner_id)
    return folder / f"{public_id}.denoised.ogg", folder / f"{public_id}.raw.ogg"


class Recording:
    """
    One broadcast being recorded.  Methods are called on the reactor thread.
    """

    log = logger()

    def __init__(
        self,
        recorder: "Recorder",
        public_id: str,
        owner: User,
        started_at: datetime,
        budget_bytes: int | None,
        on_stopped: Callable[[str], None],
        model: Callable[[], str],
    ) -> None:
        self.recorder = recorder
        self._model = model
        self.public_id = public_id
        self.owner = owner
        self.started_at = started_at
        self.timeline: list[dict[str, Any]] = []
        self.samples = 0
        self.denoised_path, self.raw_path = recording_paths(recorder.data_dir, owner["id"], public_id)
        self._budget = budget_bytes
        self._on_stopped = on_stopped
        self._jobs = SerialJobs(recorder.pool)
        self._writers: tuple[OggOpusWriter, OggOpusWriter] | None = None
        self._origin: int | None = None
        self._pending: tuple[list[av.Packet], list[av.Packet]] = ([], [])
        self._pending_samples = 0
        self._sizes = (0, 0)
        self._last_progress = 0.0
        self.finished: Deferred[None] | None = None
        self.stopped_reason: str | None = None
        #: Set on the write thread once a write failed: later writes are skipped.
        self._write_broken = False

    def _write(self, origin: int, denoised: Sequence[av.Packet], raw: Sequence[av.Packet]) -> None:
        """
        (Write thread.)  A write that fails, or that leaves less free space
        than the floor, stops the recording (the broadcast goes on); what
        reached the files stays there and decodes.
        """
        if self._write_broken:
            return
        disk = self.recorder.disk
        try:
            if self._writers is None:
                self.denoised_path.parent.mkdir(parents=True, exist_ok=True, mode=PRIVATE_DIR_MODE)
                self._writers = (OggOpusWriter(self.denoised_path, origin), OggOpusWriter(self.raw_path, origin))
            self._writers[0].write_packets(denoised)
            self._writers[1].write_packets(raw)
            self._sizes = (self.denoised_path.stat().st_size, self.raw_path.stat().st_size)
            free = disk.free_bytes()
            if disk.too_little_room(free):
                raise OSError(errno.ENOSPC, f"only {free} bytes left, under the floor of {disk.min_free_bytes}")
        except (OSError, av.error.FFmpegError) as error:
            self._write_broken = True
            self.recorder.reactor.callFromThread(self._write_failed, error)

    def _write_failed(self, error: BaseException) -> None:
        """(Reactor thread.)"""
        reason = self.recorder.disk.write_failed(error)
        self.log.warn(
            "Recording {public_id} of {owner}: writing to {path} failed ({error}); the recording stops",
            public_id=self.public_id,
            owner=self.owner["username"],
            path=str(self.denoised_path.parent),
            error=str(error),
        )
        if self.active:
            self.stop_early(reason)

    @property
    def seconds(self) -> float:
        return self.samples / RATE

    @property
    def active(self) -> bool:
        return self.finished is None

    def note(self, denoise: bool, atten_lim_db: float) -> None:
        """
        Record a denoise setting taking effect now.
        """
        self.timeline.append({"t": round(self.seconds, 3), "denoise": denoise, "atten_lim_db": atten_lim_db})

    def write(self, position: int, samples: int, denoised: Sequence[av.Packet], raw: Sequence[av.Packet]) -> None:
        """
        Append the next block of the broadcast: C{samples} samples from
        sample C{position} on, as the Opus packets of both signals that it
        completed (``OpusStream`` packets, 48 kHz timestamps; the first
        block's position is the start of the files).
        """
        if not self.active:
            return
        if self._origin is None:
            self._origin = position
        limit = self.recorder.max_seconds
        if limit is not None and self.seconds >= limit:
            self.stop_early("max_length")
            return
        if self._budget is not None and sum(self._sizes) >= self._budget:
            self.stop_early("quota")
            return
        self.samples += samples
        self._pending[0].extend(denoised)
        self._pending[1].extend(raw)
        self._pending_samples += samples
        if self._pending_samples >= WRITE_EVERY * RATE:
            self._hand_over()
        if self.seconds - self._last_progress >= PROGRESS_EVERY:
            self._last_progress = self.seconds
            self.recorder.store.update_recording(
                self.public_id,
                duration_seconds=self.seconds,
                denoised_bytes=self._sizes[0],
                raw_bytes=self._sizes[1],
                timeline=json.dumps(self.timeline),
            ).addErrback(lambda f: self.log.failure("Recording progress not saved", f))

    def _hand_over(self) -> None:
        """Queue the pending packets for the write threads."""
        origin, (denoised, raw) = self._origin, self._pending
        self._pending, self._pending_samples = ([], []), 0
        if origin is not None and (denoised or raw):
            self._jobs.submit(lambda: self._write(origin, denoised, raw))

    def stop_early(self, reason: str) -> None:
        self.stopped_reason = reason
        self.log.info(
            "Recording {public_id} of {owner} stopped: {reason}",
            public_id=self.public_id,
            owner=self.owner["username"],
            reason=reason,
        )
        self.finish("stopped_early")
        self._on_stopped(reason)

    def written(self) -> "Deferred[None]":
        """
        Fires (on the reactor thread) once every block queued so far is in
        the files.
        """
        return self._jobs.flushed(self.recorder.reactor)

    def finish(self, status: str = "complete") -> "Deferred[None]":
        """
        Close both files and write the final row; idempotent.
        """
        if self.finished is not None:
            return self.finished
        done: Deferred[None] = Deferred()
        self.finished = done
        self._hand_over()

        def close() -> None:
            if self._writers is not None:
                for writer in self._writers:
                    try:
                        writer.close()
                    except (OSError, av.error.FFmpegError):
                        # No room for the last page: the file ends at the page before.
                        if not self._write_broken:
                            raise

        self._jobs.submit(close)

        def closed_sizes() -> tuple[float, int, int] | None:
            if self._jobs.failure is not None:
                raise self._jobs.failure
            if not self.denoised_path.exists() or not self.raw_path.exists():
                for path in (self.denoised_path, self.raw_path):
                    path.unlink(missing_ok=True)
                return None  # a broadcast that ended before any audio came
            return (
                recorded_duration(self.denoised_path),
                self.denoised_path.stat().st_size,
                self.raw_path.stat().st_size,
            )

        async def finalise() -> None:
            # Waits on the reactor, not in a pool thread: a thread blocked
            # waiting is one fewer to run the writes it waits for.
            await self.written()
            sizes = await deferToThreadPool(self.recorder.reactor, self.recorder.pool, closed_sizes)
            if sizes is None:
                # Nothing was recorded: a row would only list an empty, unplayable recording.
                await self.recorder.store.delete_recording(self.public_id, self.owner["id"])
                self.recorder.active.pop(self.public_id, None)
                self.log.info(
                    "Recording {public_id} of {owner} carried no audio; removed",
                    public_id=self.public_id,
                    owner=self.owner["username"],
                )
                return
            duration, denoised_bytes, raw_bytes = sizes
            await self.recorder.store.update_recording(
                self.public_id,
                ended_at=self.recorder.clock(),
                duration_seconds=duration,
                denoised_bytes=denoised_bytes,
                raw_bytes=raw_bytes,
                status=status,
                timeline=json.dumps(self.timeline),
                model=self._model(),
            )
            self.recorder.active.pop(self.public_id, None)
            self.recorder.announce_finished(self)

        Deferred.fromCoroutine(finalise()).chainDeferred(done)
        return done


class Recorder:
    """
    Starts recordings, repairs unfinished ones, finalises all at shutdown.
    """

    log = logger()

    def __init__(
        self,
        store: Store,
        reactor: Any,
        data_dir: Path,
        clock: Callable[[], datetime],
        quota_bytes: int | None = None,
        max_seconds: float | None = None,
        threads: int = 2,
        min_free_bytes: int = DEFAULT_MIN_FREE_BYTES,
        node_id: str | None = None,
    ) -> None:
        """
        @param node_id: this node's id on the live bus, written on every
            recording row it starts (see L{repair}).
        """
        self.node_id = node_id
        self.store = store
        self.reactor = reactor
        self.data_dir = data_dir
        self.clock = clock
        self.quota_bytes = quota_bytes
        self.max_seconds = max_seconds
        self.pool = ThreadPool(minthreads=0, maxthreads=threads, name="denoisecast-recorder")
        #: Waveforms, one at a time, apart from the writers: one can take
        #: minutes (a 240-minute recording is decoded twice) and must not
        #: hold up live recordings' writes.
        self.waveform_pool = ThreadPool(minthreads=0, maxthreads=1, name="denoisecast-waveform")
        self.active: dict[str, Recording] = {}
        self.disk = DiskWatch(data_dir, min_free_bytes)
        #: Called with each recording once its files and row are final.
        self.finished_observers: list[Callable[[Recording], None]] = []
        #: Called with (public id, owner id) of each recording L{repair} kept.
        self.repaired_observers: list[Callable[[str, int], None]] = []

    def disk_state(self) -> "Deferred[DiskState]":
        """The recordings disk's state now (for health and before each recording)."""
        return Deferred.fromCoroutine(self.disk.measure(self.reactor, self.pool))

    def announce_finished(self, recording: Recording) -> None:
        for observer in self.finished_observers:
            try:
                observer(recording)
            except Exception:
                self.log.failure("Recording observer failed")

    def start_pool(self) -> None:
        self.pool.start()
        self.waveform_pool.start()

    async def start(
        self,
        owner: User,
        model: str | Callable[[], str],
        denoise: bool,
        atten_lim_db: float,
        on_stopped: Callable[[str], None],
    ) -> Recording | None:
        """
        Begin recording a broadcast, or return C{None} when the owner's
        quota is already used up (the broadcast goes on unrecorded).

        @raise RecordingRefused: the disk is full, under the free-space
            floor, or failed a write and has not taken one since.

        C{model} may be a callable: the engine may still be loading when a
        broadcast starts, so its name is asked again when the recording ends.
        """
        model_name = model if callable(model) else (lambda: model)
        disk = await self.disk_state()
        if disk.status != "ok":
            raise RecordingRefused(disk.refusal, disk.problem)
        budget = None
        if self.quota_bytes is not None:
            used = await self.store.storage_used(owner["id"])
            budget = self.quota_bytes - used
            if budget <= 0:
                return None
        public_id = secrets.token_urlsafe(12)
        started = self.clock()
        recording = Recording(self, public_id, owner, started, budget, on_stopped, model_name)
        recording.note(denoise, atten_lim_db)
        await self.store.create_recording(
            public_id, owner["id"], started, model_name(), json.dumps(recording.timeline), self.node_id
        )
        self.active[public_id] = recording
        return recording

    async def finish_all(self) -> None:
        for recording in list(self.active.values()):
            await recording.finish("complete")

    def stop_pool(self) -> None:
        self.pool.stop()
        self.waveform_pool.stop()

    async def repair(self, nodes: list[str | None] | None = None) -> int:
        """
        Find recordings a crash left unfinished, correct their duration and
        sizes from what is on disk, and mark them interrupted.

        @param nodes: whose recordings: every one (C{None}: a node alone on
            its database), or those of the given nodes (C{None} among them:
            rows from before recordings named their node).  Each row is
            claimed with a conditional update first, so of several nodes
            repairing the same dead node's rows, exactly one repairs each.
        """
        repaired = 0
        for row in await self.store.unfinished_recordings(nodes):
            if row["public_id"] in self.active:
                continue
            if not await self.store.claim_unfinished(row["public_id"]):
                continue  # another node repaired it first
            denoised, raw = recording_paths(self.data_dir, row["user_id"], row["public_id"])
            if not denoised.exists() and not raw.exists():
                # The crash came before any audio was written: nothing to keep.
                await self.store.delete_recording(row["public_id"], row["user_id"])
                self.log.info("Recording {public_id} held no audio; removed", public_id=row["public_id"])
                continue

            def measure(denoised: Path = denoised, raw: Path = raw) -> tuple[float, int, int]:
                size = lambda path: path.stat().st_size if path.exists() else 0  # noqa: E731
                return recorded_duration(denoised), size(denoised), size(raw)

            duration, denoised_bytes, raw_bytes = await deferToThreadPool(self.reactor, self.pool, measure)
            await self.store.update_recording(
                row["public_id"],
                status="interrupted",
                duration_seconds=duration,
                denoised_bytes=denoised_bytes,
                raw_bytes=raw_bytes,
            )
            self.log.warn(
                "Recording {public_id} of {owner} was interrupted; kept {seconds:.1f} s",
                public_id=row["public_id"],
                owner=row["owner"],
                seconds=duration,
            )
            repaired += 1
            for observer in self.repaired_observers:
                try:
                    observer(row["public_id"], row["user_id"])
                except Exception:
                    self.log.failure("Repair observer failed")
        return repaired
