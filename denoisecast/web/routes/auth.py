"""
API routes for accounts: register, log in, log out, who am I, password.
"""

from __future__ import annotations

from typing import Any

from twisted.web.server import Request

from denoisecast.handlers.accounts import SESSION_LIFETIME, Accounts
from denoisecast.handlers.loginguard import DEVICE_LIFETIME_SECONDS
from denoisecast.handlers.passwords import PASSWORD_MAX, PASSWORD_MIN
from denoisecast.protocols.messages import USERNAME_MAX
from denoisecast.storage.store import User
from denoisecast.web.apidoc import COMMON_ERRORS, PUBLIC_ERRORS, USERNAME_SCHEMA_PATTERN, body, error, ok, ref
from denoisecast.web.forwarded import client_address
from denoisecast.web.parse import Field
from denoisecast.web.resource import (
    SESSION_COOKIE,
    ApiCall,
    Response,
    Route,
    csrf_token,
    secure_cookie,
)

CREDENTIALS = {"username": Field(str, max_length=USERNAME_MAX), "password": Field(str, max_length=PASSWORD_MAX)}


def public_user(user: User) -> dict[str, Any]:
    return {"username": user["username"], "created_at": user["created_at"]}


def set_session(request: Request, token: str) -> None:
    secure_cookie(
        request,
        SESSION_COOKIE,
        token.encode(),
        httpOnly=True,
        sameSite="lax",
        max_age=str(int(SESSION_LIFETIME.total_seconds())),
    )


def clear_session(request: Request) -> None:
    secure_cookie(request, SESSION_COOKIE, b"", httpOnly=True, sameSite="lax", max_age="0")


#: Marks a browser as known to the accounts that logged in from it
#: (L{denoisecast.handlers.loginguard}), for DEVICE_LIFETIME_SECONDS, renewed at each login.
DEVICE_COOKIE = b"dc_device"


def device_token(request: Request) -> str | None:
    raw = request.getCookie(DEVICE_COOKIE)
    if not raw or len(raw) > 128:
        return None
    return raw.decode("ascii", "replace")


def set_device(request: Request, token: str) -> None:
    secure_cookie(
        request,
        DEVICE_COOKIE,
        token.encode(),
        httpOnly=True,
        sameSite="lax",
        max_age=str(DEVICE_LIFETIME_SECONDS),
    )


class AuthRoutes:
    def __init__(self, accounts: Accounts) -> None:
        self._accounts = accounts

    def routes(self) -> list[Route]:
        return [
            Route("GET", "/api/csrf", self.csrf, auth=False),
            Route("POST", "/api/auth/register", self.register, auth=False),
            Route("POST", "/api/auth/login", self.login, auth=False),
            Route("POST", "/api/auth/logout", self.logout),
            Route("POST", "/api/auth/password", self.change_password),
            Route("GET", "/api/me", self.me),
        ]

    async def csrf(self, call: ApiCall) -> Response:
        return 200, {"csrf_token": csrf_token(call.request)}

    async def register(self, call: ApiCall) -> Response:
        body = call.body(CREDENTIALS)
        done = await self._accounts.register(
            body["username"], body["password"], client_address(call.request)
        )
        set_session(call.request, done.session_token)
        set_device(call.request, done.device_token)
        return 201, {"user": public_user(done.user)}

    async def login(self, call: ApiCall) -> Response:
        body = call.body(CREDENTIALS)
        done = await self._accounts.login(
            body["username"],
            body["password"],
            client_address(call.request),
            device_token(call.request),
        )
        set_session(call.request, done.session_token)
        set_device(call.request, done.device_token)
        return 200, {"user": public_user(done.user)}

    async def logout(self, call: ApiCall) -> Response:
        assert call.session_token is not None
        await self._accounts.logout(call.session_token)
        clear_session(call.request)
        return 204, None

    async def change_password(self, call: ApiCall) -> Response:
        body = call.body(
            {"current_password": Field(str), "new_password": Field(str)}
        )
        token = await self._accounts.change_password(
            call.me, body["current_password"], body["new_password"], call.session_token
        )
        set_session(call.request, token)
        return 204, None

    async def me(self, call: ApiCall) -> Response:
        return 200, {"user": public_user(call.me)}


def credentials() -> dict[str, Any]:
    """The register and login body as the document states it: the same limits as the accounts' own checks."""
    return {
        "type": "object",
        "additionalProperties": False,
        "required": ["username", "password"],
        "properties": {
            "username": {"type": "string", "pattern": USERNAME_SCHEMA_PATTERN},
            "password": {"type": "string", "minLength": PASSWORD_MIN, "maxLength": PASSWORD_MAX},
        },
    }


#: The OpenAPI paths of these routes (web/openapi.py puts the document together).
OPENAPI_PATHS: dict[str, Any] = {
    "/api/csrf": {
        "get": {
            "summary": "The CSRF token to repeat in the X-CSRF-Token header; also set as the dc_csrf cookie.",
            "security": [],
            "responses": {"200": ok("The token.", ref("CsrfToken"))},
        }
    },
    "/api/auth/register": {
        "post": {
            "summary": "Create an account and log in.",
            "security": [],
            "requestBody": body(credentials()),
            "responses": {
                "201": ok("Registered; the dc_session cookie is set.", ref("UserEnvelope")),
                "409": error("The username is taken."),
                "429": error("Too many registrations from this address; see Retry-After."),
                "503": error("Too many passwords being checked; see Retry-After (busy)."),
                **PUBLIC_ERRORS,
                "400": error(
                    "Malformed input, an invalid username, or a refused password: shorter "
                    "than 8 characters (weak_password), the username itself, or one of the "
                    "commonest passwords (common_password)."
                ),
            },
        }
    },
    "/api/auth/login": {
        "post": {
            "summary": "Log in; the same error for unknown users and wrong passwords.",
            "security": [],
            "requestBody": body(credentials()),
            "responses": {
                "200": ok("Logged in; the dc_session cookie is set.", ref("UserEnvelope")),
                "401": error("Wrong username or password."),
                "429": error("Too many failed logins; see Retry-After."),
                "503": error("Too many passwords being checked; see Retry-After (busy)."),
                **PUBLIC_ERRORS,
            },
        }
    },
    "/api/auth/logout": {
        "post": {
            "summary": "End this session; its WebSockets close with code 4001.",
            "responses": {"204": ok("Logged out."), **COMMON_ERRORS},
        }
    },
    "/api/auth/password": {
        "post": {
            "summary": (
                "Change the password; ends every session and opens a new one for this client. "
                "The WebSockets of the other sessions close with code 4001."
            ),
            "requestBody": body(
                {
                    "type": "object",
                    "additionalProperties": False,
                    "required": ["current_password", "new_password"],
                    "properties": {
                        "current_password": {"type": "string"},
                        "new_password": {"type": "string", "minLength": PASSWORD_MIN, "maxLength": PASSWORD_MAX},
                    },
                }
            ),
            "responses": {
                "204": ok("Changed."),
                **COMMON_ERRORS,
                "400": error(
                    "Malformed input, or a refused new password (weak_password, common_password)."
                ),
                "403": error("The current password is wrong (wrong_password), or CSRF/Origin failed."),
                "429": error("Too many wrong current passwords; see Retry-After."),
                "503": error("Too many passwords being checked; see Retry-After (busy)."),
            },
        }
    },
    "/api/me": {
        "get": {
            "summary": "The logged-in user.",
            "responses": {"200": ok("The user.", ref("UserEnvelope")), **COMMON_ERRORS},
        }
    },
}
