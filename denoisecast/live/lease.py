"""
This node's lease in the database: the second sign of life, beside the
live bus's heartbeat.

A node cut off from Redis longer than C{--node-ttl} looks dead to the
others on the bus (they forget its users: they cannot reach it), but it
may still be recording, writing its rows to the database.  Its lease,
renewed there every third of C{--node-ttl}, tells them so: the node watch
(L{denoisecast.live.cluster.NodeWatch}) repairs a node's recordings only
once both its heartbeat and its lease have run out.
"""

from __future__ import annotations

from typing import Any

from twisted.application.service import Service
from twisted.internet.defer import Deferred, succeed
from twisted.internet.task import LoopingCall
from twisted.python.failure import Failure

from denoisecast.bus.base import LiveBus
from denoisecast.runtime.logs import logger
from denoisecast.storage.store import Store


class NodeLease(Service):
    """
    Renews this node's lease while it runs, when other nodes may share its
    database (a shared bus); withdraws it on a clean stop, after the
    recordings are finished.

    @ivar renewals: leases renewed so far (metrics and tests).
    @ivar failed_renewals: renewals the database refused or never answered
        (metrics).
    """

    log = logger()

    def __init__(self, store: Store, bus: LiveBus, reactor: Any) -> None:
        self._store = store
        self._bus = bus
        self._loop = LoopingCall(self._renew)
        self._loop.clock = reactor
        self._renewing: Deferred[None] | None = None
        self._failing = False
        self.renewals = 0
        self.failed_renewals = 0

    @property
    def held(self) -> bool | None:
        """
        Whether the last renewal succeeded; C{None} where this node keeps no
        lease (a bus no other node shares) or none was tried yet.
        """
        if not self._bus.shared or (self.renewals == 0 and self.failed_renewals == 0):
            return None
        return not self._failing

    def startService(self) -> None:
        super().startService()
        if self._bus.shared:
            self._loop.start(self._bus.ttl / 3, now=True)

    def stopService(self) -> Deferred[None]:
        super().stopService()
        if not self._loop.running:
            return succeed(None)
        self._loop.stop()
        waiting = self._renewing if self._renewing is not None else succeed(None)

        def withdraw(_: object) -> Deferred[None]:
            return self._store.drop_node_lease(self._bus.node_id).addErrback(
                lambda f: self.log.warn("Withdrawing this node's lease failed: {error}", error=f.getErrorMessage())
            )

        return waiting.addCallback(withdraw)

    def kill(self) -> None:
        """(Tests.)  Stop renewing as a killed process does: the lease is left to run out."""
        if self._loop.running:
            self._loop.stop()

    def _renew(self) -> None:
        if self._renewing is not None:
            return  # the last renewal still runs (a slow database)
        renewing = self._renewing = self._store.renew_node_lease(self._bus.node_id, self._bus.ttl)
        renewing.addCallbacks(self._renewed, self._failed)

        def done(_: object) -> None:
            self._renewing = None

        renewing.addBoth(done)

    def _renewed(self, _: object) -> None:
        self.renewals += 1
        if self._failing:
            self._failing = False
            self.log.info("This node's lease is renewed in the database again", log_id="bus.lease_back")

    def _failed(self, failure: Failure) -> None:
        self.failed_renewals += 1
        if not self._failing:
            self._failing = True
            self.log.warn(
                "Renewing this node's lease in the database failed ({error}); once it runs out, other "
                "nodes that cannot see this one on the live bus repair its recordings; retrying",
                error=failure.getErrorMessage(), log_id="bus.lease_failed",
            )
