"""
Fatal start-up problems: a real ``twistd denoisecast`` that cannot use its
database, its data directory or its port exits non-zero with one clear line
naming the path or address, so a supervisor sees it and a person knows what
to fix.
"""

from __future__ import annotations

import shutil
import socket
import sqlite3
import subprocess
import tempfile
import time
from pathlib import Path

from twisted.internet import reactor
from twisted.internet.task import deferLater
from twisted.trial.unittest import TestCase

from tests.filesystems import fill, make_read_only, small_filesystem
from tests.test_twistd import TWISTD, free_port


class Exited:
    def __init__(self, code: int, output: str) -> None:
        self.code = code
        self.output = output

    def lines_with(self, text: str) -> list[str]:
        return [line for line in self.output.splitlines() if text in line]


async def run_until_exit(workdir: Path, *args: str, listen: str | None = None, timeout: float = 90.0) -> Exited:
    """
    Run ``twistd -n denoisecast`` with C{args} until it exits by itself;
    its log file and its stdout/stderr together are the output.
    """
    log = workdir / "twistd.log"
    command = [
        TWISTD, "-n", "--pidfile=", "--logfile", str(log), "denoisecast",
        "--listen", listen or f"tcp:{free_port()}:interface=127.0.0.1", *args,
    ]
    process = subprocess.Popen(command, cwd=workdir, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + timeout
    try:
        while process.poll() is None:
            if time.monotonic() > deadline:
                raise AssertionError(
                    "twistd is still running: " + (log.read_text()[-4000:] if log.exists() else "")
                )
            await deferLater(reactor, 0.1)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)
        out = process.stdout.read().decode(errors="replace") if process.stdout else ""
        if process.stdout:
            process.stdout.close()
    return Exited(process.returncode, (log.read_text() if log.exists() else "") + out)


class StartupFailureTests(TestCase):
    timeout = 240

    def workdir(self) -> Path:
        """A scratch directory outside the checkout (see tests.test_twistd)."""
        path = Path(tempfile.mkdtemp(prefix="denoisecast-startup-"))
        self.addCleanup(shutil.rmtree, path, True)
        return path

    def assert_one_clear_line(self, exited: Exited, *words: str) -> None:
        self.assertNotEqual(exited.code, 0, exited.output[-4000:])
        matching = [line for line in exited.output.splitlines() if all(w in line for w in words)]
        self.assertEqual(len(matching), 1, (words, exited.output[-4000:]))
        self.assertNotIn("Traceback", exited.output)

    async def test_unreachable_database(self) -> None:
        """
        A PostgreSQL server that is not there: exit non-zero with the
        database's address in one line, without the password.
        """
        port = free_port()
        exited = await run_until_exit(
            self.workdir(), "--database-url", f"postgresql+psycopg://dc:secret@127.0.0.1:{port}/nothing"
        )
        self.assert_one_clear_line(exited, f"127.0.0.1:{port}", "database")
        self.assertNotIn("secret", exited.output)

    async def test_unwritable_database(self) -> None:
        """
        A SQLite database on a read-only filesystem: exit non-zero naming
        its path.
        """
        mount = small_filesystem(self)
        database = mount / "db.sqlite3"
        with sqlite3.connect(database) as connection:
            connection.execute("CREATE TABLE unrelated (x INTEGER)")
        connection.close()
        make_read_only(mount)
        exited = await run_until_exit(self.workdir(), "--database-url", f"sqlite:///{database}")
        self.assert_one_clear_line(exited, str(database))

    async def test_read_only_data_directory(self) -> None:
        """
        A data directory on a read-only filesystem: exit non-zero naming it.
        """
        mount = small_filesystem(self)
        make_read_only(mount)
        exited = await run_until_exit(self.workdir(), "--data-dir", str(mount))
        self.assert_one_clear_line(exited, str(mount), "Read-only file system")

    async def test_full_data_directory(self) -> None:
        """
        A data directory on a full filesystem: exit non-zero naming it.
        """
        mount = small_filesystem(self)
        fill(mount)
        exited = await run_until_exit(self.workdir(), "--data-dir", str(mount))
        self.assert_one_clear_line(exited, str(mount), "No space left")

    async def test_port_in_use(self) -> None:
        """
        A listen address another process holds: exit non-zero with the
        address in one line (it used to keep running with no listener).
        """
        holder = socket.socket()
        self.addCleanup(holder.close)
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        exited = await run_until_exit(self.workdir(), listen=f"tcp:{port}:interface=127.0.0.1")
        self.assert_one_clear_line(exited, f"{port}", "listen")
