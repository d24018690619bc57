"""
``--workers N``: every core of one machine.

One server process tops out at about one core of live work (the reactor,
SRTP, Opus and the fan-out share one interpreter lock), so ``twistd
denoisecast --workers N`` runs N server processes, each a node of its own,
all listening on the same address with ``SO_REUSEPORT`` (the kernel spreads
new connections across them) and each with its own share of
``--rtc-ports``.  The process twistd started only supervises: it starts the
workers (``twistd denoisecast`` again, with ``--workers 1 --reuse-port`` and
the worker's number in ``DENOISECAST_WORKER``), restarts one that dies,
stops them all (SIGTERM, then SIGKILL after ``STOP_SECONDS``) when it is
stopped, and copies their log lines, which say which worker wrote them,
into its own log.  A worker that keeps failing right after it starts (a
port in use, a database that cannot be reached) ends the supervisor with a
failure status instead of being restarted forever.  Workers end themselves
when the supervisor dies (Linux's parent-death signal).
"""

from __future__ import annotations

import re
import signal
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import IO, Any, cast

from twisted.application.service import Service
from twisted.internet.defer import Deferred, gatherResults, succeed
from twisted.internet.error import ProcessDone, ProcessExitedAlready
from twisted.internet.interfaces import IDelayedCall
from twisted.internet.protocol import ProcessProtocol
from twisted.python.failure import Failure

from denoisecast.app.config import FLAG_OPTIONS, OPTIONS, WORKER_VARIABLE, Config, ConfigError
from denoisecast.bus.base import new_node_id
from denoisecast.runtime.logs import logger

#: A worker that exits sooner than this after it started failed to start.
STARTUP_SECONDS = 10.0
#: Failed starts in a row after which the supervisor gives up.
MAX_FAILED_STARTS = 3
#: Longest wait before restarting a worker that keeps dying.
MAX_RESTART_DELAY = 30.0
#: How long stopping waits for the workers before killing them.
STOP_SECONDS = 60.0
#: Options the supervisor sets for each worker itself.
_PER_WORKER = ("workers", "reuse-port", "rtc-ports", "metrics-listen", "node-id", "redis-url")
#: The longest node id (the bus's limit) and the room a worker's suffix takes.
_NODE_ID_ROOM = 64 - len("-w256")
#: A worker's interpreter runs twistd as the ``twistd`` script does, without
#: the current directory on its path (it could hide the installed plugin).
_TWISTD = "import sys; del sys.path[0]; from twisted.scripts.twistd import run; run()"


def metrics_endpoint_for(description: str, index: int) -> str:
    """
    ``--metrics-listen`` of worker C{index} (1-based): the port plus
    C{index - 1}, so that each worker's metrics can be scraped on its own.
    """
    match = re.match(r"^(tcp6?|ssl):(?:port=)?(\d+)(.*)$", description)
    if match is None:
        raise ConfigError(
            f"--metrics-listen {description!r}: with --workers it must be tcp:PORT... "
            "(worker N serves its metrics on PORT+N-1)."
        )
    return f"{match.group(1)}:{int(match.group(2)) + index - 1}{match.group(3)}"


def worker_arguments(given: Mapping[str, Any], config: Config, index: int, node_base: str, redis_url: str) -> list[str]:
    """
    The ``denoisecast`` options of worker C{index} (1-based): every option
    given to the supervisor on its command line (the environment is
    inherited, so options set there apply as they are), and the
    per-worker ones: its node id (C{node_base}-wN: the same for a worker
    restarted, so it repairs what its predecessor left), the live bus
    the workers share, its ports.
    """
    arguments = []
    for name, _, _ in OPTIONS:
        value = given.get(name)
        if name in _PER_WORKER or not value:
            continue
        arguments.append(f"--{name}" if name in FLAG_OPTIONS else f"--{name}={value}")
    arguments += ["--workers=1", "--reuse-port", f"--node-id={node_base[:_NODE_ID_ROOM]}-w{index}", f"--redis-url={redis_url}"]
    if config.rtc_ports is not None:
        arguments.append(f"--rtc-ports={config.rtc_ports.split(config.workers)[index - 1]}")
    if config.metrics_listen:
        arguments.append(f"--metrics-listen={metrics_endpoint_for(config.metrics_listen, index)}")
    return arguments


