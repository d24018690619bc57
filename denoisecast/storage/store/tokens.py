"""
Publish and listen tokens: created, listed and revoked by their owner,
looked up by hash when a client that is not a browser presents one.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Connection, delete, func, insert, select, update
from twisted.internet.defer import Deferred

from denoisecast.storage.database import Database
from denoisecast.storage.store.common import TooManyTokens, _user, utc
from denoisecast.storage.tables import access_tokens, users

#: The token columns a listing shows (never the hash).
_LISTED = (
    access_tokens.c.public_id,
    access_tokens.c.scope,
    access_tokens.c.name,
    access_tokens.c.created_at,
    access_tokens.c.last_used_at,
)


def _token(row: Any) -> dict[str, Any]:
    return {
        "id": row.public_id,
        "scope": row.scope,
        "name": row.name,
        "created_at": utc(row.created_at),
        "last_used_at": None if row.last_used_at is None else utc(row.last_used_at),
    }


def thd_create_token(
    conn: Connection,
    user_id: int,
    public_id: str,
    scope: str,
    name: str,
    token_hash: str,
    now: datetime,
    limit: int,
) -> dict[str, Any]:
    """
    Keep a new token's hash; refuse (L{TooManyTokens}) when the user
    already has C{limit} tokens.

    The user's row is locked first on PostgreSQL so that two creations at
    once cannot both pass the count (SQLite's writes are serialised).
    """
    if conn.dialect.name != "sqlite":
        conn.execute(select(users.c.id).where(users.c.id == user_id).with_for_update()).all()
    held = conn.execute(
        select(func.count()).select_from(access_tokens).where(access_tokens.c.user_id == user_id)
    ).scalar_one()
    if held >= limit:
        raise TooManyTokens()
    conn.execute(
        insert(access_tokens).values(
            public_id=public_id,
            user_id=user_id,
            scope=scope,
            name=name,
            token_hash=token_hash,
            created_at=now,
        )
    )
    row = conn.execute(select(*_LISTED).where(access_tokens.c.public_id == public_id)).one()
    return _token(row)


def thd_list_tokens(conn: Connection, user_id: int) -> list[dict[str, Any]]:
    rows = conn.execute(
        select(*_LISTED)
        .where(access_tokens.c.user_id == user_id)
        .order_by(access_tokens.c.created_at, access_tokens.c.id)
    )
    return [_token(row) for row in rows]


def thd_delete_token(conn: Connection, user_id: int, public_id: str) -> bool:
    """Delete one of C{user_id}'s tokens; whether there was one (another's is not)."""
    result = conn.execute(
        delete(access_tokens).where(
            access_tokens.c.user_id == user_id, access_tokens.c.public_id == public_id
        )
    )
    return result.rowcount > 0


def thd_token_user(conn: Connection, token_hash: str, scope: str) -> dict[str, Any] | None:
    """
    The owner of the token with this hash and scope, if their account is
    not disabled, with the token's id and last use: C{{"user": ...,
    "token_id": ..., "last_used_at": ...}}.  A read: a flood of wrong
    tokens takes no write locks.
    """
    row = conn.execute(
        select(
            users.c.id,
            users.c.username,
            users.c.created_at,
            access_tokens.c.id.label("token_id"),
            access_tokens.c.last_used_at,
        )
        .join(access_tokens, access_tokens.c.user_id == users.c.id)
        .where(
            access_tokens.c.token_hash == token_hash,
            access_tokens.c.scope == scope,
            users.c.disabled_at.is_(None),
        )
    ).first()
    if row is None:
        return None
    last = None if row.last_used_at is None else utc(row.last_used_at)
    return {"user": _user(row), "token_id": row.token_id, "last_used_at": last}


def thd_touch_token(conn: Connection, token_id: int, now: datetime) -> None:
    conn.execute(update(access_tokens).where(access_tokens.c.id == token_id).values(last_used_at=now))


class TokenStore:
    """Publish and listen tokens."""

    db: Database

    def create_token(
        self,
        user_id: int,
        public_id: str,
        scope: str,
        name: str,
        token_hash: str,
        now: datetime,
        limit: int,
    ) -> "Deferred[dict[str, Any]]":
        return self.db.write(thd_create_token, user_id, public_id, scope, name, token_hash, now, limit)

    def list_tokens(self, user_id: int) -> "Deferred[list[dict[str, Any]]]":
        return self.db.read(thd_list_tokens, user_id)

    def delete_token(self, user_id: int, public_id: str) -> "Deferred[bool]":
        return self.db.write(thd_delete_token, user_id, public_id)

    def token_user(self, token_hash: str, scope: str) -> "Deferred[dict[str, Any] | None]":
        return self.db.read(thd_token_user, token_hash, scope)

    def touch_token(self, token_id: int, now: datetime) -> "Deferred[None]":
        return self.db.write(thd_touch_token, token_id, now)
