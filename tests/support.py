"""
Shared pieces of the tests: an in-process server on a real TCP port, an
HTTP client that keeps cookies and sends the CSRF header, and databases.
"""

from __future__ import annotations

import json
import os
import threading
import uuid
from dataclasses import dataclass
from http.cookiejar import CookieJar
from pathlib import Path
from typing import Any

from argon2 import PasswordHasher
from sqlalchemy import create_engine, text
from treq.client import HTTPClient
from twisted.internet import reactor
from twisted.internet.defer import Deferred, DeferredList
from twisted.internet.endpoints import TCP4ClientEndpoint
from twisted.trial.unittest import SkipTest, TestCase
from twisted.web.client import Agent, BrowserLikePolicyForHTTPS, HTTPConnectionPool
from twisted.web.iweb import IAgentEndpointFactory
from zope.interface import implementer

from denoisecast.app.config import Config
from denoisecast.denoise.settings import SchedulerSettings
from denoisecast.app.server import DenoiseCastServer, load_live_engine
from denoisecast.app.service import make_service


def cheap_hasher() -> PasswordHasher:
    """
    argon2id with the smallest cost: the tests hash many passwords and the
    algorithm, not its cost, is what they check.
    """
    return PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)


def sqlite_url(testcase: TestCase) -> str:
    path = Path(testcase.mktemp())
    path.mkdir(parents=True)
    return f"sqlite:///{path / 'test.sqlite3'}"


POSTGRES_ENV = "DENOISECAST_TEST_POSTGRES_URL"
DEFAULT_POSTGRES = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
_postgres_problem: str | None = None


def postgres_url(testcase: TestCase) -> str:
    """
    A fresh, empty PostgreSQL database for one test, dropped afterwards.

    The server comes from C{DENOISECAST_TEST_POSTGRES_URL} (``scripts/test``
    sets it, starting a server of its own when none runs); the test is
    skipped, saying why, only if no server can be reached.
    """
    global _postgres_problem
    admin_url = os.environ.get(POSTGRES_ENV, DEFAULT_POSTGRES)
    if _postgres_problem is not None:
        raise SkipTest(_postgres_problem)
    name = "dc_test_" + uuid.uuid4().hex[:12]
    try:
        admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
        with admin.connect() as connection:
            connection.execute(text(f'CREATE DATABASE "{name}"'))
    except Exception as error:
        _postgres_problem = f"no PostgreSQL server at {admin_url}: {error}"
        raise SkipTest(_postgres_problem) from None

    def drop() -> None:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()

    testcase.addCleanup(drop)
    base, _, _ = admin_url.rpartition("/")
    return f"{base}/{name}"


@dataclass
class Reply:
    status: int
    body: Any
    headers: Any

    def header(self, name: str) -> str | None:
        values = self.headers.getRawHeaders(name)
        return values[0] if values else None

    @property
    def error_code(self) -> str | None:
        if isinstance(self.body, dict) and "error" in self.body:
            return self.body["error"]["code"]
        return None


@implementer(IAgentEndpointFactory)
class _FromAddress:
    """
    Connections from a chosen loopback address (any of 127.0.0.0/8 on
    Linux), so one test can speak as several client addresses.
    """

    def __init__(self, source: str) -> None:
        self._source = source

    def endpointForURI(self, uri: Any) -> TCP4ClientEndpoint:
        return TCP4ClientEndpoint(
            reactor, uri.host.decode(), uri.port, bindAddress=(self._source, 0)
        )


