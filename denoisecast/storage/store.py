"""
The store: every query DenoiseCast makes, as methods that return Deferreds.

Each public method hands a ``thd_*`` function to the database pool; those
functions hold the SQL, run on a pool thread inside one transaction and
return plain dicts.  The store knows nothing of HTTP; it reports expected
conflicts with the small exceptions below, which the service layer turns
into user-facing errors.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, and_, delete, func, insert, or_, select, text, update
from sqlalchemy.exc import IntegrityError
from twisted.internet.defer import Deferred

from denoisecast.storage.database import Database
from denoisecast.storage.tables import friend_requests, friendships, recordings, sessions, users

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


# --- users -----------------------------------------------------------------


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


def _friendship_between(me: int, other: Any) -> Any:
    """
    The condition that a friendships row pairs C{me} with C{other} (a
    column), whichever of the two has the lower id.
    """
    return or_(
        and_(friendships.c.user_low_id == me, friendships.c.user_high_id == other),
        and_(friendships.c.user_high_id == me, friendships.c.user_low_id == other),
    )


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


# --- sessions --------------------------------------------------------------


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


# --- friends ---------------------------------------------------------------


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


def thd_get_denoise_prefs(conn: Connection, user_id: int) -> dict[str, Any]:
    row = conn.execute(
        select(users.c.denoise_enabled, users.c.denoise_atten_lim_db).where(users.c.id == user_id)
    ).first()
    if row is None:
        return {"denoise": True, "atten_lim_db": 100.0}
    return {"denoise": bool(row.denoise_enabled), "atten_lim_db": float(row.denoise_atten_lim_db)}


def thd_set_denoise_prefs(conn: Connection, user_id: int, enabled: bool, atten_lim_db: float) -> None:
    conn.execute(
        update(users)
        .where(users.c.id == user_id)
        .values(denoise_enabled=enabled, denoise_atten_lim_db=atten_lim_db)
    )


# --- recordings ------------------------------------------------------------

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
    conn: Connection, public_id: str, user_id: int, started_at: datetime, model: str, timeline: str
) -> None:
    conn.execute(
        insert(recordings).values(
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


def thd_unfinished_recordings(conn: Connection) -> list[dict[str, Any]]:
    rows = conn.execute(
        select(*RECORDING_COLUMNS)
        .join(users, users.c.id == recordings.c.user_id)
        .where(recordings.c.status == "recording")
    )
    return [_recording(row) for row in rows]


def thd_storage_used(conn: Connection, user_id: int) -> int:
    total = conn.execute(
        select(func.coalesce(func.sum(recordings.c.denoised_bytes + recordings.c.raw_bytes), 0)).where(
            recordings.c.user_id == user_id
        )
    ).scalar_one()
    return int(total)


def thd_ping(conn: Connection) -> bool:
    return conn.execute(text("SELECT 1")).scalar() == 1


class Store:
    """
    Deferred-returning access to everything DenoiseCast keeps in the database.
    """

    def __init__(self, database: Database) -> None:
        self.db = database

    # users
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

    # sessions
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

    # friends
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

    # live
    def get_denoise_prefs(self, user_id: int) -> "Deferred[dict[str, Any]]":
        return self.db.read(thd_get_denoise_prefs, user_id)

    def set_denoise_prefs(self, user_id: int, enabled: bool, atten_lim_db: float) -> "Deferred[None]":
        return self.db.write(thd_set_denoise_prefs, user_id, enabled, atten_lim_db)
    # recordings
    def create_recording(
        self, public_id: str, user_id: int, started_at: datetime, model: str, timeline: str
    ) -> "Deferred[None]":
        return self.db.write(thd_create_recording, public_id, user_id, started_at, model, timeline)

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

    def unfinished_recordings(self) -> "Deferred[list[dict[str, Any]]]":
        return self.db.read(thd_unfinished_recordings)

    def storage_used(self, user_id: int) -> "Deferred[int]":
        return self.db.read(thd_storage_used, user_id)

    def ping(self) -> "Deferred[bool]":
        return self.db.read(thd_ping)
