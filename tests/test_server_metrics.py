"""
The operator's metrics: standard process and Python collectors, build info,
WebSocket connections and online users, recording bytes and free disk,
database errors, 429s; /metrics behind a bearer token or on its own endpoint.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy.exc import OperationalError
from twisted.trial.unittest import TestCase

from denoisecast._version import __version__
from denoisecast.app.config import Config, ConfigError
from tests.support import Client, start_server
from tests.test_twistd import TwistdProcess, free_port
from tests.ws_support import connect_ws


def value(text: str, name: str, **labels: str) -> float | None:
    """The sample C{name} with (at least) C{labels} in a scrape, or C{None}."""
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return float(sample.value)
    return None


class MetricsTests(TestCase):
    async def scrape(self, client: Client) -> str:
        reply = await client.get("/metrics")
        self.assertEqual(reply.status, 200)
        return reply.body.decode()

    async def test_standard_and_build(self) -> None:
        """Process, platform and GC collectors, and the build info with the version."""
        server = await start_server(self)
        text = await self.scrape(server.client())
        self.assertGreater(value(text, "process_resident_memory_bytes") or 0, 1e6)
        self.assertIsNotNone(value(text, "process_open_fds"))
        self.assertIsNotNone(value(text, "python_gc_objects_collected_total", generation="0"))
        self.assertEqual(value(text, "python_info", implementation="CPython"), 1.0)
        self.assertEqual(value(text, "denoisecast_build_info", version=__version__), 1.0)

    async def test_sockets_and_online_users(self) -> None:
        """Two sockets of one user and one of another: 3 connections, 2 users online."""
        server = await start_server(self)
        alice, bob = server.client(), server.client()
        await alice.register("alice")
        await bob.register("bob")
        self.assertEqual(value(await self.scrape(alice), "denoisecast_websocket_connections"), 0)
        sockets = [await connect_ws(self, server.base, c) for c in (alice, alice, bob)]
        for ws in sockets:
            await ws.expect("hello")
        text = await self.scrape(alice)
        self.assertEqual(value(text, "denoisecast_websocket_connections"), 3)
        self.assertEqual(value(text, "denoisecast_online_users"), 2)
        await sockets[2].close()
        text = await self.scrape(alice)
        self.assertEqual(value(text, "denoisecast_online_users"), 1)

    async def test_disk_and_recording_bytes(self) -> None:
        """The disk sample counts recording files' bytes and the free space."""
        server = await start_server(self)
        folder = server.server.config.data_dir / "recordings" / "7"
        folder.mkdir(parents=True)
        (folder / "a.denoised.ogg").write_bytes(b"x" * 1000)
        (folder / "a.raw.ogg").write_bytes(b"y" * 234)
        await server.server.disk_sampler.sample()
        text = await self.scrape(server.client())
        self.assertEqual(value(text, "denoisecast_recordings_bytes"), 1234.0)
        self.assertEqual(value(text, "denoisecast_recordings_files"), 2.0)
        free = value(text, "denoisecast_data_disk_free_bytes") or 0
        self.assertGreater(free, 0)
        self.assertGreaterEqual(value(text, "denoisecast_data_disk_size_bytes") or 0, free)

    async def test_database_errors_counted(self) -> None:
        """
        A failing statement counts as a database error; a taken username (a
        domain error from the store) does not.
        """
        server = await start_server(self)
        client = server.client()
        await client.register("alice")
        again = await server.client().post("/api/auth/register", {"username": "alice", "password": "correct horse"})
        self.assertEqual(again.status, 409)
        self.assertEqual(value(await self.scrape(client), "denoisecast_database_errors_total"), 0)
        with self.assertRaises(OperationalError):
            await server.server.database.read(lambda conn: conn.exec_driver_sql("SELECT * FROM no_such_table").all())
        self.assertEqual(value(await self.scrape(client), "denoisecast_database_errors_total"), 1)

    async def test_rate_limited_counted(self) -> None:
        """429s on HTTP (login guessing) and rate_limited on the socket are counted."""
        server = await start_server(self)
        client = server.client()
        await client.register("alice")
        for attempt in range(100):
            reply = await client.post("/api/auth/login", {"username": "alice", "password": f"wrong {attempt}"})
            if reply.status == 429:
                break
        self.assertEqual(reply.status, 429)
        ws = await connect_ws(self, server.base, client)
        for _ in range(60):
            ws.send({"v": 1, "type": "ping"})
        await ws.expect("error", code="rate_limited")
        text = await self.scrape(client)
        self.assertGreaterEqual(value(text, "denoisecast_http_rate_limited_total", route="/api/auth/login") or 0, 1)
        self.assertGreaterEqual(value(text, "denoisecast_websocket_rate_limited_total") or 0, 1)

    async def test_bearer_token(self) -> None:
        """With --metrics-token, /metrics answers 401 without the right bearer token."""
        token = "s3cret-metrics-token"
        server = await start_server(self, metrics_token=token)
        client = server.client()
        for headers in ({}, {"Authorization": "Bearer wrong-token-of-some-length"}, {"Authorization": token}):
            reply = await client.get("/metrics", headers=headers)
            self.assertEqual(reply.status, 401, headers)
            self.assertNotIn(b"process_", reply.body)
        reply = await client.get("/metrics", headers={"Authorization": f"Bearer {token}"})
        self.assertEqual(reply.status, 200)
        self.assertIn(b"denoisecast_build_info", reply.body)

    def test_token_option(self) -> None:
        """A short or non-ASCII token is refused at start."""
        for bad in ("short", "é" * 20, "tab\there-is-long-enough"):
            with self.assertRaises(ConfigError):
                Config.resolve({"metrics-token": bad}, {})


class SeparateEndpointTests(TestCase):
    timeout = 120

    async def test_metrics_listen(self) -> None:
        """
        With --metrics-listen, a real twistd serves /metrics only on that
        endpoint (the main site answers 404), with the disk sampled at start.
        """
        workdir = Path(tempfile.mkdtemp(prefix="denoisecast-metrics-"))
        self.addCleanup(shutil.rmtree, workdir, True)
        port = free_port()
        server = TwistdProcess(self, workdir, "--metrics-listen", f"tcp:{port}:interface=127.0.0.1")
        await server.ready()
        main = Client(server.base)
        self.assertEqual((await main.get("/metrics")).status, 404)
        reply = await Client(f"http://127.0.0.1:{port}").get("/metrics")
        self.assertEqual(reply.status, 200, server.output()[-2000:])
        text = reply.body.decode()
        self.assertGreater(value(text, "denoisecast_data_disk_free_bytes") or 0, 0)
        self.assertIsNotNone(value(text, "process_cpu_seconds_total"))
        self.assertIsNotNone(value(text, "denoisecast_engine_streams"))
        self.assertEqual((await Client(f"http://127.0.0.1:{port}").get("/api/health")).status, 404)
