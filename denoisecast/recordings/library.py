"""
The read side of recordings: listing, fetching, deleting, waveforms.

Access is for the owner and the owner's friends; to anyone else a
recording does not exist (404, the same answer as for an id that was never
made), so ids reveal nothing.
"""

from __future__ import annotations

import base64
import builtins
import json
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.threads import deferToThreadPool
from twisted.python.failure import Failure

from denoisecast.errors import DenoiseCastError, bad_request, not_found
from denoisecast.protocols.messages import server_message
from denoisecast.recordings.files import file_peaks
from denoisecast.recordings.recorder import Recorder, Recording, recording_paths
from denoisecast.runtime.logs import logger
from denoisecast.storage.store import Store, User

PAGE_MAX = 50
WAVEFORM_POINTS = 512
TRACKS = ("denoised", "raw")


def _no_such_recording() -> DenoiseCastError:
    return not_found("no_such_recording", "There is no such recording.")


def encode_cursor(row: dict[str, Any]) -> str:
    raw = f"{row['started_at'].isoformat()}|{row['public_id']}"
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        started, public_id = base64.urlsafe_b64decode(padded.encode()).decode().split("|", 1)
        return datetime.fromisoformat(started), public_id
    except (ValueError, UnicodeDecodeError):
        raise bad_request("That page cursor is not valid.", "invalid_query") from None


class RecordingLibrary:
    log = logger()

    def __init__(
        self,
        store: Store,
        recorder: Recorder,
        find_user: Callable[[str], Any],
        tell_circle: Callable[[int, dict[str, Any]], None] | None = None,
    ) -> None:
        self._store = store
        self._recorder = recorder
        self._find_user = find_user
        #: Sends an event to a user's own pages and their friends' (presence).
        self._tell_circle = tell_circle or (lambda user_id, message: None)
        #: The requests waiting for each waveform being computed, by recording id.
        self._waveforms: dict[str, list[Deferred[list[float]]]] = {}
        recorder.finished_observers.append(self._finished)
        recorder.repaired_observers.append(self._announce)

    def _finished(self, recording: Recording) -> None:
        self._announce(recording.public_id, recording.owner["id"])

    def _announce(self, public_id: str, owner_id: int) -> None:
        """
        A recording became final (finished, or repaired after its node
        died): everyone allowed to play it (its owner and the owner's
        friends) sees it appear in their lists at once.
        """
        async def announce() -> None:
            row = await self._store.get_visible_recording(public_id, owner_id)
            if row is not None:
                self._tell_circle(row["user_id"], server_message("recording_ready", recording=self.public(row)))

        Deferred.fromCoroutine(announce()).addErrback(
            lambda failure: self.log.failure("Announcing a recording failed", failure)
        )

    @staticmethod
    def public(row: dict[str, Any]) -> dict[str, Any]:
        timeline = json.loads(row["timeline"])
        return {
            "id": row["public_id"],
            "owner": row["owner"],
            "started_at": row["started_at"],
            "ended_at": row["ended_at"],
            "duration_seconds": round(row["duration_seconds"], 3),
            "denoised_bytes": row["denoised_bytes"],
            "raw_bytes": row["raw_bytes"],
            "model": row["model"],
            "status": row["status"],
            "denoise": bool(timeline and timeline[0]["denoise"]),
            "timeline": timeline,
        }

    async def list(
        self, viewer: User, owner_name: str | None, cursor: str | None, limit: int
    ) -> tuple[list[dict[str, Any]], str | None]:
        owner_id = None
        if owner_name is not None:
            owner = await self._find_user(owner_name)
            if owner is None:
                return [], None
            owner_id = owner["id"]
        before = decode_cursor(cursor) if cursor else None
        rows = await self._store.list_visible_recordings(viewer["id"], owner_id, before, limit + 1)
        page = rows[:limit]
        return [self.public(row) for row in page], (encode_cursor(page[-1]) if len(rows) > limit else None)

    async def get(self, viewer: User, public_id: str) -> dict[str, Any]:
        if len(public_id) > 32:
            raise _no_such_recording()
        row = await self._store.get_visible_recording(public_id, viewer["id"])
        if row is None:
            raise _no_such_recording()
        return row

    async def audio_path(self, viewer: User, public_id: str, track: str) -> Path:
        if track not in TRACKS:
            raise bad_request("track is 'denoised' or 'raw'.", "invalid_query")
        row = await self.get(viewer, public_id)
        denoised, raw = recording_paths(self._recorder.data_dir, row["user_id"], row["public_id"])
        path = denoised if track == "denoised" else raw
        if not path.exists():
            raise _no_such_recording()
        return path

    async def delete(self, viewer: User, public_id: str) -> None:
        row = await self.get(viewer, public_id)
        if row["user_id"] != viewer["id"]:
            raise DenoiseCastError(403, "not_owner", "Only the owner can delete a recording.")
        live = self._recorder.active.get(public_id)
        if live is not None:
            await live.finish("complete")
        await self._store.delete_recording(public_id, viewer["id"])
        for path in recording_paths(self._recorder.data_dir, row["user_id"], row["public_id"]):
            path.unlink(missing_ok=True)
        self._tell_circle(row["user_id"], server_message("recording_removed", id=public_id, owner=row["owner"]))

    async def waveform(self, viewer: User, public_id: str) -> builtins.list[float]:  # list: the method above
        """
        The peaks of the denoised track, computed once and kept in the row
        (while the recording is still being written, computed afresh), by
        decoding the file piece by piece: memory stays at a frame, not at
        the decoded recording (2.7 GB for 240 minutes).
        """
        row = await self.get(viewer, public_id)
        if row["peaks"] is not None:
            return json.loads(row["peaks"])
        path = (await self.audio_path(viewer, public_id, "denoised"))
        waiters = self._waveforms.get(public_id)
        if waiters is None:
            # Requests for the same waveform share one computation.
            waiters = self._waveforms[public_id] = []
            computing = deferToThreadPool(
                self._recorder.reactor, self._recorder.waveform_pool, lambda: file_peaks(path, WAVEFORM_POINTS)
            )
            computing.addBoth(self._computed, public_id)
        mine: Deferred[list[float]] = Deferred()
        waiters.append(mine)
        points = await mine
        if row["status"] != "recording":
            await self._store.update_recording(public_id, peaks=json.dumps(points))
        return points

    def _computed(self, result: "builtins.list[float] | Failure", public_id: str) -> None:
        """Hand the computed waveform (or its failure) to every request waiting for it."""
        for waiter in self._waveforms.pop(public_id, []):
            if isinstance(result, Failure):
                waiter.errback(result)
            else:
                waiter.callback(result)
