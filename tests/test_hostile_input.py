"""
Hostile and broken input: every case gets a clear error in the one JSON
error shape, never a 500 or a traceback, and changes nothing.
"""

from __future__ import annotations

import json

from sqlalchemy import func, select
from twisted.internet import reactor
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.protocol import Protocol
from twisted.internet.defer import Deferred
from twisted.trial.unittest import TestCase

from denoisecast.storage.tables import users
from tests.support import Reply, RunningServer, start_server


def assert_error_shape(test: TestCase, reply: Reply) -> None:
    test.assertIsInstance(reply.body, dict, reply)
    test.assertEqual(set(reply.body), {"error"})
    test.assertEqual(set(reply.body["error"]), {"code", "message"})
    test.assertNotIn("Traceback", reply.body["error"]["message"])


async def user_count(running: RunningServer) -> int:
    return await running.server.database.read(
        lambda c: c.execute(select(func.count()).select_from(users)).scalar_one()
    )


class RawClient(Protocol):
    """
    Sends bytes as they are and collects the whole answer.
    """

    def __init__(self, payload: bytes) -> None:
        self.payload = payload
        self.received = b""
        self.done: Deferred[bytes] = Deferred()

    def connectionMade(self) -> None:
        self.transport.write(self.payload)

    def dataReceived(self, data: bytes) -> None:
        self.received += data

    def connectionLost(self, reason: object) -> None:
        self.done.callback(self.received)


async def raw_exchange(running: RunningServer, payload: bytes) -> bytes:
    port = int(running.base.rsplit(":", 1)[1])
    protocol = RawClient(payload)
    await connectProtocol(TCP4ClientEndpoint(reactor, "127.0.0.1", port), protocol)
    return await protocol.done


class MalformedBodyTests(TestCase):
    async def setUp(self) -> None:
        self.running = await start_server(self)
        self.client = self.running.client()

    async def expect(self, status: int, code: str, **kwargs: object) -> None:
        reply = await self.client.post("/api/auth/register", **kwargs)  # type: ignore[arg-type]
        self.assertEqual((reply.status, reply.error_code), (status, code), kwargs)
        assert_error_shape(self, reply)
        self.assertEqual(await user_count(self.running), 0)

    async def test_not_json(self) -> None:
        """
        Bodies that are not JSON, not UTF-8, or not an object are 400 malformed_json.
        """
        json_type = {"Content-Type": "application/json"}
        for raw in [b"{", b"", b"nope", b"\xff\xfe{}", b"[]", b'"text"', b"NaN", b'{"a": Infinity}']:
            await self.expect(400, "malformed_json", raw=raw, headers=json_type)

    async def test_deep_nesting(self) -> None:
        """
        Pathologically nested JSON is a 400, not a crash.
        """
        raw = b"[" * 50000 + b"]" * 50000
        reply = await self.client.post(
            "/api/auth/register", raw=raw[:60000], headers={"Content-Type": "application/json"}
        )
        self.assertEqual(reply.status, 400)
        assert_error_shape(self, reply)

    async def test_wrong_types(self) -> None:
        """
        Fields of the wrong JSON type are 400 invalid_field.
        """
        for body in [
            {"username": 5, "password": "longenough"},
            {"username": "alice", "password": None},
            {"username": ["alice"], "password": "longenough"},
            {"username": "alice", "password": True},
            {"username": {"$ne": ""}, "password": "longenough"},
        ]:
            await self.expect(400, "invalid_field", body=body)

    async def test_missing_and_unknown_fields(self) -> None:
        """
        A missing field is 400 missing_field; an unexpected one 400 unknown_field.
        """
        await self.expect(400, "missing_field", body={"username": "alice"})
        await self.expect(
            400, "unknown_field", body={"username": "alice", "password": "longenough", "admin": True}
        )

    async def test_huge_strings(self) -> None:
        """
        Strings longer than a field allows are 400 invalid_field.
        """
        await self.expect(400, "invalid_field", body={"username": "a" * 5000, "password": "longenough"})
        await self.expect(400, "invalid_field", body={"username": "alice", "password": "p" * 5000})

    async def test_wrong_content_type(self) -> None:
        """
        A body sent as a form is 415, so plain HTML forms on other sites cannot post JSON.
        """
        await self.expect(
            415,
            "unsupported_media_type",
            raw=b"username=alice&password=longenough",
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )

    async def test_oversized_body(self) -> None:
        """
        A body over the limit is 413 body_too_large, before it is parsed.
        """
        body = {"username": "alice", "password": "x" * (70 * 1024)}
        await self.expect(413, "body_too_large", body=body)

    async def test_oversized_chunked_body(self) -> None:
        """
        A chunked body (no Content-Length) that grows past the limit is also 413.
        """
        chunk = b"x" * 8192
        chunks = b"".join(b"%x\r\n%s\r\n" % (len(chunk), chunk) for _ in range(10))
        request = (
            b"POST /api/auth/register HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            b"Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n"
            b"Connection: close\r\n\r\n" + chunks + b"0\r\n\r\n"
        )
        answer = await raw_exchange(self.running, request)
        head, _, body = answer.partition(b"\r\n\r\n")
        self.assertTrue(head.startswith(b"HTTP/1.1 413"), head)
        self.assertIn(b"body_too_large", body)


