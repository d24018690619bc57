"""
The JSON API resource: one route table, one dispatcher, one error shape.

Routes are declared as L{Route} values (method, path template, handler);
the same table drives dispatch, the metric labels and the OpenAPI test.
The dispatcher applies, in order: route lookup (404, 405), CSRF and Origin
checks on state-changing methods (403; not on routes marked C{csrf=False},
which read no cookie: WHIP's, authenticated by a bearer token), the
session where the route needs it (401), then the handler.  Handlers answer
JSON, a L{FileBody} or a L{RawBody} (WHIP's SDP).  A L{DenoiseCastError} becomes its JSON
error; anything else is logged and becomes a generic 500 that leaks nothing.
"""

from __future__ import annotations

import hmac
import json
import secrets
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from twisted.internet.defer import ensureDeferred
from twisted.python.failure import Failure
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request

from denoisecast.errors import DenoiseCastError, forbidden, unauthenticated
from denoisecast.runtime.jsontext import json_default
from denoisecast.runtime.logs import logger
from denoisecast.storage.store import User
from denoisecast.web.forwarded import client_view
from denoisecast.web.parse import Field, parse_json_object
from denoisecast.web.ranges import serve_file
from denoisecast.web.sameorigin import SESSION_COOKIE, origin_allowed, session_token

CSRF_COOKIE = b"dc_csrf"
CSRF_HEADER = "X-CSRF-Token"
SAFE_METHODS = {b"GET", b"HEAD", b"OPTIONS"}

JsonValue = Any
Response = tuple[int, JsonValue]


@dataclass(frozen=True)
class FileBody:
    """
    A handler's answer that is a file, served with Range support.
    """

    path: Path
    content_type: str
    #: A ready C{Content-Disposition} value (the download's file name), or none.
    disposition: str | None = None


@dataclass(frozen=True)
class RawBody:
    """
    A handler's answer that is not JSON (WHIP's SDP answer, or an empty
    body with headers such as C{Location}), with its own headers.
    """

    data: bytes = b""
    content_type: str | None = None
    headers: tuple[tuple[str, str], ...] = ()


@dataclass
class ApiCall:
    """
    What a handler gets: the request, the path parameters, the logged-in
    user (when the route requires one) and the session token.
    """

    request: Request
    params: dict[str, str]
    user: User | None = None
    session_token: str | None = None

    def body(self, fields: dict[str, Field]) -> dict[str, Any]:
        return parse_json_object(self.request, fields)

    @property
    def me(self) -> User:
        assert self.user is not None, "route does not require login"
        return self.user


Handler = Callable[[ApiCall], Awaitable[Response]]


@dataclass(frozen=True)
class Route:
    method: str
    template: str
    handler: Handler = field(compare=False)
    auth: bool = True
    #: Whether state-changing requests need the Origin and CSRF checks.
    #: Only for routes that never look at the session cookie (WHIP's,
    #: authenticated by a bearer token another site's page cannot have).
    csrf: bool = True
    #: Headers on every answer of this route, errors included (CORS).
    headers: tuple[tuple[str, str], ...] = field(default=(), compare=False)

    @property
    def segments(self) -> list[str]:
        return self.template.strip("/").split("/")

    def match(self, parts: Sequence[str]) -> dict[str, str] | None:
        segments = self.segments
        if len(segments) != len(parts):
            return None
        params = {}
        for segment, part in zip(segments, parts):
            if segment.startswith("{") and segment.endswith("}"):
                if not part:
                    return None
                params[segment[1:-1]] = part
            elif segment != part:
                return None
        return params


def dump_json(value: JsonValue) -> bytes:
    return json.dumps(value, default=json_default, separators=(",", ":")).encode()


def secure_cookie(request: Request, name: bytes, value: bytes, **attributes: Any) -> None:
    request.addCookie(
        name,
        value,
        path=b"/",
        secure=request.isSecure(),
        **attributes,
    )


def csrf_token(request: Request) -> str:
    """
    The client's CSRF token, minting and setting a new cookie if it has none.

    Double-submit: state-changing requests must repeat the cookie's value in
    the C{X-CSRF-Token} header, which another site's page can neither read
    nor forge.
    """
    existing = request.getCookie(CSRF_COOKIE)
    if existing and 16 <= len(existing) <= 128:
        return existing.decode("ascii", "replace")
    token = secrets.token_urlsafe(24)
    secure_cookie(request, CSRF_COOKIE, token.encode(), sameSite="strict")
    request.received_cookies[CSRF_COOKIE] = token.encode()
    return token


#: Seconds a client is asked to wait when the database's disk is full.
STORAGE_FULL_RETRY_AFTER = 60
_SQLITE_FULL = 13
_POSTGRES_DISK_FULL = "53100"


def storage_full(error: BaseException) -> bool:
    """
    Whether C{error} is the database saying its disk is full (SQLite's
    SQLITE_FULL, PostgreSQL's disk_full), wrapped by SQLAlchemy or not.
    """
    original = getattr(error, "orig", None) or error
    if getattr(original, "sqlite_errorcode", None) == _SQLITE_FULL:
        return True
    return getattr(original, "sqlstate", None) == _POSTGRES_DISK_FULL


