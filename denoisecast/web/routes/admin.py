"""
API routes for administrators (``/api/admin/...``): accounts, storage use,
any user's recordings, live broadcasts.  Every route needs a logged-in
user whose account has the admin flag; anyone else gets 403 ``not_admin``.
"""

from __future__ import annotations

from typing import Any

from denoisecast.admin import Administration
from denoisecast.errors import forbidden
from denoisecast.recordings.library import RecordingLibrary
from denoisecast.web.parse import Field
from denoisecast.web.resource import ApiCall, Response, Route


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
