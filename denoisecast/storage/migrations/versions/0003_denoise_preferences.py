"""Each user's last denoise choice (on/off and attenuation limit).

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-25
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Plain ADD COLUMN (no table rebuild on SQLite, which would lose the
    # functional unique index on lower(username)).
    op.add_column(
        "users",
        sa.Column("denoise_enabled", sa.Boolean, nullable=False, server_default=sa.true()),
    )
    op.add_column(
        "users",
        sa.Column(
            "denoise_atten_lim_db", sa.Float, nullable=False, server_default=sa.text("100.0")
        ),
    )


def downgrade() -> None:
    op.drop_column("users", "denoise_atten_lim_db")
    op.drop_column("users", "denoise_enabled")
