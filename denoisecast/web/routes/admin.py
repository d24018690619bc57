"""
API routes for administrators (``/api/admin/...``): accounts, storage use,
any user's recordings, live broadcasts.  Every route needs a logged-in
user whose account has the admin flag; anyone else gets 403 ``not_admin``.
"""

from __future__ import annotations

from typing import Any

from denoisecast.errors import forbidden
from denoisecast.handlers.admin import Administration
from denoisecast.handlers.passwords import PASSWORD_MAX, PASSWORD_MIN
from denoisecast.recordings.library import RecordingLibrary
from denoisecast.web.apidoc import COMMON_ERRORS, RECORDING_ID, USERNAME_PARAM, body, closed_object, error, ok, ref
from denoisecast.web.parse import Field
from denoisecast.web.resource import ApiCall, Response, Route
from denoisecast.web.routes.auth import credentials


def public_account(account: dict[str, Any]) -> dict[str, Any]:
    shown = {k: account[k] for k in ("username", "created_at", "is_admin", "disabled")}
    for extra in ("recordings", "bytes"):
        if extra in account:
            shown[extra] = account[extra]
    return shown


class AdminRoutes:
    def __init__(self, admin: Administration) -> None:
        self._admin = admin

    def routes(self) -> list[Route]:
        return [
            Route("GET", "/api/admin/users", self.users),
            Route("POST", "/api/admin/users", self.create_user),
            Route("POST", "/api/admin/users/{username}/password", self.reset_password),
            Route("POST", "/api/admin/users/{username}/admin", self.set_admin),
            Route("POST", "/api/admin/users/{username}/disabled", self.set_disabled),
            Route("GET", "/api/admin/users/{username}/recordings", self.recordings),
            Route("DELETE", "/api/admin/recordings/{id}", self.delete_recording),
            Route("GET", "/api/admin/broadcasts", self.broadcasts),
            Route("DELETE", "/api/admin/broadcasts/{username}", self.end_broadcast),
            Route("POST", "/api/admin/demo", self.demo),
        ]

    async def _actor(self, call: ApiCall) -> str:
        """The calling admin's name; 403 for anyone else."""
        if not await self._admin.is_admin(call.me["id"]):
            raise forbidden("not_admin", "Only administrators may do this.")
        return str(call.me["username"])

    async def users(self, call: ApiCall) -> Response:
        await self._actor(call)
        return 200, {"users": [public_account(a) for a in await self._admin.accounts()]}

    async def create_user(self, call: ApiCall) -> Response:
        actor = await self._actor(call)
        body = call.body(
            {
                "username": Field(str, max_length=64),
                "password": Field(str),
                "admin": Field(bool, required=False),
            }
        )
        account = await self._admin.create_user(
            actor, body["username"], body["password"], body.get("admin", False)
        )
        return 201, {"user": public_account(account)}

    async def reset_password(self, call: ApiCall) -> Response:
        actor = await self._actor(call)
        body = call.body({"password": Field(str)})
        await self._admin.reset_password(actor, call.params["username"], body["password"])
        return 204, None

    async def set_admin(self, call: ApiCall) -> Response:
        actor = await self._actor(call)
        body = call.body({"admin": Field(bool)})
        account = await self._admin.set_admin(actor, call.params["username"], body["admin"])
        return 200, {"user": public_account(account)}

    async def set_disabled(self, call: ApiCall) -> Response:
        actor = await self._actor(call)
        body = call.body({"disabled": Field(bool)})
        account = await self._admin.set_disabled(actor, call.params["username"], body["disabled"])
        return 200, {"user": public_account(account)}

    async def recordings(self, call: ApiCall) -> Response:
        await self._actor(call)
        rows = await self._admin.recordings(call.params["username"])
        return 200, {"recordings": [RecordingLibrary.public(row) for row in rows]}

    async def delete_recording(self, call: ApiCall) -> Response:
        actor = await self._actor(call)
        await self._admin.delete_recording(actor, call.params["id"])
        return 204, None

    async def broadcasts(self, call: ApiCall) -> Response:
        await self._actor(call)
        return 200, {"broadcasts": self._admin.broadcasts()}

    async def end_broadcast(self, call: ApiCall) -> Response:
        actor = await self._actor(call)
        await self._admin.end_broadcast(actor, call.params["username"])
        return 204, None

    async def demo(self, call: ApiCall) -> Response:
        actor = await self._actor(call)
        return 201, {"created": await self._admin.demo(actor)}