def worker_command(arguments: list[str]) -> list[str]:
    """The command line of a worker: this interpreter running twistd in the foreground, logging to stdout."""
    return [sys.executable, "-c", _TWISTD, "--nodaemon", "--pidfile=", "--logfile=-", "denoisecast", *arguments]


class _Worker(ProcessProtocol):
    """One worker process: its output, line by line, and its end."""

    def __init__(self, supervisor: "WorkerSupervisor", index: int, started: float) -> None:
        self.supervisor = supervisor
        self.index = index
        self.started = started
        self.ended: Deferred[None] = Deferred()
        self._partial = b""

    def childDataReceived(self, childFD: int, data: bytes) -> None:
        lines = (self._partial + data).split(b"\n")
        self._partial = lines.pop()
        for line in lines:
            self.supervisor.output(self.index, line + b"\n")

    def processEnded(self, reason: Failure) -> None:
        if self._partial:
            self.supervisor.output(self.index, self._partial + b"\n")
            self._partial = b""
        self.supervisor.worker_ended(self, reason)
        self.ended.callback(None)


class WorkerSupervisor(Service):
    """
    Runs C{count} workers: C{command(index)} with C{environ(index)}, output
    lines to C{write}; C{fatal} is told when a worker keeps failing to start.
    """

    log = logger()

    def __init__(
        self,
        reactor: Any,
        count: int,
        command: Callable[[int], list[str]],
        environ: Callable[[int], dict[str, str]],
        write: Callable[[int, bytes], None],
        fatal: Callable[[str], None],
        startup_seconds: float = STARTUP_SECONDS,
        name: Callable[[int], str] = "Worker {}".format,
    ) -> None:
        """C{name}: what a process is called in the log, from its number."""
        self._name = name
        self._startup_seconds = startup_seconds
        self.stop_seconds = STOP_SECONDS
        self._reactor = reactor
        self.count = count
        self._command = command
        self._environ = environ
        self._write = write
        self._fatal = fatal
        self.workers: dict[int, _Worker] = {}
        self._failed_starts: dict[int, int] = {}
        self._restarts: dict[int, IDelayedCall] = {}
        self._gave_up = False

    def startService(self) -> None:
        super().startService()
        for index in range(1, self.count + 1):
            self._start(index)

    def _start(self, index: int) -> None:
        self._restarts.pop(index, None)
        if not self.running:
            return
        worker = _Worker(self, index, self._reactor.seconds())
        command = self._command(index)
        process = self._reactor.spawnProcess(
            worker, command[0], command, env=self._environ(index), childFDs={0: "w", 1: "r", 2: "r"}
        )
        self.workers[index] = worker
        self.log.info(
            "{name} started (pid {pid})", name=self._name(index), worker=index, pid=process.pid, log_id="workers.started"
        )

    @property
    def pids(self) -> dict[int, int]:
        """The process id of each running worker, by number."""
        return {
            index: worker.transport.pid
            for index, worker in self.workers.items()
            if worker.transport is not None and worker.transport.pid
        }

    def output(self, index: int, line: bytes) -> None:
        self._write(index, line)

    def worker_ended(self, worker: _Worker, reason: Failure) -> None:
        if self.workers.get(worker.index) is worker:
            del self.workers[worker.index]
        how = _ending(reason)
        if not self.running or self._gave_up:
            self.log.info("{name} stopped: {how}", name=self._name(worker.index), worker=worker.index, how=how)
            return
        lived = self._reactor.seconds() - worker.started
        failed = self._failed_starts[worker.index] = (
            self._failed_starts.get(worker.index, 0) + 1 if lived < self._startup_seconds else 0
        )
        if failed >= MAX_FAILED_STARTS:
            self._gave_up = True
            self._fatal(
                f"{self._name(worker.index)} failed {failed} times within {self._startup_seconds:g} s of starting "
                f"(last: {how}); its log lines above say why"
            )
            return
        delay = min(MAX_RESTART_DELAY, float(2**failed - 1)) if failed else 0.0
        self.log.warn(
            "{name} {how} after {seconds:.1f} s; restarting it in {delay:g} s",
            name=self._name(worker.index),
            worker=worker.index,
            how=how,
            seconds=lived,
            delay=delay,
            log_id="workers.restart",
        )
        self._restarts[worker.index] = self._reactor.callLater(delay, self._start, worker.index)

    def stopService(self) -> Deferred[None]:
        super().stopService()
        for call in self._restarts.values():
            if call.active():
                call.cancel()
        self._restarts.clear()
        running = list(self.workers.values())
        if not running:
            return succeed(None)
        for worker in running:
            self._signal(worker, "TERM")
        killer = self._reactor.callLater(self.stop_seconds, self._kill, running)
        waiting: Deferred[Any] = Deferred.fromCoroutine(self._wait(running))

        def done(result: object) -> None:
            if killer.active():
                killer.cancel()

        return waiting.addBoth(done)

    def _kill(self, workers: list[_Worker]) -> None:
        for worker in workers:
            self.log.warn(
                "{name} did not stop in {seconds:g} s; killing it", name=self._name(worker.index), seconds=self.stop_seconds
            )
            self._signal(worker, "KILL")

    async def _wait(self, workers: list[_Worker]) -> None:
        for worker in workers:
            await worker.ended

    def _signal(self, worker: _Worker, name: str) -> None:
        try:
            if worker.transport is not None:
                worker.transport.signalProcess(name)
        except ProcessExitedAlready:
            pass


