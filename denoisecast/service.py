"""
The service tree twistd runs.

Order matters: the database service starts its pool and migrates the
schema on a pool thread; only when that has finished do the network
listeners start, so no request ever meets an unmigrated database.  The
denoise scheduler loads its model in the background meanwhile.  On stop,
children stop in reverse order: the web listeners first, then the live
media (every broadcast ends cleanly), then the scheduler, then the
database pool drains.
"""

from __future__ import annotations

from typing import Any

from twisted.application import strports
from twisted.application.internet import TimerService
from twisted.application.service import MultiService, Service
from twisted.internet.defer import Deferred, ensureDeferred
from twisted.python.failure import Failure

from denoisecast.live.manager import LiveManager
from denoisecast.logs import logger
from denoisecast.server import DenoiseCastServer
from denoisecast.storage.database import Database
from denoisecast.storage.migrations import thd_upgrade

SESSION_SWEEP_SECONDS = 3600.0


class DatabaseService(Service):
    """
    Owns the database pool; migrates the schema when it starts.

    @ivar ready: fires once the schema is current.
    """

    log = logger()

    def __init__(self, database: Database) -> None:
        self.database = database
        self.ready: Deferred[Any] = Deferred()

    def startService(self) -> None:
        super().startService()
        self.database.start()
        upgraded = self.database.run(thd_upgrade, self.database.engine)
        upgraded.addCallback(self._migrated)
        upgraded.chainDeferred(self.ready)

    def _migrated(self, revision: str | None) -> str | None:
        self.log.info(
            "Database {dialect} at schema revision {revision}",
            dialect=self.database.dialect,
            revision=revision,
        )
        return revision

    def stopService(self) -> None:
        super().stopService()
        self.database.stop()


class AfterReady(MultiService):
    """
    Starts its children only once C{ready} has fired; if it fails, logs why
    and stops the reactor instead of serving a broken database.
    """

    log = logger()

    def __init__(self, ready: Deferred[Any], reactor: Any) -> None:
        super().__init__()
        self._ready = ready
        self._reactor = reactor

    def startService(self) -> None:
        self._ready.addCallbacks(self._start, self._fail)

    def _start(self, _: object) -> None:
        MultiService.startService(self)

    def _fail(self, failure: Failure) -> None:
        self.log.failure("Cannot prepare the database; stopping", failure)
        self._reactor.stop()

    def stopService(self) -> Deferred[None] | None:
        if not self.running:
            return None
        return MultiService.stopService(self)


class LiveService(Service):
    """
    Runs the live manager's watchdog; on stop ends every broadcast (so
    listeners and publishers are told) before the scheduler stops.
    """

    def __init__(self, live: LiveManager) -> None:
        self.live = live

    def startService(self) -> None:
        super().startService()
        self.live.start()

    def stopService(self) -> Deferred[None]:
        super().stopService()
        return ensureDeferred(self.live.shutdown())


def make_service(server: DenoiseCastServer) -> MultiService:
    top = MultiService()
    database = DatabaseService(server.database)
    database.setServiceParent(top)

    network = AfterReady(database.ready, server.reactor)
    network.setServiceParent(top)
    server.scheduler.setName("denoise")
    server.scheduler.setServiceParent(network)
    LiveService(server.live).setServiceParent(network)
    web = strports.service(server.config.listen, server.site, reactor=server.reactor)
    web.setName("web")
    web.setServiceParent(network)
    sweeper = TimerService(
        SESSION_SWEEP_SECONDS,
        lambda: server.store.delete_expired_sessions(server.clock()),
    )
    sweeper.clock = server.reactor
    sweeper.setServiceParent(network)
    return top
