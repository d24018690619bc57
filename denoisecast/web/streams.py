"""
API routes for live streams: a stream's status, and stopping one's own.

Going live and listening need WebRTC offers and answers, so they happen on
the WebSocket (docs/live.md); these routes are for clients that only need
to look or to stop.
"""

from __future__ import annotations

from typing import Any

from denoisecast.errors import forbidden, not_found
from denoisecast.live.manager import LiveManager
from denoisecast.storage.store import Store, User
from denoisecast.web.resource import ApiCall, Response, Route


class StreamRoutes:
    def __init__(self, store: Store, live: LiveManager) -> None:
        self._store = store
        self._live = live

    def routes(self) -> list[Route]:
        return [
            Route("GET", "/api/streams/{username}", self.status),
            Route("DELETE", "/api/streams/{username}", self.stop),
        ]

    async def _visible(self, me: User, username: str) -> User:
        other = await self._store.get_user_by_name(username)
        if other is not None and (
            other["id"] == me["id"] or await self._store.are_friends(me["id"], other["id"])
        ):
            return other
        # Unknown users and non-friends look the same.
        raise forbidden("not_friends", "Only friends can see a stream.")

    async def status(self, call: ApiCall) -> Response:
        other = await self._visible(call.me, call.params["username"])
        live = self._live.live_status(other["id"])
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

    async def stop(self, call: ApiCall) -> Response:
        if call.params["username"].lower() != call.me["username"].lower():
            raise forbidden("not_yours", "You can only stop your own stream.")
        if self._live.live_status(call.me["id"]) is None:
            raise not_found("not_live", "You are not live.")
        await self._live.stop(call.me, "stopped")
        return 204, None
