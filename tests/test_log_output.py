"""
``--log-format json`` and log rotation, on a real ``twistd denoisecast``.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from twisted.internet import reactor
from twisted.internet.task import deferLater
from twisted.logger import Logger, LogLevel
from twisted.trial.unittest import SynchronousTestCase, TestCase

from denoisecast.app.config import Config, ConfigError
from denoisecast.runtime.logoutput import json_line
from tests.support import Client
from tests.test_twistd import TWISTD, TwistdProcess, free_port


class JsonLineTests(SynchronousTestCase):
    def test_one_object_per_line(self) -> None:
        """
        An event becomes one line of JSON with its fields, its formatted
        message and level name, even when a field holds a newline.
        """
        event = {
            "log_format": "Registered {username}",
            "username": "al\nice",
            "log_level": LogLevel.info,
            "log_namespace": "denoisecast.handlers.accounts",
            "log_time": 1.5,
        }
        line = json_line(event)
        self.assertEqual(line.count("\n"), 1)
        parsed = json.loads(line)
        self.assertEqual(parsed["username"], "al\nice")
        self.assertEqual(parsed["message"], "Registered al\nice")
        self.assertEqual(parsed["level"], "info")
        self.assertEqual(parsed["log_namespace"], "denoisecast.handlers.accounts")

    def test_malformed_event_still_one_line(self) -> None:
        """
        An event twisted cannot flatten (a broken format string) still gives
        one JSON line with what can be kept, never an exception in the observer.
        """
        line = json_line({"log_format": "broken {x", "x": 1, "log_level": LogLevel.warn, "log_namespace": "n"})
        parsed = json.loads(line)
        self.assertEqual((parsed["log_namespace"], parsed["level"]), ("n", "warn"))
        self.assertIn("Unable to format event", parsed["message"])
        self.assertIn("log_json_error", parsed)

    def test_options_validated(self) -> None:
        """Unknown formats and impossible sizes are refused with the option's name."""
        with self.assertRaises(ConfigError) as caught:
            Config.resolve({"log-format": "xml"}, {})
        self.assertIn("--log-format", str(caught.exception))
        for name, value in (("log-rotate-mb", "0"), ("log-keep", "0"), ("log-keep", "many")):
            with self.assertRaises(ConfigError):
                Config.resolve({name: value}, {})
        config = Config.resolve({}, {"DENOISECAST_LOG_FORMAT": "JSON", "DENOISECAST_LOG_KEEP": "3"})
        self.assertEqual((config.log_format, config.log_keep), ("json", 3))


class TwistdLogTests(TestCase):
    timeout = 120

    def workdir(self) -> Path:
        path = Path(tempfile.mkdtemp(prefix="denoisecast-logs-"))
        self.addCleanup(shutil.rmtree, path, True)
        return path

    async def test_json_lines_rotated(self) -> None:
        """
        With --log-format json every line of twistd's log file is a JSON
        object; the access event carries its fields (client, method, path,
        status, level) and its message; at 10 KiB the file
        rotates and only --log-keep 2 old files remain.
        """
        workdir = self.workdir()
        server = TwistdProcess(
            self, workdir, "--log-format", "json", "--log-rotate-mb", "0.01", "--log-keep", "2"
        )
        await server.ready()
        client = Client(server.base)
        await client.register("alice")
        for _ in range(120):
            await client.get("/api/health")
        Logger().info("log files: {files}", files=sorted(p.name for p in workdir.glob("*.log*")))
        rotated = sorted(p.name for p in workdir.glob(f"{server.log.name}.*"))
        self.assertEqual(rotated, [f"{server.log.name}.1", f"{server.log.name}.2"])
        events = []
        for path in (server.log, *(workdir / name for name in rotated)):
            self.assertLessEqual(path.stat().st_size, 10 * 1024 + 4096, path)
            for line in path.read_text().splitlines():
                events.append(json.loads(line))
        access = [e for e in events if e.get("log_namespace") == "denoisecast.access"]
        self.assertTrue(access, "no access events")
        last = access[-1]
        self.assertEqual(
            (last["client"], last["method"], last["path"], last["status"], last["level"]),
            ("127.0.0.1", "GET", "/api/health", 200, "info"),
        )
        self.assertIn('127.0.0.1 "GET /api/health" 200', last["message"])

    async def test_json_to_stdout_in_foreground(self) -> None:
        """
        As the systemd unit runs it (``-n`` without ``--logfile``), the JSON
        lines go to stdout, where the journal collects them.
        """
        workdir = self.workdir()
        port = free_port()
        out = (workdir / "stdout").open("w")
        self.addCleanup(out.close)
        process = subprocess.Popen(
            [TWISTD, "-n", "--pidfile=", "denoisecast", "--listen", f"tcp:{port}:interface=127.0.0.1", "--log-format", "json"],
            cwd=workdir, stdout=out, stderr=subprocess.STDOUT,
        )

        def stop() -> None:
            if process.poll() is None:
                process.terminate()
                process.wait(30)

        self.addCleanup(stop)
        deadline = time.monotonic() + 60
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                    break
            except OSError:
                self.assertIsNone(process.poll(), (workdir / "stdout").read_text()[-2000:])
                self.assertLess(time.monotonic(), deadline, "twistd did not listen")
                await deferLater(reactor, 0.1)
        await Client(f"http://127.0.0.1:{port}").register("alice")
        stop()
        lines = (workdir / "stdout").read_text().splitlines()
        events = [json.loads(line) for line in lines]
        registered = [e for e in events if e.get("log_format") == "Registered {username}"]
        self.assertEqual([e["username"] for e in registered], ["alice"])
        self.assertEqual(events[-1]["message"], "Server Shut Down.")

    async def test_text_by_default(self) -> None:
        """Without --log-format the log stays twistd's text, with the access events."""
        workdir = self.workdir()
        server = TwistdProcess(self, workdir)
        await server.ready()
        client = Client(server.base)
        await client.register("alice")
        text = server.log.read_text()
        self.assertIn("[denoisecast.handlers.accounts.Accounts#info] Registered alice", text)
        self.assertIn('[denoisecast.access#info] 127.0.0.1 "POST /api/auth/register" 201', text)
        self.assertFalse(text.lstrip().startswith("{"))
