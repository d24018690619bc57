"""
What the resources outside the JSON API share (the WHEP endpoint, the
HTTP Ogg stream): reading a bearer token, answering with the JSON error
shape, and the CORS headers of an SDP-over-HTTP endpoint.

Players and WHIP/WHEP clients are not the browser app: they send no CSRF
header and no session cookie, they authenticate with a token in
``Authorization: Bearer``, so these resources live beside C{JsonApi}
rather than inside it.  Tokens are never logged (the access log logs the
path without the query, C{web/access.py}).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from twisted.web.server import Request

from denoisecast.errors import DenoiseCastError
from denoisecast.handlers.tokens import bearer_token as token_of_header
from denoisecast.storage.store import User
from denoisecast.web.resource import dump_json

#: Maps a listen token to the user who owns it, or None (unknown, revoked).
TokenCheck = Callable[[str], Awaitable[User | None]]

def bearer_token(request: Request) -> str | None:
    """
    The token of an C{Authorization: Bearer} header; "" for a header that
    is there but cannot be a token (a 401 either way, never a fallback to
    another credential).
    """
    raw = request.getHeader(b"authorization")
    if raw is None:
        return None
    return token_of_header(raw.decode("latin-1") if isinstance(raw, bytes) else raw) or ""


def bad_token() -> DenoiseCastError:
    return DenoiseCastError(
        401, "bad_token", "Send a valid listen token (Authorization: Bearer ...).",
        {"WWW-Authenticate": 'Bearer realm="denoisecast"'},
    )


def write_error(request: Request, error: DenoiseCastError, extra: dict[str, str] | None = None) -> None:
    """Answer with the JSON error shape every DenoiseCast API uses."""
    if request.finished or request._disconnected:
        return
    request.setResponseCode(error.status)
    request.setHeader(b"cache-control", b"no-store")
    for name, value in {**(extra or {}), **error.headers}.items():
        request.setHeader(name, value)
    request.setHeader(b"content-type", b"application/json")
    request.write(dump_json(error.to_json()))
    request.finish()


def sdp_cors(request: Request, methods: str) -> None:
    """
    CORS for an SDP-over-HTTP endpoint (WHIP and WHEP ask for it): any
    origin, since the credential is a bearer token a page must hold, never
    a cookie the browser adds by itself; the headers a client needs to
    read are exposed.
    """
    request.setHeader(b"access-control-allow-origin", b"*")
    request.setHeader(b"access-control-allow-methods", methods.encode())
    request.setHeader(b"access-control-allow-headers", b"Authorization, Content-Type, If-Match")
    request.setHeader(b"access-control-expose-headers", b"Location, ETag, Link, Accept-Post, Accept-Patch")
