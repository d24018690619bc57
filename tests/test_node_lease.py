"""
This node's lease in the database (L{denoisecast.live.lease.NodeLease}):
renewed every third of the time to live while the bus is shared, its
failures counted and said once, and none kept for a lone node.  The store
is a fake (the lease's SQL is tested on both databases in test_storage).
"""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from denoisecast.bus.base import NodeInfo
from denoisecast.bus.memory import InProcessBus, MemoryBroker
from denoisecast.live.lease import NodeLease
from tests.bus_support import logged


class FlakyLeaseStore:
    """Renews, or refuses while C{down}; remembers each call."""

    def __init__(self) -> None:
        self.down = False
        self.renewed: list[tuple[str, float]] = []
        self.dropped: list[str] = []

    def renew_node_lease(self, node_id: str, ttl: float) -> Deferred[None]:
        if self.down:
            return fail(ConnectionError("the database went away"))
        self.renewed.append((node_id, ttl))
        return succeed(None)

    def drop_node_lease(self, node_id: str) -> Deferred[None]:
        self.dropped.append(node_id)
        return succeed(None)


def lease_on(shared: bool) -> tuple[NodeLease, FlakyLeaseStore, Clock]:
    clock = Clock()
    store = FlakyLeaseStore()
    bus = InProcessBus(MemoryBroker(clock, shared=shared), NodeInfo("node-a", "http://a.test", 0.0), 3.0)
    store_: Any = store
    return NodeLease(store_, bus, clock), store, clock


class NodeLeaseTests(SynchronousTestCase):
    def test_renewals_and_failures_are_counted(self) -> None:
        """
        With a shared bus the lease is renewed at once and every ttl/3 s;
        renewals the database refuses are counted, C{held} turns false and
        one warning is logged however many fail; the next success makes it
        held again, says so once, and a clean stop withdraws the lease.
        """
        failed = logged(self, "bus.lease_failed")
        back = logged(self, "bus.lease_back")
        lease, store, clock = lease_on(shared=True)
        self.assertIsNone(lease.held)
        lease.startService()
        self.assertEqual((store.renewed, lease.renewals, lease.held), ([("node-a", 3.0)], 1, True))
        store.down = True
        clock.advance(1.0)
        clock.advance(1.0)
        self.assertEqual((lease.renewals, lease.failed_renewals, lease.held), (1, 2, False))
        self.assertEqual(len(failed), 1)
        store.down = False
        clock.advance(1.0)
        self.assertEqual((lease.renewals, lease.failed_renewals, lease.held), (2, 2, True))
        self.assertEqual((len(failed), len(back)), (1, 1))
        self.successResultOf(lease.stopService())
        self.assertEqual(store.dropped, ["node-a"])

    def test_a_lone_node_keeps_no_lease(self) -> None:
        """No other node shares the bus: nothing is renewed, and C{held} says there is no lease."""
        lease, store, clock = lease_on(shared=False)
        lease.startService()
        clock.advance(10.0)
        self.assertEqual((store.renewed, lease.held), ([], None))
        self.successResultOf(lease.stopService())
        self.assertEqual(store.dropped, [])
