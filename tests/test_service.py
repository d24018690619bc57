"""
The order in which the service tree starts and stops its parts.
"""

from __future__ import annotations

import threading
from pathlib import Path

from twisted.application.service import Service
from twisted.internet import reactor
from twisted.internet.defer import Deferred, succeed
from twisted.internet.error import ConnectionRefusedError
from twisted.internet.protocol import ClientCreator, Protocol
from twisted.internet.task import deferLater
from twisted.trial.unittest import TestCase

from denoisecast.app.config import Config
from denoisecast.denoise.scheduler import DenoiseScheduler, SchedulerSettings
from denoisecast.model.engine import DenoiseEngine
from denoisecast.app.server import DenoiseCastServer
from denoisecast.app.service import AfterReady, InOrder, make_service
from tests.support import cheap_hasher, sqlite_url
from tests.test_twistd import free_port


async def can_connect(port: int) -> bool:
    try:
        connection = await ClientCreator(reactor, Protocol).connectTCP("127.0.0.1", port)
    except ConnectionRefusedError:
        return False
    connection.transport.loseConnection()
    return True


class StartOrderTests(TestCase):
    timeout = 60

    async def test_listeners_open_only_once_the_model_has_loaded(self) -> None:
        """
        While the denoise model loads, the web port is closed (a broadcast
        that started then would pass through raw); it opens once the model
        is ready, and the whole tree stops cleanly.
        """
        data_dir = Path(self.mktemp())
        data_dir.mkdir(parents=True)
        port = free_port()
        config = Config(
            data_dir=data_dir, database_url=sqlite_url(self), listen=f"tcp:{port}:interface=127.0.0.1"
        )
        release = threading.Event()

        def slow_load(settings: SchedulerSettings) -> DenoiseEngine:
            if not release.wait(30):
                raise RuntimeError("the test never released the model")
            return DenoiseEngine.load("deepfilternet3", device="cpu")

        server = DenoiseCastServer(config, reactor, password_hasher=cheap_hasher(), engine_loader=slow_load)
        scheduler = server.scheduler
        service = make_service(server)
        service.privilegedStartService()  # as twistd does, before it drops privileges
        service.startService()
        stopped = False

        def stop() -> Deferred[None] | None:
            release.set()
            return None if stopped else service.stopService()

        self.addCleanup(stop)
        for _ in range(20):  # the database is migrated, the model still loading
            await deferLater(reactor, 0.1, lambda: None)
        self.assertFalse(scheduler.ready)
        self.assertFalse(await can_connect(port))

        release.set()
        await scheduler.when_settled()
        self.assertTrue(scheduler.ready)
        for _ in range(50):
            if await can_connect(port):
                break
            await deferLater(reactor, 0.1, lambda: None)
        self.assertTrue(await can_connect(port))

        stopped = True
        await service.stopService()
        self.assertFalse(await can_connect(port))

    async def test_a_failed_model_load_still_settles(self) -> None:
        """
        Without a model the server must still open its listeners (live
        audio then passes through raw), so a failed load settles too.
        """

        def broken() -> DenoiseEngine:
            raise RuntimeError("no model here")

        scheduler = DenoiseScheduler(reactor, SchedulerSettings(), engine_factory=broken)
        scheduler.startService()
        self.addCleanup(scheduler.stopService)
        await scheduler.when_settled()
        self.assertFalse(scheduler.ready)
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)


class RecordsStop(Service):
    """A child that notes when it stops."""

    def __init__(self, name: str, stopped: list[str]) -> None:
        self.setName(name)
        self._stopped = stopped

    def stopService(self) -> None:
        super().stopService()
        self._stopped.append(self.name)


class RaisesOnStop(RecordsStop):
    """A child whose stop raises at once."""

    def stopService(self) -> None:
        super().stopService()
        raise RuntimeError(f"{self.name} cannot stop")


class FailsLaterOnStop(RecordsStop):
    """A child whose stop fails after a turn of the reactor."""

    def stopService(self) -> Deferred[None]:  # type: ignore[override]
        super().stopService()
        return deferLater(reactor, 0, self._fail)

    def _fail(self) -> None:
        raise RuntimeError(f"{self.name} failed while stopping")


class StopOrderTests(TestCase):
    timeout = 30

    async def test_every_child_stops_when_one_fails(self) -> None:
        """
        Children stop last-started first; a child whose stop raises, or
        whose stop fails later, is logged and the ones before it stop all
        the same (a skipped thread pool would keep twistd from exiting).
        """
        stopped: list[str] = []
        top = InOrder()
        for child in (
            RecordsStop("database", stopped),
            FailsLaterOnStop("recorder", stopped),
            RecordsStop("scheduler", stopped),
            RaisesOnStop("live", stopped),
            RecordsStop("web", stopped),
        ):
            child.setServiceParent(top)
        top.startService()
        await top.stopService()
        self.assertEqual(stopped, ["web", "live", "scheduler", "recorder", "database"])
        self.assertFalse(any(child.running for child in top))
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 2)

    async def test_after_ready_stops_every_child_too(self) -> None:
        """The start-gated groups of the tree stop the same way."""
        stopped: list[str] = []
        group = AfterReady(succeed(None), reactor)
        RecordsStop("first", stopped).setServiceParent(group)
        RaisesOnStop("second", stopped).setServiceParent(group)
        group.startService()
        await group.stopService()
        self.assertEqual(stopped, ["second", "first"])
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)


class HarnessTests(TestCase):
    timeout = 60

    async def test_in_process_server_runs_the_twistd_tree(self) -> None:
        """
        tests.support.start_server starts the service tree twistd runs: the
        model has loaded, the live manager runs, the port opened last.
        """
        from tests.support import start_server

        running = await start_server(self)
        server = running.server
        self.assertTrue(server.scheduler.running)
        self.assertTrue(server.scheduler.ready)
        self.assertTrue(server.live._watchdog.running)
        self.assertTrue(await can_connect(int(running.base.rsplit(":", 1)[1])))


class SessionSweepServiceTests(TestCase):
    def test_socket_sweep_runs_while_serving(self) -> None:
        """
        The running server sweeps its sockets' sessions every few seconds,
        so sessions ended by another process (denoisecast-admin) close
        their sockets without a restart.
        """
        from twisted.application.internet import TimerService
        from twisted.application.service import IServiceCollection

        from denoisecast.app.service import _sweep_sockets
        from denoisecast.handlers.sessionsweep import SWEEP_SECONDS

        data_dir = Path(self.mktemp())
        data_dir.mkdir(parents=True)
        server = DenoiseCastServer(Config(data_dir=data_dir), reactor, password_hasher=cheap_hasher())

        def walk(service: object) -> list[object]:
            found = [service]
            if IServiceCollection.providedBy(service):
                for child in service:  # type: ignore[attr-defined]
                    found += walk(child)
            return found

        timers = [s for s in walk(make_service(server)) if isinstance(s, TimerService)]
        sweeps = [t for t in timers if t.call[0] is _sweep_sockets]
        self.assertEqual(len(sweeps), 1)
        self.assertEqual(sweeps[0].step, SWEEP_SECONDS)
        self.assertLessEqual(SWEEP_SECONDS, 10)