class RoutingTests(TestCase):
    async def test_unknown_route(self) -> None:
        """
        Unknown API paths are 404 not_found in the JSON shape.
        """
        running = await start_server(self)
        for path in ["/api/nothing", "/api/friends/a/b/c/d", "/api/users/%ff", "/api/"]:
            reply = await running.client().get(path)
            self.assertEqual((reply.status, reply.error_code), (404, "not_found"), path)
            assert_error_shape(self, reply)

    async def test_wrong_method(self) -> None:
        """
        A known path with the wrong method is 405 with an Allow header.
        """
        running = await start_server(self)
        reply = await running.client().request("PUT", "/api/me")
        self.assertEqual((reply.status, reply.error_code), (405, "method_not_allowed"))
        self.assertEqual(reply.header("allow"), "GET")

    async def test_garbage_cookies(self) -> None:
        """
        Garbage or huge session cookies are just "not logged in".
        """
        running = await start_server(self)
        for cookie in ["dc_session=" + "A" * 5000, "dc_session=%%%", "dc_session="]:
            reply = await running.client().get("/api/me", headers={"Cookie": cookie})
            self.assertEqual((reply.status, reply.error_code), (401, "unauthenticated"), cookie)

    async def test_headers_that_are_not_utf8(self) -> None:
        """
        Origin, X-CSRF-Token, Content-Type and Range holding bytes that are
        not UTF-8 get the ordinary 4xx (403, 415, or the whole file), not
        a 500.
        """
        running = await start_server(self)
        client = running.client()
        await client.get("/api/csrf")
        csrf = client.cookie("dc_csrf").encode()
        cookie = b"Cookie: dc_csrf=" + csrf + b"\r\n"
        cases = [
            (b"POST /api/auth/login", b"Origin: http://\xff\xfe\r\n", b" 403 "),
            (b"POST /api/auth/login", cookie + b"X-CSRF-Token: \xff" + csrf + b"\r\n", b" 403 "),
            (b"POST /api/auth/login", cookie + b"X-CSRF-Token: " + csrf + b"\r\nContent-Type: \xff/json\r\n", b" 415 "),
            (b"GET /api/health", b"Range: bytes=\xff-\r\n", b" 200 "),
        ]
        for request_line, headers, status in cases:
            answer = await raw_exchange(
                running,
                request_line + b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n" + headers
                + b"Content-Length: 2\r\n\r\n{}",
            )
            self.assertIn(status, answer.split(b"\r\n", 1)[0], (headers, answer[:300]))

    async def test_no_traceback_on_bugs(self) -> None:
        """
        An unexpected exception in a handler is a generic 500 in the JSON
        shape that leaks nothing, and is logged.
        """
        running = await start_server(self)

        async def broken(call: object) -> tuple[int, object]:
            raise RuntimeError("secret internals")

        running.server.api.routes[0] = type(running.server.api.routes[0])(
            "GET", "/api/openapi.json", broken, auth=False
        )
        reply = await running.client().get("/api/openapi.json")
        self.assertEqual((reply.status, reply.error_code), (500, "internal_error"))
        self.assertNotIn("secret", json.dumps(reply.body))
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)


LONE_SURROGATE = "\ud800"


def surrogate_body(body: dict[str, str]) -> bytes:
    """
    C{body} as JSON whose strings are escaped as ASCII, so a lone surrogate
    travels as the six characters C{\\ud800}, as a hostile client sends it.
    """
    return json.dumps(body).encode("ascii")


