"""
``denoisecast-admin`` as a real process on the database of a running
server (in this test process), on SQLite and on PostgreSQL: what it does
to accounts takes effect in the server (a disabled account's socket closes
at the server's next session sweep), and live broadcasts are asked of the
server over its admin API.
"""

from __future__ import annotations

import os
import sys
import tomllib
from importlib import import_module
from pathlib import Path
from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.protocol import ProcessProtocol
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase, TestCase

from denoisecast.cli.admin import CommandError, server_url
from denoisecast.protocols.socket import CLOSE_SESSION_ENDED
from tests.support import postgres_url, sqlite_url, start_server
from tests.ws_support import connect_ws

ROOT = Path(__file__).resolve().parent.parent


class _Collect(ProcessProtocol):
    def __init__(self, stdin: bytes) -> None:
        self.stdin = stdin
        self.out = b""
        self.err = b""
        self.done: Deferred[tuple[int, str, str]] = Deferred()

    def connectionMade(self) -> None:
        self.transport.write(self.stdin)  # type: ignore[union-attr]
        self.transport.closeStdin()  # type: ignore[union-attr]

    def outReceived(self, data: bytes) -> None:
        self.out += data

    def errReceived(self, data: bytes) -> None:
        self.err += data

    def processEnded(self, reason: Failure) -> None:
        code = getattr(reason.value, "exitCode", 0) or 0
        self.done.callback((code, self.out.decode(), self.err.decode()))


async def admin_command(database_url: str, *args: str, stdin: str = "") -> tuple[int, str, str]:
    """Run denoisecast-admin in its own process; (exit code, stdout, stderr)."""
    collect = _Collect(stdin.encode())
    env = {k: v for k, v in os.environ.items() if not k.startswith("DENOISECAST_")}
    reactor.spawnProcess(  # type: ignore[attr-defined]
        collect,
        sys.executable,
        [sys.executable, "-m", "denoisecast.cli.admin", "--database-url", database_url, *args],
        env=env,
        path=os.getcwd(),  # trial's directory: SQLite test URLs are relative to it
    )
    return await collect.done


class CommandOnRunningServerMixin:
    def database_url(self) -> str:
        raise NotImplementedError

    async def test_admin_command_on_running_server(self) -> None:
        """
        Create an admin, disable a user whose socket is open in the running
        server (it closes at the next sweep; the user cannot log in), list
        users, ask the server for its broadcasts and end one nobody runs.
        """
        test: Any = self
        url = self.database_url()
        running = await start_server(test, database_url=url)
        code, out, err = await admin_command(url, "--password-stdin", "create-user", "root", "--admin",
                                             stdin="tram-lantern-4-oboe\n")
        test.assertEqual(code, 0, err)
        test.assertIn('"is_admin": true', out)
        test.assertIn("create_user", err)  # the audit line
        alice = running.client()
        await alice.register("alice")
        socket = await connect_ws(test, running.base, alice)
        await socket.expect("hello")
        code, out, err = await admin_command(url, "disable", "alice")
        test.assertEqual((code, '"disabled": true' in out), (0, True), err)
        # The server's own periodic sweep (every SWEEP_SECONDS) notices.
        test.assertEqual(await socket.factory.closed.addTimeout(20, reactor), CLOSE_SESSION_ENDED)
        refused = await running.client().login("alice")
        test.assertEqual(refused.error_code, "account_disabled")
        code, out, err = await admin_command(url, "users")
        test.assertEqual(code, 0, err)
        test.assertEqual([line.count('"username"') for line in out.splitlines()], [1, 1])
        code, out, err = await admin_command(url, "--server", running.base, "broadcasts")
        test.assertEqual((code, out), (0, ""), err)
        code, out, err = await admin_command(url, "--server", running.base, "end-broadcast", "alice")
        test.assertEqual(code, 1)
        test.assertIn("alice is not live", err)


class SQLiteCommandTests(CommandOnRunningServerMixin, TestCase):
    def database_url(self) -> str:
        return sqlite_url(self)


class PostgresCommandTests(CommandOnRunningServerMixin, TestCase):
    def database_url(self) -> str:
        return postgres_url(self)


class CommandUnitTests(SynchronousTestCase):
    def test_entry_point(self) -> None:
        """
        pyproject.toml installs the command, and it names a real function.
        """
        scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
        module, _, name = scripts["denoisecast-admin"].partition(":")
        self.assertTrue(callable(getattr(import_module(module), name)))

    def test_server_url_from_listen(self) -> None:
        """
        The server is found from its --listen endpoint; wildcard interfaces
        are reached on loopback.
        """
        self.assertEqual(server_url("tcp:8080:interface=127.0.0.1"), "http://127.0.0.1:8080")
        self.assertEqual(server_url("tcp:80"), "http://127.0.0.1:80")
        self.assertEqual(server_url("ssl:8443:privateKey=k.pem:interface=0.0.0.0"), "https://127.0.0.1:8443")
        self.assertEqual(server_url("tcp:8080:interface=\\:\\:1".replace("\\", "")), "http://127.0.0.1:8080")
        self.assertRaises(CommandError, server_url, "unix:/run/dc.sock")