def _ending(reason: Failure) -> str:
    """How a worker process ended, in words."""
    if reason.check(ProcessDone):
        return "exited cleanly"
    code, number = getattr(reason.value, "exitCode", None), getattr(reason.value, "signal", None)
    if number is not None:
        try:
            return f"was ended by {signal.Signals(number).name}"
        except ValueError:
            return f"was ended by signal {number}"
    return f"exited with status {code}"


def end_with_parent() -> None:
    """
    (In a worker.)  Have the kernel send SIGTERM when the supervisor dies,
    even by SIGKILL, so no worker serves on unsupervised.  Linux only;
    elsewhere nothing happens.
    """
    if not sys.platform.startswith("linux"):
        return
    import ctypes
    import os

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        pr_set_pdeathsig = 1
        libc.prctl(pr_set_pdeathsig, signal.SIGTERM, 0, 0, 0)
    except (OSError, AttributeError):
        return
    if os.getppid() == 1:  # the supervisor died before the signal was asked for
        os.kill(os.getpid(), signal.SIGTERM)


def supervisor_tree(config: Config, given: Mapping[str, Any], reactor: Any, stream: IO[str] | None) -> Any:
    """
    The service tree of the supervising process: the workers, their log
    lines copied into C{stream} as they are (they carry their worker's
    label), or logged as events where twistd's own logger is in charge.
    """
    import os

    from denoisecast.app.service import AfterReady, DatabaseService, ServerTree
    from denoisecast.app.startup import FatalStartup
    from denoisecast.storage.database import Database

    def write(index: int, line: bytes) -> None:
        text = line.decode("utf-8", errors="replace")
        if stream is not None:
            stream.write(text)
            stream.flush()
        else:
            _worker_log.info("{line}", line=text.rstrip("\n"), worker=index)

    from denoisecast.app.listening import ReusePortError, reuse_port_endpoint

    try:
        reuse_port_endpoint(reactor, config.listen)  # every worker would fail on it: say so once, now
    except ReusePortError as error:
        raise ConfigError(str(error)) from None
    fatal = FatalStartup(reactor)
    top = ServerTree()
    # The schema is migrated once, here, before any worker starts: N
    # processes migrating one database at once would race.
    database = Database(config.effective_database_url, reactor)
    migrated = DatabaseService(database)
    migrated.setServiceParent(top)
    ready: list[Deferred[Any]] = [migrated.ready]
    redis_url = config.redis_url
    if not redis_url:
        redis = PrivateRedis(reactor, config.data_dir, fatal)
        redis.setServiceParent(top)
        ready.append(redis.ready)
        redis_url = redis.url
    # Checked before anything starts: a bad --metrics-listen is one line, as any other option.
    node_base = config.node_id or new_node_id()
    arguments = {
        index: worker_arguments(given, config, index, node_base, redis_url) for index in range(1, config.workers + 1)
    }
    after = AfterReady(gatherResults(ready, consumeErrors=True), fatal, _first_problem(database))
    after.setServiceParent(top)
    supervisor = WorkerSupervisor(
        reactor,
        config.workers,
        lambda index: worker_command(arguments[index]),
        lambda index: {**os.environ, WORKER_VARIABLE: str(index)},
        write,
        fatal,
    )
    supervisor.setName("workers")
    supervisor.setServiceParent(after)
    return top


