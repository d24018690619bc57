"""
What every part of the store shares: the plain user dict, the conflicts it
reports, and UTC datetimes whichever database hands them back.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

User = dict[str, Any]


class UsernameTaken(Exception):
    pass


class AlreadyFriends(Exception):
    pass


class RequestExists(Exception):
    pass


class NoSuchRequest(Exception):
    pass


class NotFriends(Exception):
    pass


class TooManyTokens(Exception):
    pass


def utc(value: datetime) -> datetime:
    """
    SQLite hands back naive datetimes; everything stored is UTC.
    """
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def _user(row: Any) -> User:
    return {
        "id": row.id,
        "username": row.username,
        "created_at": utc(row.created_at),
    }


def _pair(a: int, b: int) -> tuple[int, int]:
    return (a, b) if a < b else (b, a)
