"""
``GET /listen/<username>.ogg``: a friend's live broadcast as a plain
Ogg/Opus HTTP stream, for players that speak no WebRTC (VLC, ffplay, a
phone's podcast app, the browser's ``<audio>``).

The listener proves who they are with a listen token, in
``Authorization: Bearer`` or, for players that cannot set headers, in
``?token=``; or with the browser app's session cookie (a GET changes
nothing, so no CSRF header).  ``?signal=raw`` streams the raw signal.  The
stream is the broadcast's shared Opus packets in Ogg pages of the
listener's own (C{audio/ogg.py}, C{live/taps.py}): a chunked response that
ends with an end-of-stream page when the broadcast does.

The response is a push producer's consumer: when the client's socket
buffers fill, Twisted pauses the tap, which drops packets instead of
queueing them, and cuts the client off after a while (C{STALL_SECONDS}).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from twisted.internet.defer import ensureDeferred
from twisted.internet.interfaces import IPushProducer
from twisted.python.failure import Failure
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request
from zope.interface import implementer

from denoisecast.errors import DenoiseCastError, bad_request, not_found
from denoisecast.handlers.tokens import bearer_token
from denoisecast.live.manager import LiveManager
from denoisecast.live.taps import OggTap, Recheck
from denoisecast.protocols.messages import SIGNALS
from denoisecast.runtime.logs import logger
from denoisecast.storage.store import User
from denoisecast.web.apidoc import USERNAME_PARAM, error
from denoisecast.web.resource import dump_json
from denoisecast.web.sameorigin import SESSION_COOKIE, session_token

ROUTE = "/listen/{username}.ogg"
#: What this resource serves (HEAD comes with GET), for the OpenAPI test.
ROUTES = (("GET", ROUTE),)
SUFFIX = ".ogg"
#: Longer tokens in the query are not looked up at all.
MAX_TOKEN = 256

#: Maps a token (a listen token, or a session cookie's value) to its user, or None.
TokenCheck = Callable[[str], Awaitable[User | None]]


def refused(presented: bool) -> DenoiseCastError:
    """401, worded as WHIP's and WHEP's: nothing presented, or something not valid."""
    challenge = 'Bearer realm="DenoiseCast"' + (', error="invalid_token"' if presented else "")
    return DenoiseCastError(
        401,
        "invalid_token" if presented else "unauthenticated",
        "That is not a valid listen token (revoked, mistyped, or a publish token)."
        if presented
        else "Send a listen token (Authorization: Bearer <token>, or ?token=<token>), or log in.",
        {"WWW-Authenticate": challenge},
    )


def write_error(request: Request, error: DenoiseCastError) -> None:
    """Answer with the JSON error shape every DenoiseCast API uses."""
    if request.finished or request._disconnected:
        return
    request.setResponseCode(error.status)
    request.setHeader(b"cache-control", b"no-store")
    for name, value in error.headers.items():
        request.setHeader(name, value)
    request.setHeader(b"content-type", b"application/json")
    request.write(dump_json(error.to_json()))
    request.finish()


@implementer(IPushProducer)
class _TapProducer:
    """Passes Twisted's flow control on to the tap (see the module docstring)."""

    def __init__(self, tap: OggTap) -> None:
        self.tap = tap

    def pauseProducing(self) -> None:
        self.tap.pause()

    def resumeProducing(self) -> None:
        self.tap.resume()

    def stopProducing(self) -> None:
        self.tap.stop("closed", end_page=False)


def signal_of(request: Request) -> str:
    values = (request.args or {}).get(b"signal", [b"denoised"])
    signal = values[0].decode("latin-1")
    if len(values) != 1 or signal not in SIGNALS:
        raise bad_request(f"signal is one of {', '.join(SIGNALS)}.", "invalid_field")
    return signal


