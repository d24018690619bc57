"""
The service tree twistd runs.

Order matters: the database service starts its pool and migrates the
schema on a pool thread; only when that has finished do the denoise
scheduler (loading its model) and the recorder (which repairs interrupted
recordings) start, so no request ever meets an unmigrated database; and
only when the model has loaded (or failed to, then audio passes through
raw) do the live manager and the network listeners start, so a broadcast
right after a start is denoised from its first chunk.  On stop, one after
another: the web listeners, the live media (every broadcast ends cleanly),
the recorder finalising open recordings, the scheduler, then the database
pool.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.application.internet import TimerService
from twisted.application.service import MultiService, Service
from twisted.internet.defer import Deferred, ensureDeferred, maybeDeferred, succeed
from twisted.internet.interfaces import IListeningPort, IProtocolFactory
from twisted.logger import ILogObserver
from twisted.python.components import Componentized
from twisted.python.failure import Failure
from twisted.python.threadpool import ThreadPool

from denoisecast.app.listening import ReusePortError, listening_endpoint
from denoisecast.app.server import DenoiseCastServer
from denoisecast.app.startup import FatalStartup, one_line
from denoisecast.bus.base import LiveBus
from denoisecast.handlers.sessionsweep import SWEEP_SECONDS
from denoisecast.live.manager import LiveManager
from denoisecast.recordings.recorder import Recorder
from denoisecast.runtime.logs import logger
from denoisecast.storage.database import Database
from denoisecast.storage.migrations import thd_upgrade

SESSION_SWEEP_SECONDS = 3600.0
SESSION_SOCKET_SWEEP_SECONDS = SWEEP_SECONDS


def _sweep_sockets(server: DenoiseCastServer) -> Deferred[None]:
    """
    Close sockets whose session ended in another process (never fails the
    timer: a database hiccup is logged and the next sweep tries again).
    """
    def failed(failure: Failure) -> None:
        _sweep_log.warn("Checking open sockets' sessions failed: {error}", error=failure.getErrorMessage())

    return ensureDeferred(server.socket_sessions.sweep()).addCallbacks(lambda _: None, failed)


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


class InOrder(MultiService):
    """
    Stops its children one after another, last-started first, each waiting
    for the one before it (a plain MultiService stops them all at once,
    which would close the database under a recorder still finalising).

    A child that fails to stop is logged and the next one stops all the
    same: skipping the rest would leave thread pools running, and their
    non-daemon threads keep C{twistd} from exiting.
    """

    log = logger()

    def stopService(self) -> Deferred[None]:
        Service.stopService(self)
        return Deferred.fromCoroutine(self._stop_children())

    async def _stop_children(self) -> None:
        for child in reversed(list(self)):
            try:
                await maybeDeferred(child.stopService)
            except Exception:
                self.log.failure(
                    "Stopping {service} failed; stopping the others",
                    service=child.name or type(child).__name__,
                    log_id="service.stop_failed",
                )


class ServerTree(InOrder):
    """
    The top of the tree twistd runs.  twistd asks its application for an
    C{ILogObserver} component before making its own text log; when twistd
    parents this service to the application, it hands over
    C{log_observer} (JSON lines, bounded rotation: L{denoisecast.runtime.logoutput}).
    """

    log_observer: ILogObserver | None = None

    def setServiceParent(self, parent: Any) -> None:
        if self.log_observer is not None and isinstance(parent, Componentized):
            parent.setComponent(ILogObserver, self.log_observer)
        super().setServiceParent(parent)


class ThreadPoolService(Service):
    """Runs a thread pool while the server runs (its threads start on demand)."""

    def __init__(self, pool: ThreadPool) -> None:
        self.pool = pool

    def startService(self) -> None:
        super().startService()
        self.pool.start()

    def stopService(self) -> None:
        super().stopService()
        self.pool.stop()


class BusService(Service):
    """
    Runs the live bus: this node announces itself (and, once connected,
    its users: the presence hub listens) when it starts, and withdraws
    when it stops, after everything that publishes on it has stopped.
    """

    def __init__(self, bus: LiveBus) -> None:
        self.bus = bus

    def startService(self) -> None:
        super().startService()
        ensureDeferred(self.bus.start()).addErrback(lambda f: _bus_log.failure("Starting the live bus failed", f))

    def stopService(self) -> Deferred[None]:
        super().stopService()
        return ensureDeferred(self.bus.stop())


_bus_log = logger()


class RecorderService(Service):
    """
    Repairs recordings a crash left unfinished when the server starts, and
    finalises every open recording when it stops.

    Which ones it repairs (C{repair_nodes}): all of them on a node alone
    on its database (C{None}); with nodes sharing one, only this node's
    own (and those that name no node): the others' may be live, and those
    of a node that died are repaired by L{denoisecast.live.cluster.NodeWatch}.
    """

    log = logger()

    def __init__(self, recorder: Recorder, repair_nodes: list[str | None] | None = None) -> None:
        self.recorder = recorder
        self.repair_nodes = repair_nodes

    def startService(self) -> None:
        super().startService()
        self.recorder.start_pool()
        Deferred.fromCoroutine(self.recorder.repair(self.repair_nodes)).addErrback(
            lambda f: self.log.failure("Repairing interrupted recordings failed", f)
        )

    def stopService(self) -> Deferred[None]:
        super().stopService()

        def stop_pool(result: object) -> object:
            self.recorder.stop_pool()
            return result

        return Deferred.fromCoroutine(self.recorder.finish_all()).addBoth(stop_pool)


#: Told the one line that says why the server cannot start.
Fatal = Callable[[str], None]


class AfterReady(InOrder):
    """
    Starts its children only once C{ready} has fired; if it fails, reports
    the problem as fatal (one line from C{describe}: the process exits
    non-zero) instead of serving a broken database.
    """

    log = logger()

    def __init__(
        self,
        ready: Deferred[Any],
        fatal: Fatal,
        describe: Callable[[Failure], str] = one_line,
    ) -> None:
        super().__init__()
        self._ready = ready
        self._fatal = fatal
        self._describe = describe
        self._stopping = False

    def privilegedStartService(self) -> None:
        """
        Nothing yet: twistd calls this before C{startService}, and a
        listener would open its port here, ahead of its start condition.
        The children's privileged start happens with their start instead,
        so a port below 1024 needs a capability rather than root.
        """

    def startService(self) -> None:
        self._ready.addCallbacks(self._start, self._fail)

    def _start(self, _: object) -> None:
        if not self._stopping:
            MultiService.startService(self)

    def _fail(self, failure: Failure) -> None:
        self.log.debug("Start condition failed: {log_failure}", log_failure=failure)
        self._fatal(self._describe(failure))

    def stopService(self) -> Deferred[None]:
        # A stop before the start condition fired must keep the children from starting later.
        self._stopping = True
        if not self.running:
            return succeed(None)
        return InOrder.stopService(self)


class ListenService(Service):
    """
    Listens on one endpoint string while running (what C{strports.service}
    does), but a port that cannot be had (in use, not allowed, no such
    address) is fatal: the server would otherwise run on, serving nothing,
    with nothing in its log.
    """

    log = logger()

    def __init__(
        self, description: str, factory: IProtocolFactory, reactor: Any, fatal: Fatal, reuse_port: bool = False
    ) -> None:
        self.description = description
        self._reuse_port = reuse_port
        self._factory = factory
        self._reactor = reactor
        self._fatal = fatal
        self.port: IListeningPort | None = None
        self._listening: Deferred[Any] | None = None
        self._port_waiters: list[Deferred[IListeningPort]] = []

    def startService(self) -> None:
        super().startService()
        try:
            endpoint = listening_endpoint(self._reactor, self.description, self._reuse_port)
        except ReusePortError as error:
            self._fatal(str(error))
            return
        listening = endpoint.listen(self._factory)
        self._listening = listening
        listening.addCallbacks(self._listened, self._failed)

    def _listened(self, port: IListeningPort) -> None:
        self._listening = None
        self.port = port
        if not self.running:  # stopped while the port was being opened
            port.stopListening()
            return
        waiters, self._port_waiters = self._port_waiters, []
        for waiter in waiters:
            waiter.callback(port)

    def when_listening(self) -> Deferred[IListeningPort]:
        """
        Fires with the port once it listens (its number, when the endpoint
        asked for port 0, is on C{port.getHost()}).
        """
        if self.port is not None:
            return succeed(self.port)
        waiter: Deferred[IListeningPort] = Deferred()
        self._port_waiters.append(waiter)
        return waiter

    def _failed(self, failure: Failure) -> None:
        self._listening = None
        if self.running:
            self._fatal(f"Cannot listen on {self.description}: {failure.getErrorMessage()}")

    def stopService(self) -> Deferred[Any] | None:
        super().stopService()
        if self.port is not None:
            port, self.port = self.port, None
            return maybeDeferred(port.stopListening)
        return None


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


def database_problem(database: Database) -> Callable[[Failure], str]:
    """
    How a failure to reach or migrate C{database} is said: its URL (the
    password hidden) and the driver's own first line.
    """

    def describe(failure: Failure) -> str:
        url = database.engine.url.render_as_string(hide_password=True)
        return f"Cannot use the database {url}: {one_line(failure)}"

    return describe


def make_service(server: DenoiseCastServer, fatal: Fatal | None = None) -> ServerTree:
    """
    The tree twistd runs.  C{fatal} is told a problem that keeps the server
    from starting; by default it ends the process with a failure status
    (L{FatalStartup}), tests pass their own.
    """
    fatal = fatal or FatalStartup(server.reactor)
    top = ServerTree()
    database = DatabaseService(server.database)
    database.setServiceParent(top)
    BusService(server.bus).setServiceParent(top)
    server.reactor_lag.setServiceParent(top)
    ThreadPoolService(server.password_pool).setServiceParent(top)

    engine = AfterReady(database.ready, fatal, database_problem(server.database))
    engine.setName("engine")
    engine.setServiceParent(top)
    server.scheduler.setName("denoise")
    server.scheduler.setServiceParent(engine)
    # Renewed before the recorder repairs or starts anything; withdrawn after it finished.
    server.node_lease.setServiceParent(engine)
    RecorderService(server.recorder, [server.bus.node_id, None] if server.bus.shared else None).setServiceParent(engine)

    network = AfterReady(server.scheduler.when_settled(), fatal)
    network.setName("network")
    network.setServiceParent(top)
    LiveService(server.live).setServiceParent(network)
    server.node_watch.setServiceParent(network)
    sweeper = TimerService(SESSION_SWEEP_SECONDS, sweep_sessions, server)
    sweeper.clock = server.reactor
    sweeper.setServiceParent(network)
    server.disk_sampler.setServiceParent(network)
    if server.config.metrics_listen:
        metrics = ListenService(server.config.metrics_listen, server.metrics_site, server.reactor, fatal)
        metrics.setName("metrics")
        metrics.setServiceParent(network)
    sockets = TimerService(SESSION_SOCKET_SWEEP_SECONDS, _sweep_sockets, server)
    sockets.clock = server.reactor
    sockets.setServiceParent(network)
    # The port opens last, once everything behind it runs, and closes first.
    web = ListenService(server.config.listen, server.site, server.reactor, fatal, server.config.reuse_port)
    web.setName("web")
    web.setServiceParent(network)
    return top


_sweep_log = logger()


def sweep_sessions(server: DenoiseCastServer) -> Deferred[None]:
    """Delete expired sessions; a failure (the database away) is said, and the next sweep tries again."""

    def failed(failure: Failure) -> None:
        _sweep_log.warn("Deleting expired sessions failed: {error}", error=failure.getErrorMessage())

    return server.store.delete_expired_sessions(server.clock()).addCallbacks(lambda _: None, failed)
