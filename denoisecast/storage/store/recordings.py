"""
Recording rows: created when a broadcast starts, finalised or repaired, listed for the owner and friends.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Connection, and_, delete, false, func, insert, or_, select, text, update
from twisted.internet.defer import Deferred

from denoisecast.storage.database import Database
from denoisecast.storage.store.common import utc
from denoisecast.storage.store.friends import _friendship_between
from denoisecast.storage.tables import recordings, users

RECORDING_COLUMNS = [
    recordings.c.public_id,
    recordings.c.user_id,
    users.c.username.label("owner"),
    recordings.c.started_at,
    recordings.c.ended_at,
    recordings.c.duration_seconds,
    recordings.c.denoised_bytes,
    recordings.c.raw_bytes,
    recordings.c.model,
    recordings.c.status,
    recordings.c.timeline,
]


def _recording(row: Any) -> dict[str, Any]:
    found = dict(row._mapping)
    found["started_at"] = utc(found["started_at"])
    if found["ended_at"] is not None:
        found["ended_at"] = utc(found["ended_at"])
    return found


def _visible_to(viewer: int) -> Any:
    """
    Recordings the viewer may see: their own and their friends' -- the SQL
    form of L{denoisecast.handlers.access.can_see}, which tests hold equal.
    """
    friend = select(1).where(_friendship_between(viewer, recordings.c.user_id)).exists()
    return or_(recordings.c.user_id == viewer, friend)


def thd_create_recording(
    conn: Connection,
    public_id: str,
    user_id: int,
    started_at: datetime,
    model: str,
    timeline: str,
    node_id: str | None = None,
) -> None:
    conn.execute(
        insert(recordings).values(
            node_id=node_id,
            public_id=public_id,
            user_id=user_id,
            started_at=started_at,
            duration_seconds=0.0,
            denoised_bytes=0,
            raw_bytes=0,
            model=model,
            status="recording",
            timeline=timeline,
        )
    )


def thd_update_recording(conn: Connection, public_id: str, values: dict[str, Any]) -> None:
    conn.execute(update(recordings).where(recordings.c.public_id == public_id).values(**values))


def thd_get_visible_recording(conn: Connection, public_id: str, viewer: int) -> dict[str, Any] | None:
    row = conn.execute(
        select(*RECORDING_COLUMNS, recordings.c.peaks)
        .join(users, users.c.id == recordings.c.user_id)
        .where(recordings.c.public_id == public_id, _visible_to(viewer))
    ).first()
    return None if row is None else _recording(row)


def thd_list_visible_recordings(
    conn: Connection,
    viewer: int,
    owner: int | None,
    before: tuple[datetime, str] | None,
    limit: int,
) -> list[dict[str, Any]]:
    """
    Newest first; keyset pagination on (started_at, public_id).
    """
    query = (
        select(*RECORDING_COLUMNS)
        .join(users, users.c.id == recordings.c.user_id)
        .where(_visible_to(viewer))
        .order_by(recordings.c.started_at.desc(), recordings.c.public_id.desc())
        .limit(limit)
    )
    if owner is not None:
        query = query.where(recordings.c.user_id == owner)
    if before is not None:
        started, public_id = before
        query = query.where(
            or_(
                recordings.c.started_at < started,
                and_(recordings.c.started_at == started, recordings.c.public_id < public_id),
            )
        )
    return [_recording(row) for row in conn.execute(query)]


def thd_delete_recording(conn: Connection, public_id: str, owner: int) -> bool:
    result = conn.execute(
        delete(recordings).where(recordings.c.public_id == public_id, recordings.c.user_id == owner)
    )
    return result.rowcount > 0


def thd_unfinished_recordings(conn: Connection, nodes: list[str | None] | None = None) -> list[dict[str, Any]]:
    """
    Recordings still marked C{recording}: all of them (C{nodes} is
    C{None}), or those of the given nodes (C{None} among them: rows that
    name no node).
    """
    query = (
        select(*RECORDING_COLUMNS, recordings.c.node_id)
        .join(users, users.c.id == recordings.c.user_id)
        .where(recordings.c.status == "recording")
    )
    if nodes is not None:
        named = [node for node in nodes if node is not None]
        conditions = [recordings.c.node_id.in_(named)] if named else []
        if None in nodes:
            conditions.append(recordings.c.node_id.is_(None))
        query = query.where(or_(*conditions)) if conditions else query.where(false())
    return [_recording(row) for row in conn.execute(query)]


def thd_recording_nodes(conn: Connection) -> list[str]:
    """The nodes that have recordings still marked C{recording}."""
    rows = conn.execute(
        select(recordings.c.node_id).where(recordings.c.status == "recording", recordings.c.node_id.is_not(None)).distinct()
    )
    return sorted(row[0] for row in rows)


def thd_claim_unfinished(conn: Connection, public_id: str) -> bool:
    """
    Mark an unfinished recording interrupted, if it still is unfinished:
    of several nodes repairing the same dead node's rows at once, exactly
    one gets C{True} for each row (the UPDATE is conditional), and only it
    goes on to measure the files.
    """
    result = conn.execute(
        update(recordings)
        .where(recordings.c.public_id == public_id, recordings.c.status == "recording")
        .values(status="interrupted")
    )
    return result.rowcount == 1


def thd_storage_used(conn: Connection, user_id: int) -> int:
    total = conn.execute(
        select(func.coalesce(func.sum(recordings.c.denoised_bytes + recordings.c.raw_bytes), 0)).where(
            recordings.c.user_id == user_id
        )
    ).scalar_one()
    return int(total)



def thd_ping(conn: Connection) -> bool:
    return conn.execute(text("SELECT 1")).scalar() == 1


class RecordingStore:
    """Recording rows and the database's health."""

    db: Database

    def create_recording(
        self, public_id: str, user_id: int, started_at: datetime, model: str, timeline: str,
        node_id: str | None = None,
    ) -> "Deferred[None]":
        return self.db.write(thd_create_recording, public_id, user_id, started_at, model, timeline, node_id)

    def update_recording(self, public_id: str, **values: Any) -> "Deferred[None]":
        return self.db.write(thd_update_recording, public_id, values)

    def get_visible_recording(self, public_id: str, viewer: int) -> "Deferred[dict[str, Any] | None]":
        return self.db.read(thd_get_visible_recording, public_id, viewer)

    def list_visible_recordings(
        self, viewer: int, owner: int | None, before: tuple[datetime, str] | None, limit: int
    ) -> "Deferred[list[dict[str, Any]]]":
        return self.db.read(thd_list_visible_recordings, viewer, owner, before, limit)

    def delete_recording(self, public_id: str, owner: int) -> "Deferred[bool]":
        return self.db.write(thd_delete_recording, public_id, owner)

    def unfinished_recordings(self, nodes: list[str | None] | None = None) -> "Deferred[list[dict[str, Any]]]":
        return self.db.read(thd_unfinished_recordings, nodes)

    def recording_nodes(self) -> "Deferred[list[str]]":
        return self.db.read(thd_recording_nodes)

    def claim_unfinished(self, public_id: str) -> "Deferred[bool]":
        return self.db.write(thd_claim_unfinished, public_id)

    def storage_used(self, user_id: int) -> "Deferred[int]":
        return self.db.read(thd_storage_used, user_id)

    def ping(self) -> "Deferred[bool]":
        return self.db.read(thd_ping)
