"""Accounts, sessions, friend requests and friendships.

Revision ID: 0001
Revises:
Create Date: 2026-11-25
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "users",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("username", sa.String(32), nullable=False),
        sa.Column("password_hash", sa.String(255), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("password_changed_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_users"),
    )
    op.create_index(
        "uq_users_username_lower",
        "users",
        [sa.text("lower(username)")],
        unique=True,
    )
    op.create_table(
        "sessions",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("user_id", sa.Integer, nullable=False),
        sa.Column("token_hash", sa.String(64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_sessions"),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], ondelete="CASCADE", name="fk_sessions_user_id_users"
        ),
        sa.UniqueConstraint("token_hash", name="uq_sessions_token_hash"),
    )
    op.create_index("ix_sessions_user_id", "sessions", ["user_id"])
    op.create_table(
        "friend_requests",
        sa.Column("from_user_id", sa.Integer, nullable=False),
        sa.Column("to_user_id", sa.Integer, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("from_user_id", "to_user_id", name="pk_friend_requests"),
        sa.ForeignKeyConstraint(
            ["from_user_id"],
            ["users.id"],
            ondelete="CASCADE",
            name="fk_friend_requests_from_user_id_users",
        ),
        sa.ForeignKeyConstraint(
            ["to_user_id"],
            ["users.id"],
            ondelete="CASCADE",
            name="fk_friend_requests_to_user_id_users",
        ),
        sa.CheckConstraint("from_user_id <> to_user_id", name="ck_friend_requests_not_self"),
    )
    op.create_index("ix_friend_requests_to_user_id", "friend_requests", ["to_user_id"])
    op.create_table(
        "friendships",
        sa.Column("user_low_id", sa.Integer, nullable=False),
        sa.Column("user_high_id", sa.Integer, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("user_low_id", "user_high_id", name="pk_friendships"),
        sa.ForeignKeyConstraint(
            ["user_low_id"],
            ["users.id"],
            ondelete="CASCADE",
            name="fk_friendships_user_low_id_users",
        ),
        sa.ForeignKeyConstraint(
            ["user_high_id"],
            ["users.id"],
            ondelete="CASCADE",
            name="fk_friendships_user_high_id_users",
        ),
        sa.CheckConstraint("user_low_id < user_high_id", name="ck_friendships_ordered_pair"),
    )
    op.create_index("ix_friendships_user_high_id", "friendships", ["user_high_id"])


def downgrade() -> None:
    op.drop_table("friendships")
    op.drop_table("friend_requests")
    op.drop_table("sessions")
    op.drop_table("users")
