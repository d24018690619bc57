"""
Administration: what an operator does to accounts, broadcasts and
recordings, shared by the admin JSON API and the ``denoisecast-admin``
command.

Every action that changes something writes one audit event (namespace
``denoisecast.audit``, fields ``action``, ``actor``, ``target`` and the
action's own), so the log says who did what to whom.  Ending an account's
sessions also closes its WebSockets at once when this process holds them;
another process's sockets close at that server's next session sweep
(L{denoisecast.handlers.sessionsweep}).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from denoisecast.errors import DenoiseCastError, not_found
from denoisecast.handlers.accounts import Accounts, validate_username
from denoisecast.handlers.passwords import validate_password
from denoisecast.recordings.recorder import recording_paths
from denoisecast.runtime.logs import logger
from denoisecast.storage.admin import AdminStore
from denoisecast.storage.store import Store

if TYPE_CHECKING:
    pass

audit = logger("denoisecast.audit")

#: The accounts ``demo`` creates, and who is friends with whom.
DEMO_USERS = ("alice", "bob", "carol", "dave")
DEMO_FRIENDS = (("alice", "bob"), ("alice", "carol"), ("bob", "carol"), ("carol", "dave"))
DEMO_PASSWORD = "try-denoisecast"


@dataclass
class LiveControl:
    """
    What administration needs from the live side of a running server (not
    present in the ``denoisecast-admin`` process).
    """

    broadcasts: Callable[[], list[dict[str, Any]]]
    end_broadcast: Callable[[int, str], Awaitable[bool]]
    close_sockets: Callable[[int, str], int]


class Administration:
    log = logger()

    def __init__(
        self,
        store: Store,
        admin_store: AdminStore,
        accounts: Accounts,
        data_dir: Path,
        clock: Callable[[], datetime],
        live: LiveControl | None = None,
        active_recordings: Callable[[str], Any] | None = None,
    ) -> None:
        self._store = store
        self._admin = admin_store
        self._accounts = accounts
        self._data_dir = data_dir
        self._now = clock
        self._live = live
        self._active = active_recordings

    def _audit(self, action: str, actor: str, target: str, **details: Any) -> None:
        audit.info(
            "Admin {actor} did {action} on {target}",
            action=action,
            actor=actor,
            target=target,
            audit=True,
            **details,
        )

    async def account(self, username: str) -> dict[str, Any]:
        found = await self._admin.get_account(username)
        if found is None:
            raise not_found("no_such_user", f"No user {username!r}.")
        return found

    async def is_admin(self, user_id: int) -> bool:
        return await self._admin.is_admin(user_id)

    async def accounts(self) -> list[dict[str, Any]]:
        """Every account with its admin and disabled flags and storage use."""
        return await self._admin.list_accounts()

    async def create_user(self, actor: str, username: str, password: str, admin: bool = False) -> dict[str, Any]:
        validate_username(username)
        validate_password(password, username)
        password_hash = await self._accounts.hash_password(password)
        await self._accounts.create_account(username, password_hash)
        account = await self.account(username)
        if admin:
            await self._admin.set_admin(account["id"], True)
            account["is_admin"] = True
        self._audit("create_user", actor, username, admin=admin)
        return account

    def _end_sockets(self, user_id: int, reason: str) -> int:
        return self._live.close_sockets(user_id, reason) if self._live is not None else 0

    async def reset_password(self, actor: str, username: str, password: str) -> None:
        """
        Set a new password; every session of the account ends (and its
        sockets with them).
        """
        account = await self.account(username)
        validate_password(password, account["username"])
        password_hash = await self._accounts.hash_password(password)
        await self._store.set_password(account["id"], password_hash, self._now())
        closed = self._end_sockets(account["id"], "Your password was reset.")
        self._audit("reset_password", actor, account["username"], sockets_closed=closed)

    async def set_admin(self, actor: str, username: str, admin: bool) -> dict[str, Any]:
        account = await self.account(username)
        await self._admin.set_admin(account["id"], admin)
        self._audit("make_admin" if admin else "unmake_admin", actor, account["username"])
        return {**account, "is_admin": admin}

    async def set_disabled(self, actor: str, username: str, disabled: bool) -> dict[str, Any]:
        """
        Disable an account (its sessions end, its sockets close, its
        broadcast ends, and it cannot log in) or enable it again.
        """
        account = await self.account(username)
        sessions = await self._admin.set_disabled(account["id"], self._now() if disabled else None)
        closed = 0
        ended = False
        if disabled and self._live is not None:
            closed = self._live.close_sockets(account["id"], "This account has been disabled.")
            ended = await self._live.end_broadcast(account["id"], "account disabled")
        self._audit(
            "disable" if disabled else "enable",
            actor,
            account["username"],
            sessions_ended=sessions,
            sockets_closed=closed,
            broadcast_ended=ended,
        )
        return {**account, "disabled": disabled}

    async def recordings(self, username: str) -> list[dict[str, Any]]:
        account = await self.account(username)
        return await self._admin.user_recordings(account["id"])

    async def delete_recording(self, actor: str, public_id: str) -> dict[str, Any]:
        """
        Delete any user's recording: the row and both files (a recording
        still being written is closed first).
        """
        row = await self._admin.get_recording(public_id)
        if row is None:
            raise not_found("no_such_recording", "No such recording.")
        active = self._active(public_id) if self._active is not None else None
        if active is not None:
            await active.finish("complete")
        await self._store.delete_recording(public_id, row["user_id"])
        for path in recording_paths(self._data_dir, row["user_id"], row["public_id"]):
            path.unlink(missing_ok=True)
        self._audit("delete_recording", actor, row["owner"], recording=public_id)
        return row

    def broadcasts(self) -> list[dict[str, Any]]:
        if self._live is None:
            raise DenoiseCastError(503, "not_serving", "Live broadcasts are only known to a running server.")
        return self._live.broadcasts()

    async def end_broadcast(self, actor: str, username: str) -> None:
        account = await self.account(username)
        if self._live is None:
            raise DenoiseCastError(503, "not_serving", "Live broadcasts are only known to a running server.")
        if not await self._live.end_broadcast(account["id"], "ended by an administrator"):
            raise not_found("not_live", f"{account['username']} is not live.")
        self._audit("end_broadcast", actor, account["username"])

    async def demo(self, actor: str) -> list[str]:
        """
        Create the demo accounts that do not exist yet, with friendships
        among them; return the names created (password ``DEMO_PASSWORD``).
        """
        password_hash = await self._accounts.hash_password(DEMO_PASSWORD)
        created = await self._admin.create_demo(
            [(name, password_hash) for name in DEMO_USERS], list(DEMO_FRIENDS), self._now()
        )
        self._audit("demo", actor, ",".join(created) or "-", created=created)
        return created
