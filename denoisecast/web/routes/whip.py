"""
WHIP, the WebRTC-HTTP Ingestion Protocol (RFC 9725): OBS, ffmpeg and
GStreamer go live with a bearer publish token (docs/whip.md).

    POST    /whip/<username>            SDP offer in, 201 + SDP answer, Location, ETag, Link
    PATCH   /whip/<username>/<session>  trickle-ICE fragment in, 204 (ICE restarts: 422)
    DELETE  /whip/<username>/<session>  ends the broadcast, 200
    OPTIONS either                      CORS preflight; the endpoint's also lists STUN servers

These routes live in the JSON API's route table (so they share its
dispatch, metrics, 404/405/413 handling and OpenAPI test) but bodies are
SDP, not JSON.  Errors keep the API's JSON shape, so a program reads the
same C{code} everywhere.  Only the bearer token counts: the session cookie
is never read here, so there is nothing for another site to ride on and
the cookie CSRF check does not apply; answers carry permissive CORS headers
for browser-based WHIP clients for the same reason.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from denoisecast.errors import DenoiseCastError, bad_request, forbidden, not_found
from denoisecast.handlers.tokens import PUBLISH, Tokens, bearer_token
from denoisecast.live.whip import WhipSession, WhipSessions
from denoisecast.protocols.messages import MAX_SDP
from denoisecast.storage.store import User
from denoisecast.web.apidoc import error
from denoisecast.web.resource import ApiCall, RawBody, Response, Route

SDP = "application/sdp"
SDPFRAG = "application/trickle-ice-sdpfrag"
#: Longest trickle-ICE fragment accepted.
MAX_SDPFRAG = 16 * 1024
#: Seconds a browser may cache a preflight's answer.
PREFLIGHT_MAX_AGE = "600"

_CORS = (
    ("Access-Control-Allow-Origin", "*"),
    ("Access-Control-Expose-Headers", "Location, ETag, Link"),
)


def cors_route(method: str, template: str, handler: Any, methods: str) -> Route:
    """
    A route of an SDP-over-HTTP endpoint (WHIP here, WHEP beside it): bearer
    tokens instead of the session cookie, so no CSRF check; CORS headers on
    every answer, errors included; C{Allow} on preflights.
    """
    headers = (*_CORS, ("Allow", methods)) if method == "OPTIONS" else _CORS
    return Route(method, template, handler, auth=False, csrf=False, headers=headers)


ENDPOINT_METHODS = "POST, OPTIONS"
SESSION_METHODS = "PATCH, DELETE, OPTIONS"

IceServers = Callable[[User], list[dict[str, Any]]]


def _quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def ice_server_links(servers: list[dict[str, Any]]) -> list[str]:
    """
    The ICE servers as C{Link} header values (RFC 9725 section 4.6):
    C{<url>; rel="ice-server"}, with the TURN credentials as parameters.
    """
    links = []
    for server in servers:
        for url in server["urls"]:
            link = f'<{url}>; rel="ice-server"'
            if "username" in server:
                link += (
                    f"; username={_quote(server['username'])}; credential={_quote(server['credential'])}"
                    '; credential-type="password"'
                )
            links.append(link)
    return links


def _header(call: ApiCall, name: bytes) -> str | None:
    """
    A request header as text, whatever bytes a client sent (Latin-1 maps
    every byte; a str name would make Twisted decode UTF-8 strictly and
    fail on others).  Nothing valid here is outside ASCII anyway.
    """
    raw = call.request.getHeader(name)
    return None if raw is None else raw.decode("latin-1")


def _content_type(call: ApiCall) -> str:
    return (_header(call, b"content-type") or "").split(";")[0].strip().lower()


def _body_text(call: ApiCall, limit: int, what: str) -> str:
    raw = call.request.content.read() if call.request.content is not None else b""
    if len(raw) > limit:
        raise DenoiseCastError(413, "body_too_large", f"{what} is limited to {limit} bytes.")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise bad_request(f"{what} is not UTF-8 text.", "bad_sdp") from None


class WhipRoutes:
    def __init__(self, tokens: Tokens, sessions: WhipSessions, ice_servers: IceServers) -> None:
        self._tokens = tokens
        self._sessions = sessions
        self._ice_servers = ice_servers

    def routes(self) -> list[Route]:
        endpoint = "/whip/{username}"
        session = "/whip/{username}/{session}"

        return [
            cors_route("OPTIONS", endpoint, self.endpoint_options, ENDPOINT_METHODS),
            cors_route("POST", endpoint, self.publish, ENDPOINT_METHODS),
            cors_route("OPTIONS", session, self.session_options, SESSION_METHODS),
            cors_route("PATCH", session, self.trickle, SESSION_METHODS),
            cors_route("DELETE", session, self.end, SESSION_METHODS),
        ]

    async def _publisher(self, call: ApiCall) -> User:
        """
        The user the request's publish token speaks for, who must be the
        one the URL names: 401 without a valid token, 403 for another's
        name (an unknown name too: nothing is learnt of who exists).
        """
        presented = _header(call, b"authorization")
        user = await self._tokens.check(bearer_token(presented), PUBLISH)
        if user is None:
            challenge = 'Bearer realm="DenoiseCast"'
            if presented:
                challenge += ', error="invalid_token"'
            raise DenoiseCastError(
                401,
                "invalid_token" if presented else "unauthenticated",
                "Send a publish token from your settings page as Authorization: Bearer <token>."
                if not presented
                else "That is not a valid publish token (revoked, mistyped, or a listen token).",
                {"WWW-Authenticate": challenge},
            )
        if call.params["username"].lower() != user["username"].lower():
            raise forbidden("not_yours", "That token publishes only to its owner's own /whip/<username>.")
        return user

    async def _session(self, call: ApiCall) -> WhipSession:
        user = await self._publisher(call)
        session = self._sessions.find(user, call.params["session"])
        if session is None:
            raise not_found("no_such_session", "There is no such WHIP session (it ended, or never was).")
        return session

    async def endpoint_options(self, call: ApiCall) -> Response:
        """
        A CORS preflight, or a client asking for ICE servers before it
        offers: STUN servers for anyone; TURN credentials only to a valid
        publish token (a preflight carries none).
        """
        presented = bearer_token(_header(call, b"authorization"))
        user = await self._tokens.check(presented, PUBLISH) if presented else None
        servers = self._ice_servers(user) if user is not None else self._ice_servers({"username": ""})
        if user is None:
            servers = [server for server in servers if "username" not in server]
        return 204, RawBody(headers=self._preflight(ENDPOINT_METHODS, servers))

    async def session_options(self, call: ApiCall) -> Response:
        return 204, RawBody(headers=self._preflight(SESSION_METHODS, []))

    def _preflight(self, methods: str, servers: list[dict[str, Any]]) -> tuple[tuple[str, str], ...]:
        return (
            ("Access-Control-Allow-Methods", methods),
            ("Access-Control-Allow-Headers", "Authorization, Content-Type, If-Match"),
            ("Access-Control-Max-Age", PREFLIGHT_MAX_AGE),
            *(("Link", link) for link in ice_server_links(servers)),
        )

    async def publish(self, call: ApiCall) -> Response:
        user = await self._publisher(call)
        if _content_type(call) != SDP:
            raise DenoiseCastError(415, "unsupported_media_type", f"Send the offer as {SDP}.")
        offer = _body_text(call, MAX_SDP, "The offer")
        session, answer = await self._sessions.publish(user, offer)
        location = f"{self._sessions.own_url}/whip/{user['username']}/{session.id}"
        headers = [("Location", location), ("ETag", session.etag)]
        headers += [("Link", link) for link in ice_server_links(self._ice_servers(user))]
        return 201, RawBody(answer.encode("utf-8"), SDP, tuple(headers))

    async def trickle(self, call: ApiCall) -> Response:
        session = await self._session(call)
        if _content_type(call) != SDPFRAG:
            raise DenoiseCastError(415, "unsupported_media_type", f"Send trickle-ICE fragments as {SDPFRAG}.")
        match = _header(call, b"if-match")
        if match is not None and match.strip() not in ("*", session.etag):
            raise DenoiseCastError(412, "etag_mismatch", f"If-Match does not name this ICE session ({session.etag}).")
        fragment = _body_text(call, MAX_SDPFRAG, "The fragment")
        await self._sessions.trickle(session, fragment)
        return 204, RawBody(headers=(("ETag", session.etag),))

    async def end(self, call: ApiCall) -> Response:
        session = await self._session(call)
        await self._sessions.end(session)
        return 200, RawBody()


_SDP_BODY = {"content": {SDP: {"schema": {"type": "string"}}}}
_BEARER: list[dict[str, list[str]]] = [{"publishToken": []}]
_PATH_PARAMS = [
    {"name": "username", "in": "path", "required": True, "schema": {"type": "string", "maxLength": 64}},
]
_SESSION_PARAMS = [
    *_PATH_PARAMS,
    {"name": "session", "in": "path", "required": True, "schema": {"type": "string", "maxLength": 64}},
]
_AUTH_ERRORS = {
    "401": error("No publish token, or not a valid one (WWW-Authenticate: Bearer)."),
    "403": error("The token's owner is not the user the URL names."),
}

#: The OpenAPI paths of these routes (web/openapi.py puts the document together).
OPENAPI_PATHS: dict[str, Any] = {
    "/whip/{username}": {
        "options": {
            "summary": "CORS preflight; Link headers name the STUN servers (and TURN, with credentials, to a valid publish token).",
            "security": [],
            "parameters": _PATH_PARAMS,
            "responses": {"204": {"description": "Allowed methods and headers, ICE servers in Link."}},
        },
        "post": {
            "summary": "WHIP (RFC 9725): go live with an SDP offer and a publish token (docs/whip.md).",
            "security": _BEARER,
            "parameters": _PATH_PARAMS,
            "requestBody": {"required": True, **_SDP_BODY},
            "responses": {
                "201": {
                    "description": "Live: the SDP answer; Location names the session, ETag its ICE session, Link the ICE servers.",
                    **_SDP_BODY,
                },
                "400": error("The offer is not usable SDP (bad_sdp)."),
                **_AUTH_ERRORS,
                "406": error("The offer sends no audio, or none in Opus or G.711 (no_audio, no_usable_codec)."),
                "409": error("You are already live (from the browser or another WHIP session)."),
                "413": error("The offer is too large."),
                "415": error("The body is not application/sdp."),
                "503": error("storage_full: the database's disk is full; retry after Retry-After seconds."),
            },
        },
    },
    "/whip/{username}/{session}": {
        "options": {
            "summary": "CORS preflight for the session resource.",
            "security": [],
            "parameters": _SESSION_PARAMS,
            "responses": {"204": {"description": "Allowed methods and headers."}},
        },
        "patch": {
            "summary": "Trickle ICE: more remote candidates, or end-of-candidates, as an SDP fragment (RFC 8840).",
            "security": _BEARER,
            "parameters": _SESSION_PARAMS,
            "requestBody": {"required": True, "content": {SDPFRAG: {"schema": {"type": "string"}}}},
            "responses": {
                "204": {"description": "Applied."},
                "400": error("Not a usable fragment (bad_sdpfrag)."),
                **_AUTH_ERRORS,
                "404": error("No such session (ended, unknown or someone else's)."),
                "412": error("If-Match names another ICE session."),
                "413": error("The fragment is too large."),
                "415": error("The body is not application/trickle-ice-sdpfrag."),
                "422": error("New ICE credentials: ICE restarts are not supported."),
            },
        },
        "delete": {
            "summary": "End the WHIP session: the broadcast stops, listeners are told, the recording completes.",
            "security": _BEARER,
            "parameters": _SESSION_PARAMS,
            "responses": {
                "200": {"description": "Ended."},
                **_AUTH_ERRORS,
                "404": error("No such session (ended, unknown or someone else's)."),
            },
        },
    },
}
