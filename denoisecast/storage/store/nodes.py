"""
Node leases: which nodes sharing the database are still writing to it.

The live bus's heartbeat says whether a node reaches Redis; its lease here
says whether it reaches the database.  A node's recordings are repaired by
another node only when both have expired (L{denoisecast.live.cluster.NodeWatch}).
Times are the database's own clock (SQLite is one machine's file, so its
nodes share that machine's clock), so no two nodes' clocks are compared.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import Connection, delete, func, insert, select, update
from twisted.internet.defer import Deferred

from denoisecast.storage.database import Database
from denoisecast.storage.store.common import utc
from denoisecast.storage.tables import node_leases

#: A lease run out this long ago is deleted (its node's rows were repaired
#: long since, or will be as any node's with no lease).
FORGOTTEN_AFTER = timedelta(days=1)


def _database_now(conn: Connection) -> datetime:
    if conn.dialect.name == "sqlite":
        return datetime.now(UTC)
    return utc(conn.execute(select(func.now())).scalar_one())


def thd_renew_node_lease(conn: Connection, node_id: str, seconds: float) -> None:
    """The node's lease runs for C{seconds} from now; leases long run out are deleted."""
    now = _database_now(conn)
    renewed = conn.execute(
        update(node_leases).where(node_leases.c.node_id == node_id).values(renewed_at=now, seconds=seconds)
    )
    if renewed.rowcount == 0:
        conn.execute(insert(node_leases).values(node_id=node_id, renewed_at=now, seconds=seconds))
    conn.execute(delete(node_leases).where(node_leases.c.renewed_at < now - FORGOTTEN_AFTER))


def thd_live_node_leases(conn: Connection, nodes: list[str]) -> set[str]:
    """Those of C{nodes} whose lease has not run out (a node with no row has none)."""
    if not nodes:
        return set()
    now = _database_now(conn)
    rows = conn.execute(
        select(node_leases.c.node_id, node_leases.c.renewed_at, node_leases.c.seconds).where(
            node_leases.c.node_id.in_(nodes)
        )
    )
    return {row.node_id for row in rows if utc(row.renewed_at) + timedelta(seconds=row.seconds) > now}


def thd_drop_node_lease(conn: Connection, node_id: str) -> None:
    conn.execute(delete(node_leases).where(node_leases.c.node_id == node_id))


class NodeStore:
    """Node leases."""

    db: Database

    def renew_node_lease(self, node_id: str, seconds: float) -> "Deferred[None]":
        return self.db.write(thd_renew_node_lease, node_id, seconds)

    def live_node_leases(self, nodes: list[str]) -> "Deferred[set[str]]":
        return self.db.read(thd_live_node_leases, nodes)

    def drop_node_lease(self, node_id: str) -> "Deferred[None]":
        return self.db.write(thd_drop_node_lease, node_id)
