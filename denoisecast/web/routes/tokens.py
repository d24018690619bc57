"""
API routes for publish and listen tokens (docs/tokens.md): list yours,
make one (its secret is in the answer, once), revoke one.
"""

from __future__ import annotations

from typing import Any

from denoisecast.handlers.tokens import MAX_TOKENS, NAME_MAX, SCOPES, Tokens
from denoisecast.web.apidoc import COMMON_ERRORS, DATE_TIME, body, closed_object, error, ok, ref
from denoisecast.web.parse import Field
from denoisecast.web.resource import ApiCall, Response, Route

#: Longest name accepted before normalisation (a few characters may
#: combine into one under NFC, and surrounding spaces are trimmed).
NAME_FIELD_MAX = NAME_MAX * 4
NEW_TOKEN = {"name": Field(str, max_length=NAME_FIELD_MAX), "scope": Field(str, max_length=16)}


class TokenRoutes:
    def __init__(self, tokens: Tokens) -> None:
        self._tokens = tokens

    def routes(self) -> list[Route]:
        return [
            Route("GET", "/api/tokens", self.list_tokens),
            Route("POST", "/api/tokens", self.create),
            Route("DELETE", "/api/tokens/{id}", self.revoke),
        ]

    async def list_tokens(self, call: ApiCall) -> Response:
        return 200, {"tokens": await self._tokens.list(call.me), "limit": MAX_TOKENS}

    async def create(self, call: ApiCall) -> Response:
        fields = call.body(NEW_TOKEN)
        listed, secret = await self._tokens.create(call.me, fields["name"], fields["scope"])
        return 201, {"token": listed, "secret": secret}

    async def revoke(self, call: ApiCall) -> Response:
        await self._tokens.revoke(call.me, call.params["id"])
        return 204, None


TOKEN_SCHEMA = closed_object(
    id={"type": "string", "description": "What DELETE /api/tokens/{id} takes; not the token."},
    scope={"enum": list(SCOPES)},
    name={"type": "string", "maxLength": NAME_MAX},
    created_at=DATE_TIME,
    last_used_at={"type": ["string", "null"], "format": "date-time"},
)

#: The schemas these routes add to the document's components.
OPENAPI_SCHEMAS: dict[str, Any] = {
    "Token": TOKEN_SCHEMA,
    "TokenList": closed_object(
        tokens={"type": "array", "items": ref("Token")},
        limit={"type": "integer", "description": "How many tokens one user may hold."},
    ),
    "NewToken": closed_object(
        token=ref("Token"),
        secret={
            "type": "string",
            "description": "The token: shown this once, kept by the server only as a hash.",
        },
    ),
}

#: The OpenAPI paths of these routes (web/openapi.py puts the document together).
OPENAPI_PATHS: dict[str, Any] = {
    "/api/tokens": {
        "get": {
            "summary": "Your publish and listen tokens (never the tokens themselves).",
            "responses": {"200": ok("Your tokens, oldest first.", ref("TokenList")), **COMMON_ERRORS},
        },
        "post": {
            "summary": (
                "Make a token: publish (go live over WHIP) or listen (WHEP and the HTTP stream, "
                "to any of your friends). The answer holds the token once."
            ),
            "requestBody": body(
                closed_object(
                    name={"type": "string", "minLength": 1, "maxLength": NAME_FIELD_MAX,
                          "description": f"At most {NAME_MAX} characters once trimmed."},
                    scope={"enum": list(SCOPES)},
                )
            ),
            "responses": {
                "201": ok("Made; copy the secret now.", ref("NewToken")),
                "409": error(f"You already hold {MAX_TOKENS} tokens."),
                "429": error("You made too many tokens within the hour; see Retry-After."),
                **COMMON_ERRORS,
            },
        },
    },
    "/api/tokens/{id}": {
        "delete": {
            "summary": "Revoke one of your tokens: it stops working at once.",
            "parameters": [{"name": "id", "in": "path", "required": True, "schema": {"type": "string", "maxLength": 64}}],
            "responses": {
                "204": ok("Revoked."),
                "404": error("You have no such token."),
                **COMMON_ERRORS,
            },
        }
    },
}
