"""
Friendships and friend requests, with both users locked while one changes.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Connection, and_, delete, insert, or_, select
from sqlalchemy.exc import IntegrityError
from twisted.internet.defer import Deferred

from denoisecast.storage.database import Database
from denoisecast.storage.store.common import AlreadyFriends, NoSuchRequest, NotFriends, RequestExists, _pair, _user, utc
from denoisecast.storage.tables import friend_requests, friendships, users


def _friendship_between(me: int, other: Any) -> Any:
    """
    The condition that a friendships row pairs C{me} with C{other} (a
    column), whichever of the two has the lower id.
    """
    return or_(
        and_(friendships.c.user_low_id == me, friendships.c.user_high_id == other),
        and_(friendships.c.user_high_id == me, friendships.c.user_low_id == other),
    )



def _lock_users(conn: Connection, *user_ids: int) -> None:
    """
    Serialise concurrent friend operations on the same pair of users.

    On PostgreSQL two opposite requests sent at the same moment would each
    miss the other's row; locking both user rows (in id order, so two
    transactions never wait on each other crosswise) makes one wait for the
    other.  SQLite's writing transactions are already serialised.
    """
    if conn.dialect.name == "sqlite":
        return
    conn.execute(
        select(users.c.id).where(users.c.id.in_(sorted(user_ids))).order_by(users.c.id).with_for_update()
    ).all()


def _are_friends(conn: Connection, a: int, b: int) -> bool:
    low, high = _pair(a, b)
    return (
        conn.execute(
            select(1).where(friendships.c.user_low_id == low, friendships.c.user_high_id == high)
        ).first()
        is not None
    )


def _delete_request(conn: Connection, from_id: int, to_id: int) -> bool:
    result = conn.execute(
        delete(friend_requests).where(
            friend_requests.c.from_user_id == from_id, friend_requests.c.to_user_id == to_id
        )
    )
    return result.rowcount > 0


def _befriend(conn: Connection, a: int, b: int, now: datetime) -> None:
    low, high = _pair(a, b)
    conn.execute(insert(friendships).values(user_low_id=low, user_high_id=high, created_at=now))


def thd_send_request(conn: Connection, from_id: int, to_id: int, now: datetime) -> str:
    """
    Ask C{to_id} for friendship.  If they already asked C{from_id}, the two
    become friends at once.

    @return: C{"requested"} or C{"friends"}.
    """
    _lock_users(conn, from_id, to_id)
    if _are_friends(conn, from_id, to_id):
        raise AlreadyFriends()
    if _delete_request(conn, to_id, from_id):
        _befriend(conn, from_id, to_id, now)
        return "friends"
    try:
        with conn.begin_nested():
            conn.execute(
                insert(friend_requests).values(
                    from_user_id=from_id, to_user_id=to_id, created_at=now
                )
            )
    except IntegrityError:
        raise RequestExists() from None
    return "requested"


def thd_accept_request(conn: Connection, me: int, from_id: int, now: datetime) -> None:
    _lock_users(conn, me, from_id)
    if not _delete_request(conn, from_id, me):
        raise NoSuchRequest()
    _befriend(conn, me, from_id, now)


def thd_reject_request(conn: Connection, me: int, from_id: int) -> None:
    if not _delete_request(conn, from_id, me):
        raise NoSuchRequest()


def thd_cancel_request(conn: Connection, me: int, to_id: int) -> None:
    if not _delete_request(conn, me, to_id):
        raise NoSuchRequest()


def thd_unfriend(conn: Connection, me: int, other: int) -> None:
    low, high = _pair(me, other)
    result = conn.execute(
        delete(friendships).where(
            friendships.c.user_low_id == low, friendships.c.user_high_id == high
        )
    )
    if result.rowcount == 0:
        raise NotFriends()


def thd_are_friends(conn: Connection, a: int, b: int) -> bool:
    return _are_friends(conn, a, b)


def thd_list_friends(conn: Connection, me: int) -> list[dict[str, Any]]:
    rows = conn.execute(
        select(users.c.id, users.c.username, users.c.created_at, friendships.c.created_at.label("since"))
        .join(friendships, _friendship_between(me, users.c.id))
        .order_by(users.c.username)
    )
    return [{**_user(row), "since": utc(row.since)} for row in rows]


def thd_list_requests(conn: Connection, me: int) -> dict[str, list[dict[str, Any]]]:
    def requests(mine: Any, theirs: Any) -> list[dict[str, Any]]:
        rows = conn.execute(
            select(users.c.id, users.c.username, users.c.created_at, friend_requests.c.created_at.label("sent_at"))
            .join(friend_requests, theirs == users.c.id)
            .where(mine == me)
            .order_by(friend_requests.c.created_at, users.c.username)
        )
        return [{**_user(row), "sent_at": utc(row.sent_at)} for row in rows]

    return {
        "incoming": requests(friend_requests.c.to_user_id, friend_requests.c.from_user_id),
        "outgoing": requests(friend_requests.c.from_user_id, friend_requests.c.to_user_id),
    }


class FriendStore:
    """Friendships and requests."""

    db: Database

    def send_request(self, from_id: int, to_id: int, now: datetime) -> "Deferred[str]":
        return self.db.write(thd_send_request, from_id, to_id, now)

    def accept_request(self, me: int, from_id: int, now: datetime) -> "Deferred[None]":
        return self.db.write(thd_accept_request, me, from_id, now)

    def reject_request(self, me: int, from_id: int) -> "Deferred[None]":
        return self.db.write(thd_reject_request, me, from_id)

    def cancel_request(self, me: int, to_id: int) -> "Deferred[None]":
        return self.db.write(thd_cancel_request, me, to_id)

    def unfriend(self, me: int, other: int) -> "Deferred[None]":
        return self.db.write(thd_unfriend, me, other)

    def are_friends(self, a: int, b: int) -> "Deferred[bool]":
        return self.db.read(thd_are_friends, a, b)

    def list_friends(self, me: int) -> "Deferred[list[dict[str, Any]]]":
        return self.db.read(thd_list_friends, me)

    def list_requests(self, me: int) -> "Deferred[dict[str, list[dict[str, Any]]]]":
        return self.db.read(thd_list_requests, me)
