"""
The package as a user gets it: ``python -m build`` makes an sdist and, from
it, a wheel; the wheel installed into a fresh virtual environment runs
``twistd denoisecast`` from a directory outside the checkout and serves the
home page, the API and the WebSocket.

One test, a few minutes (eight on a busy two-core machine): building
compiles the ring buffer, and the fresh
environment installs torch first (``torch==2.13.0``, the CPU build, from the
machine's own package sources, as ``scripts/setup.sh`` does) and then the
wheel's runtime dependencies.  It skips, saying why, only when building or
installing is impossible on this machine.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

from twisted.internet import reactor
from twisted.internet.task import deferLater
from twisted.trial.unittest import SkipTest, TestCase

from tests.support import Client
from tests.test_twistd import free_port
from tests.ws_support import connect_ws

CHECKOUT = Path(__file__).resolve().parent.parent
#: The CPU build of torch, pinned as scripts/setup.sh pins it.
TORCH = "torch==2.13.0"

#: What the wheel must carry besides Python modules.
EXPECTED_IN_WHEEL = (
    "denoisecast/audio/_ringbuffer.cpython-",  # the compiled ring buffer
    "denoisecast/data/common-passwords.txt.gz",  # registration refuses these
    "denoisecast/static/app.html",
    "denoisecast/static/app.js",
    "denoisecast/storage/migrations/versions/0001_accounts_and_friends.py",
    "twisted/plugins/denoisecast_plugin.py",
)


def run(args: list[str], cwd: Path, timeout: float, what: str) -> None:
    """Run a build or install step; a failure is a skip naming the step and its output."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    try:
        done = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    except (OSError, subprocess.TimeoutExpired) as error:
        raise SkipTest(f"cannot {what} here: {error}") from None
    if done.returncode != 0:
        raise SkipTest(f"cannot {what} here (exit {done.returncode}): {(done.stdout + done.stderr)[-2000:]}")


class WheelTests(TestCase):
    timeout = 900

    async def test_wheel_installs_and_serves_from_outside_the_checkout(self) -> None:
        """
        The wheel built through the sdist has the compiled module, the pages
        and the migrations; installed alone into a fresh environment it
        starts under twistd from an unrelated directory, migrates its
        database and answers /, /api/health and an authenticated /ws.
        """
        scratch = Path(tempfile.mkdtemp(prefix="denoisecast-wheel-"))
        self.addCleanup(shutil.rmtree, scratch, True)
        dist = scratch / "dist"
        # Without build isolation: the same setuptools and Cython as an
        # isolated build would fetch, already installed by scripts/setup.sh.
        run(
            [sys.executable, "-m", "build", "--no-isolation", "--outdir", str(dist), str(CHECKOUT)],
            scratch, 600, "build the sdist and wheel",
        )
        wheels = list(dist.glob("denoisecast-*.whl"))
        self.assertEqual(len(wheels), 1, list(dist.iterdir()))
        self.assertNotIn("py3-none-any", wheels[0].name)
        names = zipfile.ZipFile(wheels[0]).namelist()
        for expected in EXPECTED_IN_WHEEL:
            self.assertTrue(any(name.startswith(expected) for name in names), f"{expected} not in the wheel")
        self.assertFalse(any(name.startswith("tests/") for name in names))

        venv = scratch / "venv"
        run([sys.executable, "-m", "venv", str(venv)], scratch, 120, "make a virtual environment")
        python = str(venv / "bin" / "python")
        pip = [python, "-m", "pip", "--disable-pip-version-check", "-q", "install"]
        run([*pip, TORCH], scratch, 600, "install torch")
        run([*pip, str(wheels[0])], scratch, 600, "install the wheel's dependencies")
        installed = subprocess.run(
            [python, "-c", "import treq"], cwd=scratch, capture_output=True, text=True, timeout=60
        )
        self.assertNotEqual(installed.returncode, 0, "treq is a test dependency, not a runtime one")

        workdir = scratch / "run"
        workdir.mkdir()
        port = free_port()
        log = workdir / "twistd.log"
        process = subprocess.Popen(
            [
                str(venv / "bin" / "twistd"), "-n", "--pidfile=", "--logfile", str(log), "denoisecast",
                "--listen", f"tcp:{port}:interface=127.0.0.1",
            ],
            cwd=workdir,
            env={k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
        )

        def stop() -> None:
            if process.poll() is None:
                process.terminate()
                try:
                    process.wait(30)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()

        self.addCleanup(stop)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            self.assertIsNone(process.poll(), log.read_text() if log.exists() else "twistd exited")
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                    break
            except OSError:
                await deferLater(reactor, 0.2)
        output = log.read_text()
        self.assertIn(str(venv), output)  # the installed copy runs, not the checkout
        self.assertNotIn(str(CHECKOUT / "denoisecast"), output)

        base = f"http://127.0.0.1:{port}"
        client = Client(base)
        home = await client.get("/")
        self.assertEqual(home.status, 200)
        self.assertIn(b"<html", home.body.lower())
        self.assertEqual((await client.get("/login")).status, 200)
        health = await client.get("/api/health")
        self.assertEqual((health.status, health.body["database"]), (200, "ok"))
        await client.register("alice")
        ws = await connect_ws(self, base, client)
        hello = await ws.expect("presence", timeout=30)
        self.assertEqual(hello["friends"], [])
        self.assertTrue((workdir / "denoisecast-data" / "denoisecast.sqlite3").exists())
        stop()
        self.assertIsNotNone(process.poll())
        admin = subprocess.run(
            [str(venv / "bin" / "denoisecast-admin"), "users"],
            cwd=workdir, capture_output=True, text=True, timeout=120,
            env={k: v for k, v in os.environ.items() if not k.startswith(("PYTHONPATH", "VIRTUAL_ENV", "DENOISECAST_"))},
        )
        self.assertEqual(admin.returncode, 0, admin.stderr)
        self.assertIn('"username": "alice"', admin.stdout)
