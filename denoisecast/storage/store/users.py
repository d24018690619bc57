"""
Accounts: creating users, logins, passwords and searching by name.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Connection, delete, func, insert, select, update
from sqlalchemy.exc import IntegrityError
from twisted.internet.defer import Deferred

from denoisecast.storage.database import Database
from denoisecast.storage.store.common import User, UsernameTaken, _user
from denoisecast.storage.store.friends import _friendship_between
from denoisecast.storage.tables import friend_requests, sessions, users


def thd_create_user(
    conn: Connection, username: str, password_hash: str, now: datetime
) -> User:
    try:
        with conn.begin_nested():
            result = conn.execute(
                insert(users).values(
                    username=username,
                    password_hash=password_hash,
                    created_at=now,
                    password_changed_at=now,
                )
            )
    except IntegrityError:
        raise UsernameTaken(username) from None
    # SQLAlchemy types the key as optional; an INSERT that succeeded always has one.
    (user_id,) = result.inserted_primary_key  # type: ignore[misc]
    return {"id": user_id, "username": username, "created_at": now}


def thd_get_login(conn: Connection, username: str) -> dict[str, Any] | None:
    row = conn.execute(
        select(
            users.c.id, users.c.username, users.c.created_at, users.c.password_hash, users.c.disabled_at
        ).where(func.lower(users.c.username) == username.lower())
    ).first()
    if row is None:
        return None
    return {**_user(row), "password_hash": row.password_hash, "disabled": row.disabled_at is not None}


def thd_get_user_by_name(conn: Connection, username: str) -> User | None:
    row = conn.execute(
        select(users.c.id, users.c.username, users.c.created_at).where(
            func.lower(users.c.username) == username.lower()
        )
    ).first()
    return None if row is None else _user(row)


def thd_get_password_hash(conn: Connection, user_id: int) -> str | None:
    return conn.execute(
        select(users.c.password_hash).where(users.c.id == user_id)
    ).scalar_one_or_none()


def thd_set_password(
    conn: Connection, user_id: int, password_hash: str, now: datetime
) -> None:
    """
    Change the password and end every session of the user in one transaction.
    """
    conn.execute(
        update(users)
        .where(users.c.id == user_id)
        .values(password_hash=password_hash, password_changed_at=now)
    )
    conn.execute(delete(sessions).where(sessions.c.user_id == user_id))



def _relationship_columns(me: int) -> list[Any]:
    friend = (
        select(1)
        .where(_friendship_between(me, users.c.id))
        .exists()
    )
    outgoing = (
        select(1)
        .where(
            friend_requests.c.from_user_id == me,
            friend_requests.c.to_user_id == users.c.id,
        )
        .exists()
    )
    incoming = (
        select(1)
        .where(
            friend_requests.c.to_user_id == me,
            friend_requests.c.from_user_id == users.c.id,
        )
        .exists()
    )
    return [friend.label("is_friend"), outgoing.label("outgoing"), incoming.label("incoming")]


def thd_search_users(
    conn: Connection, me: int, prefix: str, after: str | None, limit: int
) -> list[dict[str, Any]]:
    """
    Users whose name starts with C{prefix} (case-insensitively), never C{me},
    ordered by name, the page after the name C{after}.
    """
    escaped = prefix.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    query = (
        select(users.c.id, users.c.username, users.c.created_at, *_relationship_columns(me))
        .where(func.lower(users.c.username).like(escaped + "%", escape="\\"))
        .where(users.c.id != me)
        .order_by(func.lower(users.c.username))
        .limit(limit)
    )
    if after is not None:
        query = query.where(func.lower(users.c.username) > after.lower())
    found = []
    for row in conn.execute(query):
        if row.is_friend:
            relationship = "friend"
        elif row.outgoing:
            relationship = "outgoing"
        elif row.incoming:
            relationship = "incoming"
        else:
            relationship = "none"
        found.append({**_user(row), "relationship": relationship})
    return found


class UserStore:
    """Users, logins and passwords."""

    db: Database

    def create_user(self, username: str, password_hash: str, now: datetime) -> "Deferred[User]":
        return self.db.write(thd_create_user, username, password_hash, now)

    def get_login(self, username: str) -> "Deferred[dict[str, Any] | None]":
        return self.db.read(thd_get_login, username)

    def get_user_by_name(self, username: str) -> "Deferred[User | None]":
        return self.db.read(thd_get_user_by_name, username)

    def get_password_hash(self, user_id: int) -> "Deferred[str | None]":
        return self.db.read(thd_get_password_hash, user_id)

    def set_password(self, user_id: int, password_hash: str, now: datetime) -> "Deferred[None]":
        return self.db.write(thd_set_password, user_id, password_hash, now)

    def search_users(
        self, me: int, prefix: str, after: str | None, limit: int
    ) -> "Deferred[list[dict[str, Any]]]":
        return self.db.read(thd_search_users, me, prefix, after, limit)