class LoneSurrogateTests(TestCase):
    """
    JSON lets a string hold a lone UTF-16 surrogate (C{"\\ud800"}), which is
    not Unicode text: every field that carries one is a 400, never a 500.
    """

    timeout = 30

    async def test_every_field_refused(self) -> None:
        """
        Register, login, friend request and password change, in each of their
        string fields: 400 malformed_json naming the problem, and nothing is
        created or changed.
        """
        running = await start_server(self)
        alice = running.client()
        await alice.register("alice")
        json_type = {"Content-Type": "application/json"}
        good = {
            "/api/auth/register": {"username": "bob", "password": "correct horse"},
            "/api/auth/login": {"username": "alice", "password": "correct horse"},
            "/api/friends/requests": {"username": "alice"},
            "/api/auth/password": {"current_password": "correct horse", "new_password": "new horse!"},
        }
        for path, body in good.items():
            for field in body:
                hostile = {**body, field: body[field] + LONE_SURROGATE}
                reply = await alice.post(path, raw=surrogate_body(hostile), headers=json_type)
                self.assertEqual((reply.status, reply.error_code), (400, "malformed_json"), (path, field))
                assert_error_shape(self, reply)
                self.assertIn("surrogate", reply.body["error"]["message"])
        self.assertEqual(await user_count(running), 1)
        self.assertEqual((await alice.get("/api/me")).status, 200)
        self.assertEqual((await alice.login("alice")).status, 200)

    async def test_websocket_listen_user(self) -> None:
        """
        A WebSocket message with a lone surrogate (here in C{listen.user}) is
        answered with a bad_json error, and the connection stays usable.
        """
        from tests.test_presence import people
        from tests.ws_support import connect_ws

        running, c = await people(self)
        alice = await connect_ws(self, running.base, c["alice"])
        await alice.expect("presence")
        alice.send(
            json.dumps({"v": 1, "type": "listen", "user": "bob" + LONE_SURROGATE, "sdp": "v=0"})
        )
        reply = await alice.expect("error")
        self.assertEqual((reply["code"], reply["status"]), ("bad_json", 400))
        self.assertIn("surrogate", reply["message"])
        self.assertEqual((await alice.request({"v": 1, "type": "ping"}))["type"], "pong")
        self.assertEqual(self.flushLoggedErrors(), [])


class NonAsciiCookieTests(TestCase):
    """
    A session cookie that is not ASCII is simply not a session.
    """

    timeout = 30

    async def test_authenticated_routes(self) -> None:
        """
        Authenticated API routes answer 401 unauthenticated, not 500.
        """
        running = await start_server(self)
        client = running.client()
        for cookie in ["dc_session=\u00e9t\u00e9", "dc_session=\u2603" * 3, "dc_session=a\u00ffb"]:
            for path in ["/api/me", "/api/friends", "/api/recordings", "/api/friends/requests"]:
                reply = await client.get(path, headers={"Cookie": cookie})
                self.assertEqual((reply.status, reply.error_code), (401, "unauthenticated"), (cookie, path))
        self.assertEqual(self.flushLoggedErrors(), [])

    async def test_websocket(self) -> None:
        """
        The WebSocket handshake with a non-ASCII session cookie is refused
        as not logged in, with nothing logged as a bug.
        """
        from tests.ws_support import connect_ws

        running = await start_server(self)
        with self.assertRaises(ConnectionError) as caught:
            await connect_ws(self, running.base, None, cookie="dc_session=\u00e9t\u00e9")
        self.assertIn("401", str(caught.exception))
        self.assertEqual(self.flushLoggedErrors(), [])


def disk_full_error() -> Exception:
    """
    A genuine SQLAlchemy error for SQLite's "database or disk is full"
    (SQLITE_FULL), made by filling a database capped at a few pages.
    """
    from sqlalchemy import create_engine, text

    engine = create_engine("sqlite://")
    try:
        with engine.connect() as connection:
            connection.exec_driver_sql("PRAGMA max_page_count = 2")
            connection.execute(text("CREATE TABLE t (x BLOB)"))
            for _ in range(100):
                connection.execute(text("INSERT INTO t VALUES (zeroblob(4096))"))
    except Exception as error:
        return error
    finally:
        engine.dispose()
    raise AssertionError("the capped database never filled")


class DiskFullDatabaseTests(TestCase):
    async def test_full_database_disk_is_a_503(self) -> None:
        """
        A request whose database write fails because the disk is full is a
        503 storage_full with Retry-After (something the operator must fix,
        not a bug): no generic 500, no traceback, the failure logged as a
        warning, not as an error.
        """
        running = await start_server(self)
        error = disk_full_error()

        async def full(call: object) -> tuple[int, object]:
            raise error

        running.server.api.routes[0] = type(running.server.api.routes[0])(
            "GET", "/api/openapi.json", full, auth=False
        )
        reply = await running.client().get("/api/openapi.json")
        self.assertEqual((reply.status, reply.error_code), (503, "storage_full"))
        assert_error_shape(self, reply)
        self.assertIsNotNone(reply.header("retry-after"))
        self.assertEqual(self.flushLoggedErrors(), [])

    async def test_full_database_disk_on_the_websocket(self) -> None:
        """
        The same on the WebSocket: a message whose handling meets a full
        database disk is answered with an error storage_full (503, with the
        message's id), not internal_error, and nothing is logged as a bug.
        """
        from tests.test_presence import people
        from tests.ws_support import connect_ws

        running, c = await people(self)
        error = disk_full_error()

        async def full(*args: object) -> object:
            raise error

        self.patch(running.server.live, "set_denoise", full)
        alice = await connect_ws(self, running.base, c["alice"])
        reply = await alice.request({"v": 1, "type": "denoise", "enabled": False})
        self.assertEqual((reply["type"], reply["code"], reply["status"]), ("error", "storage_full", 503))
        self.assertEqual(self.flushLoggedErrors(), [])
