"""
API routes for live streams: a stream's status, going live, listening and
stopping, for clients without the WebSocket (docs/live.md).

The browser app signals on the WebSocket, which also carries presence and
tells a publisher or listener when their stream ends.  These routes take
the same WebRTC offer and give the same answer in one request each, for
clients that only have HTTP (a command-line publisher, a player); such a
stream ends on DELETE, on ICE/DTLS failure or on silence.
"""

from __future__ import annotations

from typing import Any

from denoisecast.errors import bad_request, forbidden, not_found
from denoisecast.handlers.access import Access
from denoisecast.live.manager import LiveManager
from denoisecast.protocols.messages import MAX_SDP, SIGNALS
from denoisecast.storage.store import User
from denoisecast.web.apidoc import COMMON_ERRORS, USERNAME_PARAM, body, error, ok, ref
from denoisecast.web.parse import Field
from denoisecast.web.resource import ApiCall, Response, Route

OFFER = {"sdp": Field(str, max_length=MAX_SDP)}
LISTEN_OFFER = {**OFFER, "signal": Field(str, required=False, max_length=16)}


class StreamRoutes:
    def __init__(self, access: Access, live: LiveManager) -> None:
        self._access = access
        self._live = live

    def routes(self) -> list[Route]:
        return [
            Route("GET", "/api/streams/{username}", self.status),
            Route("POST", "/api/streams/{username}", self.publish),
            Route("DELETE", "/api/streams/{username}", self.stop),
            Route("POST", "/api/streams/{username}/listen", self.listen),
            Route("DELETE", "/api/streams/{username}/listen", self.unlisten),
        ]

    def _own(self, call: ApiCall, what: str) -> None:
        if call.params["username"].lower() != call.me["username"].lower():
            raise forbidden("not_yours", f"You can only {what} your own stream.")

    async def _visible(self, me: User, username: str) -> User:
        other = await self._access.visible(me, username)
        if other is None:
            # Unknown users and non-friends look the same.
            raise forbidden("not_friends", "Only friends can see a stream.")
        return other

    async def status(self, call: ApiCall) -> Response:
        other = await self._visible(call.me, call.params["username"])
        live = self._live.status_anywhere(other["id"])
        body: dict[str, Any] = {
            "user": other["username"],
            "live": live is not None,
            "live_since": None,
            "denoise": None,
            "atten_lim_db": None,
            "listeners": 0,
        }
        if live is not None:
            body.update(live)
        return 200, body

    async def publish(self, call: ApiCall) -> Response:
        self._own(call, "publish")
        body = call.body(OFFER)
        reply = await self._live.publish(call.me, None, body["sdp"])
        return 201, {"sdp": reply["sdp"], "stream": reply["stream"]}

    async def stop(self, call: ApiCall) -> Response:
        self._own(call, "stop")
        if self._live.status_anywhere(call.me["id"]) is None:
            raise not_found("not_live", "You are not live.")
        await self._live.stop(call.me, "stopped")
        return 204, None

    async def listen(self, call: ApiCall) -> Response:
        body = call.body(LISTEN_OFFER)
        signal = body.get("signal", "denoised")
        if signal not in SIGNALS:
            raise bad_request(f"signal is one of {', '.join(SIGNALS)}.", "invalid_field")
        reply = await self._live.listen(call.me, None, call.params["username"], body["sdp"], signal)
        return 201, {"sdp": reply["sdp"], "signal": signal, "stream": reply["stream"]}

    async def unlisten(self, call: ApiCall) -> Response:
        await self._live.unlisten(call.me, call.params["username"])
        return 204, None


#: The OpenAPI paths of these routes (web/openapi.py puts the document together).
OPENAPI_PATHS: dict[str, Any] = {
    "/api/streams/{username}": {
        "get": {
            "summary": "Whether a user (yourself or a friend) is live, since when, with which denoise setting and how many listeners.",
            "parameters": [USERNAME_PARAM],
            "responses": {
                "200": ok("The stream's status.", ref("StreamStatus")),
                **COMMON_ERRORS,
            },
        },
        "post": {
            "summary": "Go live without the WebSocket: send a WebRTC offer with your microphone, get the server's answer (docs/live.md).",
            "parameters": [USERNAME_PARAM],
            "requestBody": body(ref("Offer")),
            "responses": {
                "201": ok("Live; apply the answer.", ref("PublishAnswer")),
                "409": error("You are already live."),
                **COMMON_ERRORS,
            },
        },
        "delete": {
            "summary": "Stop your own live stream (listeners are told).",
            "parameters": [USERNAME_PARAM],
            "responses": {
                "204": ok("Stopped."),
                "404": error("You are not live."),
                **COMMON_ERRORS,
            },
        },
    },
    "/api/streams/{username}/listen": {
        "post": {
            "summary": "Listen to a friend's live stream without the WebSocket: send a WebRTC offer that receives audio, get the answer.",
            "parameters": [USERNAME_PARAM],
            "requestBody": body(ref("ListenOffer")),
            "responses": {
                "201": ok("Listening; apply the answer.", ref("ListenAnswer")),
                "404": error("Not live."),
                **COMMON_ERRORS,
            },
        },
        "delete": {
            "summary": "Stop listening.",
            "parameters": [USERNAME_PARAM],
            "responses": {
                "204": ok("Stopped listening."),
                "404": error("You are not listening to them."),
                **COMMON_ERRORS,
            },
        },
    },
}
