"""
Each user's remembered denoise choice.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, select, update
from twisted.internet.defer import Deferred

from denoisecast.storage.database import Database
from denoisecast.storage.tables import users


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


class PrefStore:
    """Denoise preferences."""

    db: Database

    def get_denoise_prefs(self, user_id: int) -> "Deferred[dict[str, Any]]":
        return self.db.read(thd_get_denoise_prefs, user_id)

    def set_denoise_prefs(self, user_id: int, enabled: bool, atten_lim_db: float) -> "Deferred[None]":
        return self.db.write(thd_set_denoise_prefs, user_id, enabled, atten_lim_db)
