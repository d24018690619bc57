"""
API routes for finding people and for friendship.
"""

from __future__ import annotations

from typing import Any

from denoisecast.handlers.friends import SEARCH_PAGE_MAX, Friends
from denoisecast.protocols.messages import USERNAME_MAX
from denoisecast.web.apidoc import COMMON_ERRORS, USERNAME_PARAM, body, error, ok, ref
from denoisecast.web.parse import Field, query_int, query_string
from denoisecast.web.resource import ApiCall, Response, Route
from denoisecast.web.routes.auth import public_user

#: Longest search prefix and "after" cursor (a username is at most 32 characters).
SEARCH_QUERY_MAX = 32
#: Users in a search page when the client names no limit.
PAGE_DEFAULT = 20

class FriendRoutes:
    def __init__(self, friends: Friends) -> None:
        self._friends = friends

    def routes(self) -> list[Route]:
        return [
            Route("GET", "/api/users", self.search),
            Route("GET", "/api/friends", self.list_friends),
            Route("DELETE", "/api/friends/{username}", self.unfriend),
            Route("GET", "/api/friends/requests", self.list_requests),
            Route("POST", "/api/friends/requests", self.send_request),
            Route("DELETE", "/api/friends/requests/{username}", self.cancel),
            Route("POST", "/api/friends/requests/{username}/accept", self.accept),
            Route("POST", "/api/friends/requests/{username}/reject", self.reject),
        ]

    async def search(self, call: ApiCall) -> Response:
        prefix = query_string(call.request, "q", "", max_length=SEARCH_QUERY_MAX) or ""
        after = query_string(call.request, "after", None, max_length=SEARCH_QUERY_MAX)
        limit = query_int(call.request, "limit", PAGE_DEFAULT, 1, SEARCH_PAGE_MAX)
        page, cursor = await self._friends.search(call.me, prefix, after, limit)
        return 200, {
            "users": [
                {**public_user(user), "relationship": user["relationship"]} for user in page
            ],
            "next": cursor,
        }

    async def list_friends(self, call: ApiCall) -> Response:
        friends = await self._friends.list_friends(call.me)
        return 200, {
            "friends": [{**public_user(f), "since": f["since"]} for f in friends]
        }

    async def list_requests(self, call: ApiCall) -> Response:
        requests = await self._friends.list_requests(call.me)
        return 200, {
            direction: [{**public_user(r), "sent_at": r["sent_at"]} for r in listed]
            for direction, listed in requests.items()
        }

    async def send_request(self, call: ApiCall) -> Response:
        body = call.body({"username": Field(str, max_length=USERNAME_MAX)})
        status = await self._friends.send_request(call.me, body["username"])
        return (201 if status == "requested" else 200), {"status": status}

    async def accept(self, call: ApiCall) -> Response:
        await self._friends.accept(call.me, call.params["username"])
        return 200, {"status": "friends"}

    async def reject(self, call: ApiCall) -> Response:
        await self._friends.reject(call.me, call.params["username"])
        return 204, None

    async def cancel(self, call: ApiCall) -> Response:
        await self._friends.cancel(call.me, call.params["username"])
        return 204, None

    async def unfriend(self, call: ApiCall) -> Response:
        await self._friends.unfriend(call.me, call.params["username"])
        return 204, None


#: The OpenAPI paths of these routes (web/openapi.py puts the document together).
OPENAPI_PATHS: dict[str, Any] = {
    "/api/users": {
        "get": {
            "summary": "Search users by case-insensitive name prefix; never includes yourself.",
            "parameters": [
                {"name": "q", "in": "query", "schema": {"type": "string", "maxLength": SEARCH_QUERY_MAX}},
                {"name": "after", "in": "query", "schema": {"type": "string", "maxLength": SEARCH_QUERY_MAX}},
                {
                    "name": "limit",
                    "in": "query",
                    "schema": {"type": "integer", "minimum": 1, "maximum": SEARCH_PAGE_MAX, "default": PAGE_DEFAULT},
                },
            ],
            "responses": {"200": ok("One page of users.", ref("SearchResult")), **COMMON_ERRORS},
        }
    },
    "/api/friends": {
        "get": {
            "summary": "Your friends.",
            "responses": {"200": ok("Friends.", ref("FriendList")), **COMMON_ERRORS},
        }
    },
    "/api/friends/{username}": {
        "delete": {
            "summary": "Unfriend someone.",
            "parameters": [USERNAME_PARAM],
            "responses": {
                "204": ok("No longer friends."),
                "404": error("No such user, or not friends."),
                **COMMON_ERRORS,
            },
        }
    },
    "/api/friends/requests": {
        "get": {
            "summary": "Incoming and outgoing friend requests.",
            "responses": {"200": ok("Requests.", ref("RequestList")), **COMMON_ERRORS},
        },
        "post": {
            "summary": "Ask someone to be friends; if they already asked you, you become friends.",
            "requestBody": body(
                {
                    "type": "object",
                    "additionalProperties": False,
                    "required": ["username"],
                    "properties": {"username": {"type": "string"}},
                }
            ),
            "responses": {
                "201": ok("Requested.", ref("FriendStatus")),
                "200": ok("They had asked you: now friends.", ref("FriendStatus")),
                "404": error("No such user."),
                "409": error("Already friends, or already requested."),
                **COMMON_ERRORS,
            },
        },
    },
    "/api/friends/requests/{username}": {
        "delete": {
            "summary": "Cancel your request to someone.",
            "parameters": [USERNAME_PARAM],
            "responses": {
                "204": ok("Cancelled."),
                "404": error("No such user or request."),
                **COMMON_ERRORS,
            },
        }
    },
    "/api/friends/requests/{username}/accept": {
        "post": {
            "summary": "Accept someone's request.",
            "parameters": [USERNAME_PARAM],
            "responses": {
                "200": ok("Now friends.", ref("FriendStatus")),
                "404": error("No such user or request."),
                **COMMON_ERRORS,
            },
        }
    },
    "/api/friends/requests/{username}/reject": {
        "post": {
            "summary": "Reject someone's request.",
            "parameters": [USERNAME_PARAM],
            "responses": {
                "204": ok("Rejected."),
                "404": error("No such user or request."),
                **COMMON_ERRORS,
            },
        }
    },
}