def _check_origin(request: Request) -> None:
    """
    A browser's Origin must be this site's host as the client addressed it:
    behind a trusted proxy, the host the proxy forwarded (see
    L{denoisecast.web.forwarded}), not the one the proxy connected to.
    """
    if not origin_allowed(request.getHeader("origin"), client_view(request).host, required=False):
        raise forbidden("bad_origin", "Cross-origin requests are not allowed.")


def _check_csrf(request: Request) -> None:
    cookie = request.getCookie(CSRF_COOKIE) or b""
    header = (request.getHeader(CSRF_HEADER) or "").encode("utf-8", "replace")
    if not cookie or not hmac.compare_digest(cookie, header):
        raise forbidden(
            "csrf_failed",
            f"Missing or wrong {CSRF_HEADER} header; repeat the dc_csrf cookie's value in it.",
        )


class JsonApi(Resource):
    """
    The C{/api} subtree, dispatching on the route table.
    """

    isLeaf = True
    log = logger()

    def __init__(
        self,
        routes: Sequence[Route],
        authenticate: Callable[[str], Awaitable[User | None]],
    ) -> None:
        super().__init__()
        self.routes = list(routes)
        self._authenticate = authenticate

    def render(self, request: Request) -> int:
        ensureDeferred(self._dispatch(request)).addErrback(self._internal_error, request)
        return NOT_DONE_YET

    def _find(self, request: Request) -> tuple[Route, dict[str, str]]:
        raw_parts = request.path.split(b"?")[0].decode("latin-1").strip("/").split("/")
        try:
            parts = [unquote(part, errors="strict") for part in raw_parts]
        except UnicodeDecodeError:
            raise DenoiseCastError(404, "not_found", "No such API route.") from None
        method = request.method.decode("latin-1")
        allowed = []
        for route in self.routes:
            params = route.match(parts)
            if params is None:
                continue
            if route.method == method or (method == "HEAD" and route.method == "GET"):
                return route, params
            allowed.append(route.method)
        if allowed:
            raise DenoiseCastError(
                405,
                "method_not_allowed",
                f"Use {', '.join(sorted(set(allowed)))} here.",
                {"Allow": ", ".join(sorted(set(allowed)))},
            )
        raise DenoiseCastError(404, "not_found", "No such API route.")

    async def _dispatch(self, request: Request) -> None:
        try:
            try:
                route, params = self._find(request)
            except DenoiseCastError:
                csrf_token(request)
                raise
            if route.csrf:
                # Routes that never read the cookies (WHIP's) set none either.
                csrf_token(request)
            # The route label rides on the request for the HTTP metrics; Request does not declare it.
            request.route = route.template  # type: ignore[attr-defined]
            call = ApiCall(request, params)
            for name, value in route.headers:
                request.setHeader(name, value)
            if request.method not in SAFE_METHODS and route.csrf:
                _check_origin(request)
                _check_csrf(request)
            if route.auth:
                token = session_token(request.getCookie(SESSION_COOKIE))
                user = None
                if token is not None:
                    call.session_token = token
                    user = await self._authenticate(token)
                if user is None:
                    raise unauthenticated()
                call.user = user
            status, body = await route.handler(call)
        except DenoiseCastError as error:
            self._write(request, error.status, error.to_json(), error.headers)
            return
        if isinstance(body, RawBody):
            self._write_raw(request, status, body)
            return
        if isinstance(body, FileBody):
            if body.disposition is not None:
                request.setHeader(b"content-disposition", body.disposition.encode("ascii"))
            served = serve_file(request, body.path, body.content_type)
            if isinstance(served, bytes):
                request.write(served)
                request.finish()
            return
        self._write(request, status, body)

    def _write(
        self,
        request: Request,
        status: int,
        body: JsonValue,
        headers: dict[str, str] | None = None,
    ) -> None:
        if request.finished or request._disconnected:
            return
        request.setResponseCode(status)
        request.setHeader(b"cache-control", b"no-store")
        for name, value in (headers or {}).items():
            request.setHeader(name, value)
        if body is not None and status != 204:
            request.setHeader(b"content-type", b"application/json")
            request.write(dump_json(body))
        request.finish()

    def _write_raw(self, request: Request, status: int, body: RawBody) -> None:
        if request.finished or request._disconnected:
            return
        request.setResponseCode(status)
        request.setHeader(b"cache-control", b"no-store")
        # A name given more than once (Link) is sent as that many header lines.
        for name in {name for name, _ in body.headers}:
            request.responseHeaders.removeHeader(name)
        for name, value in body.headers:
            request.responseHeaders.addRawHeader(name, value)
        if body.content_type is not None:
            request.setHeader(b"content-type", body.content_type.encode("ascii"))
        if body.data and request.method != b"HEAD":
            request.write(body.data)
        request.finish()

    def _internal_error(self, failure: Failure, request: Request) -> None:
        if failure.value is not None and storage_full(failure.value):
            # Not a bug: the operator must free space; the client may retry.
            self.log.warn("Storage full serving {path}: {error}", path=request.path, error=str(failure.value))
            self._write(
                request,
                503,
                {"error": {"code": "storage_full", "message": "The server's storage is full; try again later."}},
                {"Retry-After": str(STORAGE_FULL_RETRY_AFTER)},
            )
            return
        self.log.failure("Unhandled error serving {path}", failure, path=request.path)
        self._write(
            request,
            500,
            {"error": {"code": "internal_error", "message": "Something went wrong on the server."}},
        )
