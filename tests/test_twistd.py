"""
The real thing: ``twistd denoisecast`` as a separate process, started from
a directory outside the checkout, driven over TCP.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path

from twisted.internet import reactor
from twisted.internet.task import deferLater
from twisted.trial.unittest import TestCase

from tests.support import Client

TWISTD = str(Path(sys.executable).with_name("twistd"))


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class TwistdProcess:
    def __init__(self, test: TestCase, workdir: Path, *args: str, env: dict[str, str] | None = None) -> None:
        self.port = free_port()
        self.log = workdir / f"twistd-{self.port}.log"
        self.args = [
            TWISTD, "-n", "--pidfile=", "--logfile", str(self.log), "denoisecast",
            "--listen", f"tcp:{self.port}:interface=127.0.0.1", *args,
        ]
        self.process = subprocess.Popen(
            self.args, cwd=workdir, env={**os.environ, **(env or {})},
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        )
        test.addCleanup(self.stop)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def ready(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"twistd exited: {self.output()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return
            except OSError:
                await deferLater(reactor, 0.1)
        raise AssertionError(f"twistd did not start listening: {self.output()}")

    def output(self) -> str:
        text = self.log.read_text() if self.log.exists() else ""
        return text[-20000:]

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.process.stdout:
            self.process.stdout.close()


class TwistdTests(TestCase):
    def workdir(self) -> Path:
        """
        A scratch directory outside the checkout, so the plugin is found the
        way an installed server finds it, not through the current directory.
        """
        path = Path(tempfile.mkdtemp(prefix="denoisecast-twistd-"))
        self.addCleanup(shutil.rmtree, path, True)
        return path

    async def test_restart_keeps_accounts_friends_sessions(self) -> None:
        """
        Register two users, befriend them, log out, restart the server; the
        friendship, the other user's session and the password all survive.
        """
        workdir = self.workdir()
        server = TwistdProcess(self, workdir)
        await server.ready()
        self.assertIn("AsyncioSelectorReactor", server.output())
        alice, bob = Client(server.base), Client(server.base)
        await alice.register("alice")
        await bob.register("bob")
        self.assertEqual((await alice.post("/api/friends/requests", {"username": "bob"})).status, 201)
        self.assertEqual((await bob.post("/api/friends/requests/alice/accept")).status, 200)
        self.assertEqual((await alice.post("/api/auth/logout")).status, 204)
        server.stop()
        self.assertTrue((workdir / "denoisecast-data" / "denoisecast.sqlite3").exists())

        again = TwistdProcess(self, workdir)
        await again.ready()
        bob.base = alice.base = again.base
        me = await bob.get("/api/me")
        self.assertEqual((me.status, me.body["user"]["username"]), (200, "bob"))
        self.assertEqual((await alice.get("/api/me")).status, 401)
        self.assertEqual((await alice.login("alice")).status, 200)
        friends = await alice.get("/api/friends")
        self.assertEqual([f["username"] for f in friends.body["friends"]], ["bob"])
        health = await alice.get("/api/health")
        self.assertEqual(health.body["database"], "ok")

    async def test_environment_configures(self) -> None:
        """
        DENOISECAST_* variables set the data directory and database.
        """
        workdir = self.workdir()
        data = workdir / "elsewhere"
        server = TwistdProcess(self, workdir, env={"DENOISECAST_DATA_DIR": str(data)})
        await server.ready()
        self.assertTrue((data / "denoisecast.sqlite3").exists())

    async def test_data_private(self) -> None:
        """
        The server runs with umask 027 and takes the world bits off a data
        directory an operator left open: the database inside is reachable by
        the server's user and group only.
        """
        workdir = self.workdir()
        data = workdir / "denoisecast-data"
        data.mkdir()
        data.chmod(0o777)
        server = TwistdProcess(self, workdir)
        await server.ready()
        await Client(server.base).register("alice")
        self.assertEqual(stat.S_IMODE(data.stat().st_mode), 0o770)
        database = data / "denoisecast.sqlite3"
        self.assertEqual(stat.S_IMODE(database.stat().st_mode) & 0o027, 0, oct(database.stat().st_mode))
        status = Path(f"/proc/{server.process.pid}/status").read_text()
        self.assertIn("Umask:\t0027", status)

    def test_help_documents_every_option(self) -> None:
        """
        ``twistd denoisecast --help`` names every option and its variable.
        """
        from denoisecast.app.config import OPTIONS

        out = subprocess.run(
            [TWISTD, "denoisecast", "--help"], cwd=self.workdir(), capture_output=True, text=True, check=True
        ).stdout
        for name, variable, _ in OPTIONS:
            self.assertIn(f"--{name}", out)
            self.assertIn(variable, out)

    def test_other_reactor_refused(self) -> None:
        """
        Asking twistd for another reactor fails at start with the exact fix,
        instead of running silently without asyncio.
        """
        result = subprocess.run(
            [TWISTD, "-n", "--pidfile=", "--reactor=select", "denoisecast", "--listen", f"tcp:{free_port()}"],
            cwd=self.workdir(), capture_output=True, text=True, timeout=60,
        )
        self.assertNotEqual(result.returncode, 0)
        self.assertIn("twistd --reactor=asyncio denoisecast", result.stdout + result.stderr)

    def test_bad_option_refused(self) -> None:
        """
        An unknown log level is refused at start with a clear message.
        """
        result = subprocess.run(
            [TWISTD, "-n", "--pidfile=", "denoisecast", "--log-level", "loud"],
            cwd=self.workdir(), capture_output=True, text=True, timeout=60,
        )
        self.assertNotEqual(result.returncode, 0)
        self.assertIn("Unknown log level 'loud'", result.stdout + result.stderr)


#: A .tac file: the service tree ``twistd denoisecast`` builds, plus one child
#: whose stop fails; it is the first to stop, so everything else stops after it.
FAILING_CHILD_TAC = """
from twisted.application.service import Application, Service

