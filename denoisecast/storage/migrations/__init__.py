"""
Alembic migrations of DenoiseCast's schema, applied automatically at start.
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config as AlembicConfig
from sqlalchemy.engine import Engine

HERE = Path(__file__).parent


def alembic_config(engine: Engine) -> AlembicConfig:
    config = AlembicConfig()
    config.set_main_option("script_location", str(HERE))
    config.attributes["engine"] = engine
    return config


def thd_upgrade(engine: Engine) -> str | None:
    """
    Upgrade the database to the newest schema; return the new revision.

    Runs on the database pool: migrations are ordinary blocking SQL.
    """
    config = alembic_config(engine)
    command.upgrade(config, "head")
    return thd_current_revision(engine)


def thd_current_revision(engine: Engine) -> str | None:
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()
