"""
Replacing a stored password hash with one of the current cost, after a
successful login (the hash's parameters are stored in it, so older hashes
keep verifying; this moves them to the current ones as their owners log in).
"""

from __future__ import annotations

from sqlalchemy import Connection, update
from twisted.internet.defer import Deferred

from denoisecast.storage.database import Database
from denoisecast.storage.tables import users


def thd_upgrade_password_hash(conn: Connection, user_id: int, old_hash: str, new_hash: str) -> bool:
    """
    Store C{new_hash} if the stored hash is still C{old_hash} (a password
    changed meanwhile is left alone); True if it was replaced.  The
    password itself is unchanged, so sessions are kept.
    """
    result = conn.execute(
        update(users)
        .where(users.c.id == user_id, users.c.password_hash == old_hash)
        .values(password_hash=new_hash)
    )
    return result.rowcount > 0


class PasswordHashes:
    def __init__(self, database: Database) -> None:
        self.db = database

    def upgrade(self, user_id: int, old_hash: str, new_hash: str) -> "Deferred[bool]":
        return self.db.write(thd_upgrade_password_hash, user_id, old_hash, new_hash)