from denoisecast.app.tap import Options, makeService


class FailsToStop(Service):
    name = "fails-to-stop"

    def stopService(self):
        Service.stopService(self)
        raise RuntimeError("this child cannot stop")


options = Options()
options.parseOptions(["--listen", "tcp:{port}:interface=127.0.0.1", "--data-dir", {data!r}])
top = makeService(options)
FailsToStop().setServiceParent(top)
application = Application("denoisecast")
top.setServiceParent(application)
"""


class TwistdShutdownTests(TestCase):
    timeout = 120

    async def test_twistd_exits_when_a_child_fails_to_stop(self) -> None:
        """
        SIGTERM to a twistd whose service tree has a child that fails to
        stop: the failure is logged, every other service still stops (the
        database pool and the thread pools among them) and the process exits.
        """
        workdir = Path(tempfile.mkdtemp(prefix="denoisecast-twistd-"))
        self.addCleanup(shutil.rmtree, workdir, True)
        port = free_port()
        tac = workdir / "failing.tac"
        tac.write_text(FAILING_CHILD_TAC.format(port=port, data=str(workdir / "data")))
        log = workdir / "twistd.log"
        process = subprocess.Popen(
            [TWISTD, "-n", "--pidfile=", "--logfile", str(log), "-y", str(tac)],
            cwd=workdir, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        )

        def kill() -> None:
            if process.poll() is None:
                process.kill()
                process.wait()
            if process.stdout:
                process.stdout.close()

        self.addCleanup(kill)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and process.poll() is None:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                    break
            except OSError:
                await deferLater(reactor, 0.1)
        self.assertIsNone(process.poll(), log.read_text() if log.exists() else "")
        process.terminate()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and process.poll() is None:
            await deferLater(reactor, 0.1)
        output = log.read_text()
        self.assertIsNotNone(process.poll(), f"twistd did not exit: {output[-5000:]}")
        self.assertIn("Stopping fails-to-stop failed; stopping the others", output)
        self.assertIn("this child cannot stop", output)
        self.assertIn("Server Shut Down.", output)
