"""Node leases: each node sharing the database renews its row.

A node that the live bus no longer sees (its heartbeat expired) has its
unfinished recordings repaired only once its lease here has run out as
well, so a node cut off from Redis but still writing to the database keeps
its recordings.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "node_leases",
        sa.Column("node_id", sa.String(64), nullable=False),
        sa.Column("renewed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("seconds", sa.Float, nullable=False),
        sa.PrimaryKeyConstraint("node_id", name="pk_node_leases"),
    )


def downgrade() -> None:
    op.drop_table("node_leases")