class Client:
    """
    A browser-like API client: a cookie jar, and the CSRF header on every
    state-changing request.
    """

    def __init__(self, base: str, source: str | None = None, tls: Any = None) -> None:
        """
        C{source}: the local address to connect from (any of 127.0.0.0/8);
        C{tls}: an C{IPolicyForHTTPS} for https bases (e.g. trusting a test
        certificate).
        """
        self.base = base
        self.cookies = CookieJar()
        self._pool = HTTPConnectionPool(reactor, persistent=False)
        if source is not None and tls is None:
            agent = Agent.usingEndpointFactory(reactor, _FromAddress(source), pool=self._pool)
        else:
            agent = Agent(
                reactor,
                tls if tls is not None else BrowserLikePolicyForHTTPS(),
                pool=self._pool,
                bindAddress=(source, 0) if source is not None else None,
            )
        self._http = HTTPClient(agent, cookiejar=self.cookies)

    def cookie(self, name: str) -> str | None:
        for cookie in self.cookies:
            if cookie.name == name:
                return cookie.value
        return None

    async def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        raw: bytes | None = None,
        headers: dict[str, str] | None = None,
        csrf: bool = True,
        allow_redirects: bool = True,
    ) -> Reply:
        sent: dict[str, str] = {}
        if method not in ("GET", "HEAD") and csrf:
            if self.cookie("dc_csrf") is None:
                await self.request("GET", "/api/csrf")
            sent["X-CSRF-Token"] = self.cookie("dc_csrf") or ""
        data = raw
        if body is not None:
            data = json.dumps(body).encode()
            sent["Content-Type"] = "application/json"
        sent.update(headers or {})
        response = await self._http.request(
            method, self.base + path, data=data, headers={k: [v] for k, v in sent.items()},
            allow_redirects=allow_redirects,
        )
        content = await response.content()
        kind = (response.headers.getRawHeaders("content-type") or [""])[0]
        parsed: Any = content
        if kind.startswith("application/json") and content:
            parsed = json.loads(content)
        return Reply(response.code, parsed, response.headers)

    async def get(self, path: str, **kw: Any) -> Reply:
        return await self.request("GET", path, **kw)

    async def post(self, path: str, body: Any = None, **kw: Any) -> Reply:
        return await self.request("POST", path, body, **kw)

    async def delete(self, path: str, **kw: Any) -> Reply:
        return await self.request("DELETE", path, **kw)

    async def register(self, username: str, password: str = "correct horse") -> Reply:
        reply = await self.post("/api/auth/register", {"username": username, "password": password})
        assert reply.status == 201, reply
        return reply

    async def login(self, username: str, password: str = "correct horse") -> Reply:
        return await self.post("/api/auth/login", {"username": username, "password": password})


class RunningServer:
    def __init__(self, server: DenoiseCastServer, port: int) -> None:
        self.server = server
        self.base = f"http://127.0.0.1:{port}"

    def client(self, source: str | None = None) -> Client:
        """
        A new client; C{source} is the loopback address it connects from.
        """
        return Client(self.base, source)


async def start_server(
    testcase: TestCase, database_url: str | None = None, data_dir: Path | None = None, bus: Any = None,
    **config: Any,
) -> RunningServer:
    """
    A DenoiseCast server in this process, migrated and listening on a free
    loopback port, stopped when the test ends.  C{bus}: a live bus of the
    test's (several nodes in one process share one broker or Redis prefix).
    """
    if data_dir is None:
        data_dir = Path(testcase.mktemp())
        data_dir.mkdir(parents=True)
    config.setdefault("listen", "tcp:0:interface=127.0.0.1")
    settings = Config(
        data_dir=data_dir, database_url=database_url or sqlite_url(testcase), **config
    )
    server = DenoiseCastServer(
        settings, reactor, password_hasher=cheap_hasher(), engine_loader=shared_engine, bus=bus
    )
    # The tree twistd runs, started as twistd starts it: the database
    # migrated first, then the model and the recorder, then the live manager
    # and the listener.  A problem that would end twistd fails the test.
    problems: Deferred[Any] = Deferred()
    service = make_service(server, fatal=lambda problem: problems.called or problems.errback(StartupFailed(problem)))
    service.privilegedStartService()
    service.startService()
    testcase.addCleanup(service.stopService)
    web = service.getServiceNamed("network").getServiceNamed("web")
    started = await DeferredList([web.when_listening(), problems], fireOnOneCallback=True, fireOnOneErrback=True, consumeErrors=True)
    port, _ = started
    return RunningServer(server, port.getHost().port)


class StartupFailed(Exception):
    """The in-process server met a problem that would end twistd."""


_engines: dict[tuple[str, str], Any] = {}
_engines_lock = threading.Lock()


def shared_engine(settings: SchedulerSettings) -> Any:
    """
    The live engine for in-process servers: loaded once per model and
    device for the whole test run, each server getting its own fork (the
    same read-only weights, its own buffers), so that starting the full
    service tree costs a test no model load.  Runs on a denoise worker.
    """
    key = (settings.model, settings.device)
    with _engines_lock:
        if key not in _engines:
            _engines[key] = load_live_engine(settings)
        return _engines[key].fork()


async def finalised_recordings(client: Client, seconds: float = 10.0) -> list[dict[str, Any]]:
    """
    C{client}'s recordings once none is still C{recording}: a broadcast's
    row is finalised a moment after it ends (its files are closed on the
    recorder's threads first).  Returns the last listing when time runs out.
    """
    from twisted.internet.task import deferLater

    rows: list[dict[str, Any]] = []
    for _ in range(int(seconds / 0.1)):
        rows = (await client.get("/api/recordings")).body["recordings"]
        if all(row["status"] != "recording" for row in rows):
            break
        await deferLater(reactor, 0.1)
    return rows
