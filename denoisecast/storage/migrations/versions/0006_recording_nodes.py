"""The node that records each recording.

A node that starts repairs only its own unfinished recordings, and a node
that notices another one died repairs that node's; rows from before this
revision have no node and are repaired by whichever node starts first.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("recordings", sa.Column("node_id", sa.String(64), nullable=True))


def downgrade() -> None:
    op.drop_column("recordings", "node_id")