class OggListenResource(Resource):
    """The C{/listen} subtree."""

    isLeaf = True
    log = logger()

    def __init__(self, live: LiveManager, listen_token: TokenCheck, session_user: TokenCheck) -> None:
        super().__init__()
        self._live = live
        self._listen_token = listen_token
        self._session_user = session_user

    def render(self, request: Request) -> Any:
        if request.method in (b"GET", b"HEAD"):
            return super().render(request)
        request.route = ROUTE  # type: ignore[attr-defined]  # the metrics' label
        write_error(request, DenoiseCastError(405, "method_not_allowed", "Use GET, HEAD here.", {"Allow": "GET, HEAD"}))
        return NOT_DONE_YET

    def render_GET(self, request: Request) -> Any:
        ensureDeferred(self._stream(request, body=True)).addErrback(self._failed, request)
        return NOT_DONE_YET

    def render_HEAD(self, request: Request) -> Any:
        ensureDeferred(self._stream(request, body=False)).addErrback(self._failed, request)
        return NOT_DONE_YET

    def _failed(self, failure: Failure, request: Request) -> None:
        self.log.failure("Unhandled error serving {path}", failure, path=request.path)
        write_error(request, DenoiseCastError(500, "internal_error", "Something went wrong on the server."))

    async def _listener(self, request: Request) -> tuple[User, Recheck]:
        """
        Who listens: a listen token in C{Authorization: Bearer} or in
        C{?token=} (a malformed or invalid one is a 401, never a fall-back
        to the cookie), else the browser's session cookie; and how to ask
        again whether that credential still holds (C{Taps.recheck}).
        """
        header = request.getHeader(b"authorization")
        query = (request.args or {}).get(b"token")
        if header is not None or query is not None:
            token = None
            if header is not None:
                token = bearer_token(header.decode("latin-1"))
            elif query is not None and len(query) == 1 and len(query[0]) <= MAX_TOKEN:
                token = query[0].decode("latin-1")
            user = await self._listen_token(token) if token else None
            if user is None or token is None:
                raise refused(presented=True)
            return user, self._still(self._listen_token, token)
        cookie = session_token(request.getCookie(SESSION_COOKIE))
        user = await self._session_user(cookie) if cookie is not None else None
        if user is None or cookie is None:
            raise refused(presented=False)
        return user, self._still(self._session_user, cookie)

    @staticmethod
    def _still(check: TokenCheck, credential: str) -> Recheck:
        async def still_allowed() -> bool:
            return await check(credential) is not None

        return still_allowed

    async def _stream(self, request: Request, body: bool) -> None:
        request.route = ROUTE  # type: ignore[attr-defined]  # the metrics' label
        try:
            parts = request.postpath or []
            name = parts[0].decode("utf-8") if len(parts) == 1 else ""
            if not name.endswith(SUFFIX) or len(name) == len(SUFFIX):
                raise not_found("not_found", "Listen at /listen/<username>.ogg.")
            signal = signal_of(request)
            user, still_allowed = await self._listener(request)
            broadcast = await self._live.taps.broadcast(user, name[: -len(SUFFIX)], request.uri.decode("latin-1"))
            self._live.taps.make_room(broadcast, user)
        except UnicodeDecodeError:
            write_error(request, not_found("not_found", "Listen at /listen/<username>.ogg."))
            return
        except DenoiseCastError as refused:
            write_error(request, refused)
            return
        if request._disconnected:
            return
        request.setHeader(b"content-type", b"audio/ogg")
        request.setHeader(b"cache-control", b"no-store")
        request.setHeader(b"x-content-type-options", b"nosniff")
        # A reverse proxy must pass each page on at once (nginx honours this).
        request.setHeader(b"x-accel-buffering", b"no")
        if not body:
            request.finish()
            return

        def open_() -> bool:
            return not request.finished and not request._disconnected

        def write(data: bytes) -> None:
            if open_():
                request.write(data)

        def finish(clean: bool) -> None:
            if not open_():
                return
            request.unregisterProducer()
            if clean:
                request.finish()
            else:  # it reads nothing: the end would wait in its buffers forever
                request.channel.transport.abortConnection()  # type: ignore[union-attr]  # a TCP transport while connected

        tap = self._live.taps.open_ogg(broadcast, user, signal, write, finish, still_allowed)
        request.registerProducer(_TapProducer(tap), True)
        request.notifyFinish().addBoth(lambda _: tap.stop("closed", end_page=False))


#: Documented beside the JSON API (it is not JSON, but it is an API).
OPENAPI_PATHS: dict[str, Any] = {
    ROUTE: {
        "get": {
            "summary": (
                "Listen to a friend's live broadcast as an Ogg/Opus HTTP stream (docs/interop.md): "
                "a listen token in Authorization: Bearer or ?token=, or the session cookie."
            ),
            "parameters": [
                USERNAME_PARAM,
                {"name": "signal", "in": "query", "required": False, "schema": {"enum": list(SIGNALS)}},
                {"name": "token", "in": "query", "required": False, "schema": {"type": "string"}},
            ],
            "responses": {
                "200": {
                    "description": "The live stream, until the broadcast ends.",
                    "content": {"audio/ogg": {"schema": {"type": "string", "format": "binary"}}},
                },
                "400": error("A bad signal."),
                "401": error("No valid listen token or session."),
                "403": error("Not a friend (or no such user)."),
                "307": {"description": "live_elsewhere: live on another node; Location is this URL there."},
                "404": error("Not live, or not a .ogg URL."),
                "429": error("too_many_streams: you hold the most streams one person may on this broadcast."),
            },
            "security": [{"listenToken": []}, {"session": []}],
        },
    },
}
