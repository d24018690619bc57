"""
WHEP, the WebRTC-HTTP egress protocol (draft-ietf-wish-whep): a WebRTC
player listens to a friend's live broadcast with one HTTP request
(docs/interop.md).

    POST    /whep/<username>[?signal=raw]   offer (application/sdp) in, 201 + answer, Location, ETag, Link
    DELETE  /whep/<username>/<session>      ends the session, 200
    OPTIONS either                          CORS preflight
    PATCH                                   405: no trickle ICE, no ICE restart (the answer
                                            carries every server candidate)

The player offers to receive audio; the server answers send-only, fed with
the broadcast's shared Opus packets like a browser listener
(C{live/taps.py}).  Like WHIP's, these routes live in the JSON API's route
table with bearer authentication only (no cookie, so no CSRF check) and
permissive CORS; errors keep the JSON shape: 401 bad token, 403 not a
friend (or no such user), 404 not live or no such session, 400 bad SDP,
415 not C{application/sdp}.  A session is ended only with a token of the
person who opened it.
"""

from __future__ import annotations

from typing import Any

from denoisecast.errors import DenoiseCastError, bad_request, not_found
from denoisecast.handlers.tokens import LISTEN, Tokens, bearer_token
from denoisecast.live.manager import LiveManager
from denoisecast.live.offers import check_offer
from denoisecast.protocols.messages import MAX_SDP, SIGNALS
from denoisecast.storage.store import User
from denoisecast.web.apidoc import USERNAME_PARAM, error
from denoisecast.web.resource import ApiCall, RawBody, Response, Route
from denoisecast.web.routes.listen import signal_of
from denoisecast.web.routes.whip import PREFLIGHT_MAX_AGE, SDP, IceServers, cors_route, ice_server_links

ENDPOINT = "/whep/{username}"
SESSION = "/whep/{username}/{session}"
ENDPOINT_METHODS = "POST, OPTIONS"
SESSION_METHODS = "DELETE, OPTIONS"


def check_listen_offer(sdp: str) -> None:
    """
    A WHEP offer must be usable (C{check_offer}) and receive Opus audio:
    the server only sends the broadcast's Opus packets.  Other sections (a
    player that also asks for video) are answered inactive.
    """
    description = check_offer(sdp)
    audio = next(section for section in description.media if section.kind == "audio")
    if audio.direction not in ("recvonly", "sendrecv"):
        raise bad_request("The offer's audio section does not receive (a=recvonly).", "bad_sdp")
    if not any(codec.name.lower() == "opus" for codec in audio.rtp.codecs):
        raise bad_request("The offer does not accept Opus audio.", "no_opus")


