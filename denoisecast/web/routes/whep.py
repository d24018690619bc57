"""
WHEP, the WebRTC-HTTP egress protocol (draft-ietf-wish-whep): a WebRTC
player listens to a friend's live broadcast with one HTTP request.

    POST    /whep/<username>[?signal=raw]    offer (application/sdp) -> 201, answer, Location, ETag
    DELETE  /whep/<username>/<session>       ends the session -> 200
    PATCH   /whep/<username>/<session>       405: no trickle ICE, no ICE restart (the
                                             answer carries every server candidate)
    OPTIONS either                           204 with CORS and Accept-Post

The player offers to receive audio; the server answers send-only, fed
with the broadcast's shared Opus packets like a browser listener
(C{live/taps.py}).  Every request carries the player's listen token as
``Authorization: Bearer``; a session is ended only with the token of the
person who opened it.  Errors are the JSON error shape: 401 bad token,
403 not a friend (or no such user), 404 not live or no such session, 400
bad SDP, 415 not ``application/sdp``.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from twisted.internet.defer import ensureDeferred
from twisted.python.failure import Failure
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request

from denoisecast.errors import DenoiseCastError, bad_request, not_found
from denoisecast.live.manager import LiveManager
from denoisecast.live.offers import check_offer
from denoisecast.protocols.messages import MAX_SDP
from denoisecast.runtime.logs import logger
from denoisecast.storage.store import User
from denoisecast.web.apidoc import USERNAME_PARAM, error
from denoisecast.web.bearer import TokenCheck, bad_token, bearer_token, sdp_cors, write_error
from denoisecast.web.routes.listen import signal_of

ENDPOINT = "/whep/{username}"
SESSION = "/whep/{username}/{session}"
SDP_TYPE = "application/sdp"
#: What this resource serves, for the OpenAPI test.
ROUTES = (("POST", ENDPOINT), ("OPTIONS", ENDPOINT), ("DELETE", SESSION), ("OPTIONS", SESSION))


def _method_not_allowed(allowed: str) -> DenoiseCastError:
    return DenoiseCastError(405, "method_not_allowed", f"Use {allowed} here.", {"Allow": allowed})


def check_listen_offer(sdp: str) -> None:
    """
    A WHEP offer must be usable (C{check_offer}) and receive Opus audio:
    the server only sends the broadcast's Opus packets.
    """
    description = check_offer(sdp)
    audio = next(section for section in description.media if section.kind == "audio")
    if audio.direction not in ("recvonly", "sendrecv"):
        raise bad_request("The offer's audio section does not receive (a=recvonly).", "bad_sdp")
    if not any(codec.name.lower() == "opus" for codec in audio.rtp.codecs):
        raise bad_request("The offer does not accept Opus audio.", "no_opus")


class WhepResource(Resource):
    """The C{/whep} subtree."""

    isLeaf = True
    log = logger()

    def __init__(self, live: LiveManager, listen_token: TokenCheck) -> None:
        super().__init__()
        self._live = live
        self._listen_token = listen_token

    def render(self, request: Request) -> Any:
        ensureDeferred(self._dispatch(request)).addErrback(self._failed, request)
        return NOT_DONE_YET

    def _failed(self, failure: Failure, request: Request) -> None:
        self.log.failure("Unhandled error serving {path}", failure, path=request.path)
        write_error(request, DenoiseCastError(500, "internal_error", "Something went wrong on the server."))

    async def _user(self, request: Request) -> User:
        token = bearer_token(request)
        user = await self._listen_token(token) if token else None
        if user is None:
            raise bad_token()
        return user

    async def _dispatch(self, request: Request) -> None:
        parts = request.postpath or []
        method = request.method.decode("latin-1")
        endpoint = len(parts) == 1
        allowed = "OPTIONS, POST" if endpoint else "OPTIONS, DELETE"
        request.route = ENDPOINT if endpoint else SESSION  # type: ignore[attr-defined]  # metrics label
        sdp_cors(request, allowed)
        try:
            names = [part.decode("utf-8") for part in parts]
            if len(names) not in (1, 2) or not all(names):
                raise not_found("not_found", "WHEP endpoints are /whep/<username>.")
            if method == "OPTIONS":
                self._options(request, endpoint)
                return
            if endpoint and method == "POST":
                await self._post(request, names[0])
                return
            if not endpoint and method == "DELETE":
                await self._delete(request, names[1])
                return
            raise _method_not_allowed(allowed)
        except UnicodeDecodeError:
            write_error(request, not_found("not_found", "WHEP endpoints are /whep/<username>."))
        except DenoiseCastError as refused:
            write_error(request, refused)

    def _options(self, request: Request, endpoint: bool) -> None:
        request.setResponseCode(204)
        if endpoint:
            request.setHeader(b"accept-post", SDP_TYPE.encode())
        request.finish()

    async def _post(self, request: Request, username: str) -> None:
        raw_kind = request.getHeader(b"content-type") or b""
        kind = (raw_kind.decode("latin-1") if isinstance(raw_kind, bytes) else raw_kind).split(";")[0].strip().lower()
        if kind != SDP_TYPE:
            raise DenoiseCastError(415, "unsupported_media_type", f"Send the offer as {SDP_TYPE}.")
        signal = signal_of(request)
        user = await self._user(request)
        broadcast = await self._live.taps.broadcast(user, username)
        assert request.content is not None
        raw = request.content.read(MAX_SDP + 1)
        if len(raw) > MAX_SDP:
            raise bad_request(f"The offer is longer than {MAX_SDP} bytes.", "bad_sdp")
        try:
            offer = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise bad_request("The offer is not UTF-8 text.", "bad_sdp") from None
        check_listen_offer(offer)
        session, answer = await self._live.taps.open_whep(broadcast, user, offer, signal)
        if request._disconnected:
            tap = self._live.taps.find_whep(session)
            if tap is not None:
                tap.stop("closed")
            return
        request.setResponseCode(201)
        request.setHeader(b"content-type", SDP_TYPE.encode())
        request.setHeader(b"cache-control", b"no-store")
        request.setHeader(
            b"location", f"/whep/{quote(broadcast.user['username'], safe='')}/{session}".encode()
        )
        request.setHeader(b"etag", f'"{session}"'.encode())
        request.write(answer.encode())
        request.finish()

    async def _delete(self, request: Request, session: str) -> None:
        user = await self._user(request)
        tap = self._live.taps.find_whep(session)
        if tap is None or tap.user["id"] != user["id"]:
            # Someone else's session looks like none at all.
            raise not_found("no_session", "No such WHEP session.")
        tap.stop("unlistened")
        request.setResponseCode(200)
        request.setHeader(b"cache-control", b"no-store")
        request.finish()


_ERRORS = {
    "401": error("No valid listen token."),
    "404": error("Not live, or no such session."),
}

#: Documented beside the JSON API (SDP, not JSON, but an API all the same).
OPENAPI_PATHS: dict[str, Any] = {
    ENDPOINT: {
        "post": {
            "summary": "WHEP: listen to a friend's live broadcast over WebRTC; send a receive-only offer (docs/interop.md).",
            "parameters": [
                USERNAME_PARAM,
                {"name": "signal", "in": "query", "required": False, "schema": {"enum": ["denoised", "raw"]}},
            ],
            "requestBody": {"required": True, "content": {SDP_TYPE: {"schema": {"type": "string"}}}},
            "responses": {
                "201": {
                    "description": "The answer; the session's URL is in Location.",
                    "content": {SDP_TYPE: {"schema": {"type": "string"}}},
                },
                "400": error("Bad SDP, or it does not receive Opus audio."),
                "403": error("Not a friend (or no such user)."),
                "415": error("Not application/sdp."),
                **_ERRORS,
            },
            "security": [{"listenToken": []}],
        },
        "options": {
            "summary": "CORS preflight; Accept-Post names application/sdp.",
            "security": [],
            "parameters": [USERNAME_PARAM],
            "responses": {"204": {"description": "The CORS headers."}},
        },
    },
    SESSION: {
        "delete": {
            "summary": "End a WHEP session (with the token that opened it).",
            "parameters": [USERNAME_PARAM, {"name": "session", "in": "path", "required": True, "schema": {"type": "string"}}],
            "responses": {"200": {"description": "Ended."}, **_ERRORS},
            "security": [{"listenToken": []}],
        },
        "options": {
            "summary": "CORS preflight.",
            "security": [],
            "parameters": [USERNAME_PARAM, {"name": "session", "in": "path", "required": True, "schema": {"type": "string"}}],
            "responses": {"204": {"description": "The CORS headers."}},
        },
    },
}