_worker_log = logger()


def _first_problem(database: Any) -> Callable[[Failure], str]:
    """How a failure of the start conditions is said (a FirstError from gatherResults unwrapped)."""
    from twisted.internet.defer import FirstError

    from denoisecast.app.service import database_problem

    describe = database_problem(database)

    def first(failure: Failure) -> str:
        if failure.check(FirstError):
            failure = cast(FirstError, failure.value).subFailure
        return describe(failure)

    return first


#: Where a private Redis keeps its socket when the data directory's path is
#: too long for one (UNIX socket paths are limited to about 100 bytes).
_SOCKET_PATH_LIMIT = 100


class PrivateRedis(Service):
    """
    A ``redis-server`` for the workers of ``--workers`` when no
    ``--redis-url`` is given: on a UNIX socket (mode 0700) in the data
    directory, no TCP port, nothing saved to disk; restarted if it dies
    (the workers' bus reconnects by itself), stopped after the workers.
    Fires C{ready} once it accepts connections.
    """

    log = logger()

    def __init__(self, reactor: Any, data_dir: Path, fatal: Callable[[str], None]) -> None:
        import shutil
        import tempfile

        program = shutil.which("redis-server")
        if program is None:
            raise ConfigError(
                "--workers without --redis-url starts a private redis-server, which is not installed "
                "(Debian: apt-get install redis-server); or give --redis-url."
            )
        socket_path = (data_dir / "redis.sock").absolute()
        if len(str(socket_path)) > _SOCKET_PATH_LIMIT:
            socket_path = Path(tempfile.mkdtemp(prefix="denoisecast-redis-")) / "redis.sock"
        self.socket_path = socket_path
        self.url = f"unix://{socket_path}"
        self.ready: Deferred[None] = Deferred()
        command = [
            program, "--port", "0", "--unixsocket", str(socket_path), "--unixsocketperm", "700",
            "--save", "", "--appendonly", "no", "--daemonize", "no", "--dir", str(socket_path.parent),
        ]
        self._processes = WorkerSupervisor(
            reactor, 1, lambda index: command, lambda index: {}, self._output, fatal, name=lambda index: "Private redis-server"
        )

    def _output(self, index: int, line: bytes) -> None:
        text = line.decode("utf-8", errors="replace").rstrip()
        self.log.info("redis-server: {line}", line=text)
        if "ready to accept connections" in text.lower() and not self.ready.called:
            self.log.info("Private Redis for the workers ready at {url}", url=self.url, log_id="workers.redis_ready")
            self.ready.callback(None)

    def startService(self) -> None:
        super().startService()
        self._processes.startService()

    def stopService(self) -> Deferred[None]:
        super().stopService()
        return self._processes.stopService()