class WhepRoutes:
    def __init__(self, tokens: Tokens, live: LiveManager, ice_servers: IceServers) -> None:
        self._tokens = tokens
        self._live = live
        self._ice_servers = ice_servers

    def routes(self) -> list[Route]:
        return [
            cors_route("OPTIONS", ENDPOINT, self.endpoint_options, ENDPOINT_METHODS),
            cors_route("POST", ENDPOINT, self.listen, ENDPOINT_METHODS),
            cors_route("OPTIONS", SESSION, self.session_options, SESSION_METHODS),
            cors_route("DELETE", SESSION, self.end, SESSION_METHODS),
        ]

    async def _listener(self, call: ApiCall) -> User:
        presented = call.request.getHeader("authorization")
        user = await self._tokens.check(bearer_token(presented), LISTEN)
        if user is None:
            challenge = 'Bearer realm="DenoiseCast"' + (', error="invalid_token"' if presented else "")
            raise DenoiseCastError(
                401,
                "invalid_token" if presented else "unauthenticated",
                "That is not a valid listen token (revoked, mistyped, or a publish token)."
                if presented
                else "Send a listen token from your settings page as Authorization: Bearer <token>.",
                {"WWW-Authenticate": challenge},
            )
        return user

    def _preflight(self, methods: str) -> RawBody:
        headers = [
            ("Access-Control-Allow-Methods", methods),
            ("Access-Control-Allow-Headers", "Authorization, Content-Type, If-Match"),
            ("Access-Control-Max-Age", PREFLIGHT_MAX_AGE),
        ]
        if methods == ENDPOINT_METHODS:
            headers.append(("Accept-Post", SDP))
        return RawBody(headers=tuple(headers))

    async def endpoint_options(self, call: ApiCall) -> Response:
        return 204, self._preflight(ENDPOINT_METHODS)

    async def session_options(self, call: ApiCall) -> Response:
        return 204, self._preflight(SESSION_METHODS)

    async def listen(self, call: ApiCall) -> Response:
        kind = (call.request.getHeader("content-type") or "").split(";")[0].strip().lower()
        if kind != SDP:
            raise DenoiseCastError(415, "unsupported_media_type", f"Send the offer as {SDP}.")
        signal = signal_of(call.request)
        user = await self._listener(call)
        broadcast = await self._live.taps.broadcast(user, call.params["username"], call.request.uri.decode("latin-1"))
        raw = call.request.content.read(MAX_SDP + 1) if call.request.content is not None else b""
        if len(raw) > MAX_SDP:
            raise DenoiseCastError(413, "body_too_large", f"The offer is limited to {MAX_SDP} bytes.")
        try:
            offer = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise bad_request("The offer is not UTF-8 text.", "bad_sdp") from None
        check_listen_offer(offer)
        token = bearer_token(call.request.getHeader("authorization"))

        async def still_allowed() -> bool:
            return await self._tokens.check(token, LISTEN) is not None

        session, answer = await self._live.taps.open_whep(broadcast, user, offer, signal, still_allowed)
        headers = [
            ("Location", f"{self._live.own_url}/whep/{broadcast.user['username']}/{session}"),
            ("ETag", f'"{session}"'),
            *(("Link", link) for link in ice_server_links(self._ice_servers(user))),
        ]
        return 201, RawBody(answer.encode("utf-8"), SDP, tuple(headers))

    async def end(self, call: ApiCall) -> Response:
        user = await self._listener(call)
        tap = self._live.taps.find_whep(call.params["session"])
        if tap is None or tap.user["id"] != user["id"]:
            # Someone else's session looks like none at all.
            raise not_found("no_such_session", "There is no such WHEP session (it ended, or never was).")
        tap.stop("unlistened")
        return 200, RawBody()


_SDP_BODY = {"content": {SDP: {"schema": {"type": "string"}}}}
_BEARER: list[dict[str, list[str]]] = [{"listenToken": []}]
_SESSION_PARAMS = [
    USERNAME_PARAM,
    {"name": "session", "in": "path", "required": True, "schema": {"type": "string", "maxLength": 64}},
]
_AUTH_ERRORS = {"401": error("No listen token, or not a valid one (WWW-Authenticate: Bearer).")}

#: The OpenAPI paths of these routes (web/openapi.py puts the document together).
OPENAPI_PATHS: dict[str, Any] = {
    ENDPOINT: {
        "options": {
            "summary": "CORS preflight for WHEP; Accept-Post names application/sdp.",
            "security": [],
            "parameters": [USERNAME_PARAM],
            "responses": {"204": {"description": "Allowed methods and headers."}},
        },
        "post": {
            "summary": (
                "WHEP: listen to a friend's live broadcast over WebRTC with a listen token; send an offer that "
                "receives Opus audio, get a send-only answer (docs/interop.md)."
            ),
            "security": _BEARER,
            "parameters": [
                USERNAME_PARAM,
                {"name": "signal", "in": "query", "required": False, "schema": {"enum": list(SIGNALS)}},
            ],
            "requestBody": {"required": True, **_SDP_BODY},
            "responses": {
                "201": {"description": "The answer; the session is at Location, ICE servers in Link.", **_SDP_BODY},
                "400": error("Bad SDP, no audio, an offer that does not receive Opus, or a bad signal."),
                **_AUTH_ERRORS,
                "403": error("Not a friend (or no such user, or yourself)."),
                "307": {"description": "live_elsewhere: live on another node; Location is this URL there."},
                "404": error("Not live."),
                "413": error("The offer is too large."),
                "415": error("The body is not application/sdp."),
                "429": error("too_many_streams: you hold the most sessions one person may on this broadcast."),
            },
        },
    },
    SESSION: {
        "options": {
            "summary": "CORS preflight for a WHEP session.",
            "security": [],
            "parameters": _SESSION_PARAMS,
            "responses": {"204": {"description": "Allowed methods and headers."}},
        },
        "delete": {
            "summary": "End a WHEP session (with a listen token of the person who opened it).",
            "security": _BEARER,
            "parameters": _SESSION_PARAMS,
            "responses": {
                "200": {"description": "Ended."},
                **_AUTH_ERRORS,
                "404": error("No such session (ended, never was, or someone else's)."),
            },
        },
    },
}
