"""
The schema, as SQLAlchemy Core tables.

Production code never calls ``create_all``: the schema is created and
upgraded by the Alembic migrations in ``migrations/``.  A test checks that
the migrated database and these tables agree, so they cannot drift.
Constraints that keep the data sane (one friendship per pair, one request
per direction, no self-requests, case-insensitively unique usernames) live
here, in the database, not only in code.
"""

from __future__ import annotations

from sqlalchemy import (
    Boolean,
    CheckConstraint,
    Column,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    false,
    func,
    text,
    true,
)

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

users = Table(
    "users",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("username", String(32), nullable=False),
    Column("password_hash", String(255), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("password_changed_at", DateTime(timezone=True), nullable=False),
    # The user's last denoise choice, used when they next go live.
    Column("denoise_enabled", Boolean, nullable=False, server_default=true()),
    Column("denoise_atten_lim_db", Float, nullable=False, server_default=text("100.0")),
    # May use the admin API; set by denoisecast-admin or another admin.
    Column("is_admin", Boolean, nullable=False, server_default=false()),
    # Set while an admin has disabled the account: no login, no session.
    Column("disabled_at", DateTime(timezone=True), nullable=True),
)
Index("uq_users_username_lower", func.lower(users.c.username), unique=True)

sessions = Table(
    "sessions",
    metadata,
    Column("id", Integer, primary_key=True),
    Column(
        "user_id",
        Integer,
        ForeignKey("users.id", ondelete="CASCADE"),
        nullable=False,
        index=True,
    ),
    Column("token_hash", String(64), nullable=False, unique=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("expires_at", DateTime(timezone=True), nullable=False),
)

friend_requests = Table(
    "friend_requests",
    metadata,
    Column(
        "from_user_id",
        Integer,
        ForeignKey("users.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    Column(
        "to_user_id",
        Integer,
        ForeignKey("users.id", ondelete="CASCADE"),
        primary_key=True,
        index=True,
    ),
    Column("created_at", DateTime(timezone=True), nullable=False),
    CheckConstraint("from_user_id <> to_user_id", name="not_self"),
)

#: A friendship is stored once, as the ordered pair (lower id, higher id),
#: so "A and B are friends" has exactly one row whoever asked first.
friendships = Table(
    "friendships",
    metadata,
    Column(
        "user_low_id",
        Integer,
        ForeignKey("users.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    Column(
        "user_high_id",
        Integer,
        ForeignKey("users.id", ondelete="CASCADE"),
        primary_key=True,
        index=True,
    ),
    Column("created_at", DateTime(timezone=True), nullable=False),
    CheckConstraint("user_low_id < user_high_id", name="ordered_pair"),
)

#: One row per broadcast recording.  C{public_id} is what URLs carry: random,
#: so ids cannot be guessed or enumerated; file names derive from it and the
#: owner's id, never from anything a client sends.
recordings = Table(
    "recordings",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("public_id", String(32), nullable=False, unique=True),
    Column(
        "user_id",
        Integer,
        ForeignKey("users.id", ondelete="CASCADE"),
        nullable=False,
    ),
    Column("started_at", DateTime(timezone=True), nullable=False),
    Column("ended_at", DateTime(timezone=True), nullable=True),
    Column("duration_seconds", Float, nullable=False),
    Column("denoised_bytes", Integer, nullable=False),
    Column("raw_bytes", Integer, nullable=False),
    Column("model", String(64), nullable=False),
    #: recording, complete, interrupted (found unfinished after a crash) or
    #: stopped_early (quota or maximum length reached mid-broadcast).
    Column("status", String(16), nullable=False),
    #: JSON list of {"t": seconds, "denoise": bool, "atten_lim_db": float}.
    Column("timeline", Text, nullable=False),
    #: JSON list of peak magnitudes, computed once when asked for.
    Column("peaks", Text, nullable=True),
    #: The node whose broadcast this is (the live bus's node id): only it
    #: finalises the row, and only it, or a node that saw it die, repairs it.
    Column("node_id", String(64), nullable=True),
)
Index("ix_recordings_user_id_started_at", recordings.c.user_id, recordings.c.started_at)

#: Publish and listen tokens: a client that is not a browser (OBS, ffmpeg, a
#: player) proves who it is with one instead of a session cookie.  Only the
#: SHA-256 of the token is kept (it is 32 random bytes: a fast hash is
#: enough, no one can guess its input); C{public_id} is what the API's URLs
#: carry, random like a recording's, so one person's ids say nothing about
#: another's.
access_tokens = Table(
    "access_tokens",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("public_id", String(32), nullable=False, unique=True),
    Column(
        "user_id",
        Integer,
        ForeignKey("users.id", ondelete="CASCADE"),
        nullable=False,
        index=True,
    ),
    #: publish (go live over WHIP) or listen (WHEP, the HTTP stream).
    Column("scope", String(16), nullable=False),
    Column("name", String(64), nullable=False),
    Column("token_hash", String(64), nullable=False, unique=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("last_used_at", DateTime(timezone=True), nullable=True),
    CheckConstraint("scope IN ('publish', 'listen')", name="scope"),
)

#: Each node sharing the database renews its row every third of its lease
#: (C{--node-ttl}), with the database's own clock, so nodes' clocks never
#: compare.  A node the others no longer see on the live bus has its
#: unfinished recordings repaired only once its lease here has run out too:
#: a node cut off from Redis but still writing to the database keeps them.
node_leases = Table(
    "node_leases",
    metadata,
    Column("node_id", String(64), primary_key=True),
    Column("renewed_at", DateTime(timezone=True), nullable=False),
    #: Seconds the lease runs after C{renewed_at} (the node's own --node-ttl).
    Column("seconds", Float, nullable=False),
)
