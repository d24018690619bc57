"""
Login sessions: created at login, looked up on every request, swept when expired.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Connection, delete, insert, select
from twisted.internet.defer import Deferred

from denoisecast.storage.database import Database
from denoisecast.storage.store.common import User, _user
from denoisecast.storage.tables import sessions, users


def thd_create_session(
    conn: Connection, user_id: int, token_hash: str, now: datetime, expires_at: datetime
) -> None:
    conn.execute(
        insert(sessions).values(
            user_id=user_id, token_hash=token_hash, created_at=now, expires_at=expires_at
        )
    )


def thd_get_session_user(conn: Connection, token_hash: str, now: datetime) -> User | None:
    row = conn.execute(
        select(users.c.id, users.c.username, users.c.created_at)
        .join(sessions, sessions.c.user_id == users.c.id)
        .where(
            sessions.c.token_hash == token_hash,
            sessions.c.expires_at > now,
            users.c.disabled_at.is_(None),
        )
    ).first()
    return None if row is None else _user(row)


def thd_delete_session(conn: Connection, token_hash: str) -> None:
    conn.execute(delete(sessions).where(sessions.c.token_hash == token_hash))


def thd_delete_expired_sessions(conn: Connection, now: datetime) -> int:
    return conn.execute(delete(sessions).where(sessions.c.expires_at <= now)).rowcount


class SessionStore:
    """Login sessions."""

    db: Database

    def create_session(
        self, user_id: int, token_hash: str, now: datetime, expires_at: datetime
    ) -> "Deferred[None]":
        return self.db.write(thd_create_session, user_id, token_hash, now, expires_at)

    def get_session_user(self, token_hash: str, now: datetime) -> "Deferred[User | None]":
        return self.db.read(thd_get_session_user, token_hash, now)

    def delete_session(self, token_hash: str) -> "Deferred[None]":
        return self.db.write(thd_delete_session, token_hash)

    def delete_expired_sessions(self, now: datetime) -> "Deferred[int]":
        return self.db.write(thd_delete_expired_sessions, now)
