"""
Health, Prometheus metrics and the server-served pages.
"""

from __future__ import annotations

from twisted.trial.unittest import TestCase

from denoisecast import __version__
from tests.support import start_server


class HealthTests(TestCase):
    async def test_healthy(self) -> None:
        """
        /api/health reports the database reachable, the recordings disk
        with its free space, this node and its (in-process) live bus, and
        the version.
        """
        running = await start_server(self)
        reply = await running.client().get("/api/health")
        free = reply.body.pop("disk_free_bytes")
        self.assertEqual(
            (reply.status, reply.body),
            (200, {"status": "ok", "database": "ok", "disk": "ok", "version": __version__,
                   "node": running.server.bus.node_id, "bus": "in-process"}),
        )
        self.assertGreater(free, 0)

    async def test_database_down(self) -> None:
        """
        With the database unreachable, /api/health answers 503 degraded.
        """
        running = await start_server(self)
        running.server.database.engine.dispose()

        def broken(*args: object) -> object:
            raise ConnectionError("database gone")

        self.patch(running.server.database.engine, "connect", broken)
        reply = await running.client().get("/api/health")
        self.assertEqual((reply.status, reply.body["status"], reply.body["database"]), (503, "degraded", "unreachable"))


class MetricsTests(TestCase):
    async def test_request_counts_and_latency(self) -> None:
        """
        /metrics exposes request counts by route template and status, and
        latency histograms.
        """
        running = await start_server(self)
        client = running.client()
        await client.get("/api/health")
        await client.get("/api/health")
        await client.get("/api/me")
        await client.get("/api/friends/requests")
        reply = await client.get("/metrics")
        self.assertEqual(reply.status, 200)
        text = reply.body.decode()
        self.assertIn(
            'denoisecast_http_requests_total{method="GET",route="/api/health",status="200"} 2.0', text
        )
        self.assertIn(
            'denoisecast_http_requests_total{method="GET",route="/api/me",status="401"} 1.0', text
        )
        self.assertIn(
            'denoisecast_http_requests_total{method="GET",route="/api/friends/requests",status="401"} 1.0',
            text,
        )
        self.assertIn(
            'denoisecast_http_request_duration_seconds_count{method="GET",route="/api/health"} 2.0', text
        )


class PageTests(TestCase):
    async def test_pages_served(self) -> None:
        """
        /login and /register are the app's HTML shell with its module, a
        CSRF cookie and a strict content security policy; static files are
        served.  (tests/test_pages.py covers every page URL.)
        """
        running = await start_server(self)
        for path, marker in [("/login", '"page": "login"'), ("/register", '"page": "register"')]:
            client = running.client()
            reply = await client.get(path)
            self.assertEqual(reply.status, 200, path)
            self.assertIn(marker, reply.body.decode().replace('":"', '": "'))
            self.assertIn("/static/app.js", reply.body.decode())
            self.assertIsNotNone(client.cookie("dc_csrf"))
            self.assertIn("default-src 'self'", reply.header("content-security-policy"))
        script = await running.client().get("/static/api.js")
        self.assertEqual(script.status, 200)
        self.assertIn(b"X-CSRF-Token", script.body)