ADMIN_ERRORS = {
    **COMMON_ERRORS,
    "403": error("Not an administrator (not_admin), or the CSRF token or Origin check failed."),
}
NO_USER = error("No such user (no_such_user).")
ACCOUNT_ENVELOPE = closed_object(user=ref("AdminAccount"))


def flag_body(name: str) -> dict[str, Any]:
    return body(closed_object(**{name: {"type": "boolean"}}))


#: The OpenAPI paths of these routes (web/openapi.py puts the document together).

def _new_account() -> dict[str, Any]:
    """An admin's new account: the register body (its limits in one place) and whether it is an admin."""
    schema = credentials()
    schema["properties"]["admin"] = {"type": "boolean", "default": False}
    return schema


OPENAPI_PATHS: dict[str, Any] = {
    "/api/admin/users": {
        "get": {
            "summary": "Admins only: every account with its role, state and storage use.",
            "responses": {
                "200": ok("The accounts, by name.", closed_object(users={"type": "array", "items": ref("AdminAccount")})),
                **ADMIN_ERRORS,
            },
        },
        "post": {
            "summary": "Admins only: create an account (the password rules apply).",
            "requestBody": body(_new_account()),
            "responses": {
                "201": ok("Created.", ACCOUNT_ENVELOPE),
                "409": error("The username is taken."),
                **ADMIN_ERRORS,
            },
        },
    },
    "/api/admin/users/{username}/password": {
        "post": {
            "summary": "Admins only: set a new password; every session of the account ends, its sockets close.",
            "parameters": [USERNAME_PARAM],
            "requestBody": body(closed_object(password={"type": "string", "minLength": PASSWORD_MIN, "maxLength": PASSWORD_MAX})),
            "responses": {"204": ok("Reset."), "404": NO_USER, **ADMIN_ERRORS},
        }
    },
    "/api/admin/users/{username}/admin": {
        "post": {
            "summary": "Admins only: give or take the admin role.",
            "parameters": [USERNAME_PARAM],
            "requestBody": flag_body("admin"),
            "responses": {"200": ok("The account.", ACCOUNT_ENVELOPE), "404": NO_USER, **ADMIN_ERRORS},
        }
    },
    "/api/admin/users/{username}/disabled": {
        "post": {
            "summary": (
                "Admins only: disable an account (its sessions end, its sockets close and its "
                "broadcast ends at once; it cannot log in: 403 account_disabled) or enable it."
            ),
            "parameters": [USERNAME_PARAM],
            "requestBody": flag_body("disabled"),
            "responses": {"200": ok("The account.", ACCOUNT_ENVELOPE), "404": NO_USER, **ADMIN_ERRORS},
        }
    },
    "/api/admin/users/{username}/recordings": {
        "get": {
            "summary": "Admins only: all of a user's recordings, newest first.",
            "parameters": [USERNAME_PARAM],
            "responses": {
                "200": ok("The recordings.", closed_object(recordings={"type": "array", "items": ref("Recording")})),
                "404": NO_USER,
                **ADMIN_ERRORS,
            },
        }
    },
    "/api/admin/recordings/{id}": {
        "delete": {
            "summary": "Admins only: delete any recording, its row and both files.",
            "parameters": [RECORDING_ID],
            "responses": {"204": ok("Deleted."), "404": error("No such recording."), **ADMIN_ERRORS},
        }
    },
    "/api/admin/broadcasts": {
        "get": {
            "summary": "Admins only: the broadcasts live on every node.",
            "responses": {
                "200": ok("The broadcasts.", closed_object(broadcasts={"type": "array", "items": ref("StreamStatus")})),
                **ADMIN_ERRORS,
            },
        }
    },
    "/api/admin/broadcasts/{username}": {
        "delete": {
            "summary": "Admins only: end a user's live broadcast (its recording is finalised).",
            "parameters": [USERNAME_PARAM],
            "responses": {
                "204": ok("Ended."),
                "404": error("No such user, or not live (not_live)."),
                **ADMIN_ERRORS,
            },
        }
    },
    "/api/admin/demo": {
        "post": {
            "summary": (
                "Admins only: create the demo accounts alice, bob, carol and dave (password "
                "try-denoisecast) with friendships among them; existing names are left alone."
            ),
            "responses": {
                "201": ok("The names created.", closed_object(created={"type": "array", "items": {"type": "string"}})),
                **ADMIN_ERRORS,
            },
        }
    },
}
