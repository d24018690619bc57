"""
Alembic's environment: it migrates the engine DenoiseCast hands it.

On PostgreSQL several nodes may start at once on one database: each takes
a transaction-scoped advisory lock before migrating, so one migrates and
the others, once it has committed, find the schema current.
"""

from alembic import context
from sqlalchemy import text

from denoisecast.storage.tables import metadata

#: The advisory lock's key: "DenoiseC" as a 64-bit number, unlikely to meet another application's.
MIGRATION_LOCK = int.from_bytes(b"DenoiseC", "big") - 2**63

engine = context.config.attributes["engine"]

with engine.connect() as connection:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        render_as_batch=connection.dialect.name == "sqlite",
    )
    with context.begin_transaction():
        if connection.dialect.name == "postgresql":
            connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK})
        context.run_migrations()
    connection.commit()
