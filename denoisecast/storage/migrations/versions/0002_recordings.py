"""Recordings of broadcasts.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "recordings",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("public_id", sa.String(32), nullable=False),
        sa.Column("user_id", sa.Integer, nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("duration_seconds", sa.Float, nullable=False),
        sa.Column("denoised_bytes", sa.Integer, nullable=False),
        sa.Column("raw_bytes", sa.Integer, nullable=False),
        sa.Column("model", sa.String(64), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("timeline", sa.Text, nullable=False),
        sa.Column("peaks", sa.Text, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_recordings"),
        sa.UniqueConstraint("public_id", name="uq_recordings_public_id"),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], ondelete="CASCADE", name="fk_recordings_user_id_users"
        ),
    )
    op.create_index(
        "ix_recordings_user_id_started_at", "recordings", ["user_id", "started_at"]
    )


def downgrade() -> None:
    op.drop_table("recordings")
