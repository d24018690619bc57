"""
The queries of administration: the admin flag, disabled accounts, storage
use, any user's recordings, sessions still valid, and the demo users.

Like the rest of the storage layer, ``thd_*`` functions run on the database
pool inside one transaction and return plain data; L{AdminStore} hands them
to the pool and returns Deferreds.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, delete, func, select, update
from twisted.internet.defer import Deferred

from denoisecast.storage.database import Database
from denoisecast.storage.store import (
    RECORDING_COLUMNS,
    _befriend,
    _recording,
    thd_create_user,
    utc,
)
from denoisecast.storage.tables import recordings, sessions, users


def _account(row: Any) -> dict[str, Any]:
    return {
        "id": row.id,
        "username": row.username,
        "created_at": utc(row.created_at),
        "is_admin": bool(row.is_admin),
        "disabled": row.disabled_at is not None,
    }


_ACCOUNT_COLUMNS = [users.c.id, users.c.username, users.c.created_at, users.c.is_admin, users.c.disabled_at]


def thd_get_account(conn: Connection, username: str) -> dict[str, Any] | None:
    row = conn.execute(
        select(*_ACCOUNT_COLUMNS).where(func.lower(users.c.username) == username.lower())
    ).first()
    return None if row is None else _account(row)


def thd_is_admin(conn: Connection, user_id: int) -> bool:
    found = conn.execute(
        select(users.c.is_admin).where(users.c.id == user_id, users.c.disabled_at.is_(None))
    ).scalar_one_or_none()
    return bool(found)


def thd_list_accounts(conn: Connection) -> list[dict[str, Any]]:
    """
    Every account with its recordings' count and bytes on disk, by name.
    """
    used = (
        select(
            recordings.c.user_id,
            func.count().label("recordings"),
            func.sum(recordings.c.denoised_bytes + recordings.c.raw_bytes).label("bytes"),
        )
        .group_by(recordings.c.user_id)
        .subquery()
    )
    rows = conn.execute(
        select(*_ACCOUNT_COLUMNS, used.c.recordings, used.c.bytes)
        .outerjoin(used, used.c.user_id == users.c.id)
        .order_by(func.lower(users.c.username))
    )
    return [
        {**_account(row), "recordings": int(row.recordings or 0), "bytes": int(row.bytes or 0)}
        for row in rows
    ]


def thd_set_admin(conn: Connection, user_id: int, admin: bool) -> None:
    conn.execute(update(users).where(users.c.id == user_id).values(is_admin=admin))


def thd_set_disabled(conn: Connection, user_id: int, when: datetime | None) -> int:
    """
    Disable the account (ending every session of it in the same
    transaction) or, with C{when} None, enable it again.

    @return: how many sessions ended.
    """
    conn.execute(update(users).where(users.c.id == user_id).values(disabled_at=when))
    if when is None:
        return 0
    return conn.execute(delete(sessions).where(sessions.c.user_id == user_id)).rowcount


def thd_user_recordings(conn: Connection, user_id: int) -> list[dict[str, Any]]:
    rows = conn.execute(
        select(*RECORDING_COLUMNS)
        .join(users, users.c.id == recordings.c.user_id)
        .where(recordings.c.user_id == user_id)
        .order_by(recordings.c.started_at.desc(), recordings.c.public_id.desc())
    )
    return [_recording(row) for row in rows]


def thd_get_recording(conn: Connection, public_id: str) -> dict[str, Any] | None:
    row = conn.execute(
        select(*RECORDING_COLUMNS)
        .join(users, users.c.id == recordings.c.user_id)
        .where(recordings.c.public_id == public_id)
    ).first()
    return None if row is None else _recording(row)


def thd_valid_sessions(conn: Connection, token_hashes: Iterable[str], now: datetime) -> set[str]:
    """
    Which of C{token_hashes} still belong to an unexpired session of an
    enabled account.
    """
    wanted = sorted(set(token_hashes))
    found: set[str] = set()
    for start in range(0, len(wanted), 500):
        found.update(
            conn.execute(
                select(sessions.c.token_hash)
                .join(users, users.c.id == sessions.c.user_id)
                .where(
                    sessions.c.token_hash.in_(wanted[start : start + 500]),
                    sessions.c.expires_at > now,
                    users.c.disabled_at.is_(None),
                )
            ).scalars()
        )
    return found


def thd_disabled_among(conn: Connection, user_ids: Iterable[int]) -> set[int]:
    wanted = sorted(set(user_ids))
    if not wanted:
        return set()
    return set(
        conn.execute(
            select(users.c.id).where(users.c.id.in_(wanted), users.c.disabled_at.is_not(None))
        ).scalars()
    )


def thd_create_demo(
    conn: Connection, accounts: list[tuple[str, str]], pairs: list[tuple[str, str]], now: datetime
) -> list[str]:
    """
    Create the demo accounts (name, password hash) that do not exist yet
    and befriend the pairs among the new ones; return the names created.
    """
    created: dict[str, int] = {}
    for name, password_hash in accounts:
        if thd_get_account(conn, name) is None:
            created[name] = thd_create_user(conn, name, password_hash, now)["id"]
    for a, b in pairs:
        if a in created and b in created:
            _befriend(conn, created[a], created[b], now)
    return list(created)


class AdminStore:
    """
    Deferred-returning access to the administration queries.
    """

    def __init__(self, database: Database) -> None:
        self.db = database

    def get_account(self, username: str) -> "Deferred[dict[str, Any] | None]":
        return self.db.read(thd_get_account, username)

    def is_admin(self, user_id: int) -> "Deferred[bool]":
        return self.db.read(thd_is_admin, user_id)

    def list_accounts(self) -> "Deferred[list[dict[str, Any]]]":
        return self.db.read(thd_list_accounts)

    def set_admin(self, user_id: int, admin: bool) -> "Deferred[None]":
        return self.db.write(thd_set_admin, user_id, admin)

    def set_disabled(self, user_id: int, when: datetime | None) -> "Deferred[int]":
        return self.db.write(thd_set_disabled, user_id, when)

    def user_recordings(self, user_id: int) -> "Deferred[list[dict[str, Any]]]":
        return self.db.read(thd_user_recordings, user_id)

    def get_recording(self, public_id: str) -> "Deferred[dict[str, Any] | None]":
        return self.db.read(thd_get_recording, public_id)

    def valid_sessions(self, token_hashes: Iterable[str], now: datetime) -> "Deferred[set[str]]":
        return self.db.read(thd_valid_sessions, list(token_hashes), now)

    def disabled_among(self, user_ids: Iterable[int]) -> "Deferred[set[int]]":
        return self.db.read(thd_disabled_among, list(user_ids))

    def create_demo(
        self, accounts: list[tuple[str, str]], pairs: list[tuple[str, str]], now: datetime
    ) -> "Deferred[list[str]]":
        return self.db.write(thd_create_demo, accounts, pairs, now)
