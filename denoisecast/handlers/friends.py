"""
Friendship: mutual, requested by one side and accepted by the other.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from denoisecast.errors import bad_request, conflict, not_found
from denoisecast.runtime.logs import logger
from denoisecast.storage.store import (
    AlreadyFriends,
    NoSuchRequest,
    NotFriends,
    RequestExists,
    Store,
    User,
)

SEARCH_PAGE_MAX = 50


class Friends:
    log = logger()

    def __init__(self, store: Store, clock: Callable[[], datetime]) -> None:
        self._store = store
        self._now = clock
        #: Called with (user, user, are_friends) after a friendship begins or ends.
        self.observers: list[Callable[[User, User, bool], None]] = []
        #: Called with (sender, receiver, state) when a request is made
        #: ("pending"), "accepted", "rejected" or "cancelled".
        self.request_observers: list[Callable[[User, User, str], None]] = []

    def _notify(self, a: User, b: User, friends: bool) -> None:
        for observer in self.observers:
            try:
                observer(a, b, friends)
            except Exception:
                self.log.failure("Friendship observer failed")

    def _notify_request(self, sender: User, receiver: User, state: str) -> None:
        for observer in self.request_observers:
            try:
                observer(sender, receiver, state)
            except Exception:
                self.log.failure("Friend request observer failed")

    async def _other(self, me: User, username: str) -> User:
        other = await self._store.get_user_by_name(username)
        if other is None:
            raise not_found("no_such_user", f"There is no user {username!r}.")
        if other["id"] == me["id"]:
            raise bad_request("You cannot befriend yourself.", "cannot_befriend_self")
        return other

    async def search(
        self, me: User, prefix: str, after: str | None, limit: int
    ) -> tuple[list[dict[str, Any]], str | None]:
        """
        One page of users whose name starts with C{prefix}, and the cursor
        for the next page (C{None} on the last one).
        """
        found = await self._store.search_users(me["id"], prefix, after, limit + 1)
        more = len(found) > limit
        page = found[:limit]
        return page, (page[-1]["username"] if more else None)

    async def send_request(self, me: User, username: str) -> str:
        other = await self._other(me, username)
        try:
            status = await self._store.send_request(me["id"], other["id"], self._now())
        except AlreadyFriends:
            raise conflict("already_friends", f"You and {other['username']} are already friends.") from None
        except RequestExists:
            raise conflict("request_exists", f"You already asked {other['username']}.") from None
        self.log.info(
            "Friend request {sender} -> {receiver}: {status}",
            sender=me["username"],
            receiver=other["username"],
            status=status,
        )
        if status == "friends":
            # The other had asked first: their request is what became a friendship.
            self._notify_request(other, me, "accepted")
            self._notify(me, other, True)
        else:
            self._notify_request(me, other, "pending")
        return status

    async def accept(self, me: User, username: str) -> None:
        other = await self._other(me, username)
        try:
            await self._store.accept_request(me["id"], other["id"], self._now())
        except NoSuchRequest:
            raise not_found("no_such_request", f"{other['username']} has not asked you.") from None
        self._notify_request(other, me, "accepted")
        self._notify(me, other, True)

    async def reject(self, me: User, username: str) -> None:
        other = await self._other(me, username)
        try:
            await self._store.reject_request(me["id"], other["id"])
        except NoSuchRequest:
            raise not_found("no_such_request", f"{other['username']} has not asked you.") from None
        self._notify_request(other, me, "rejected")

    async def cancel(self, me: User, username: str) -> None:
        other = await self._other(me, username)
        try:
            await self._store.cancel_request(me["id"], other["id"])
        except NoSuchRequest:
            raise not_found("no_such_request", f"You have not asked {other['username']}.") from None
        self._notify_request(me, other, "cancelled")

    async def unfriend(self, me: User, username: str) -> None:
        other = await self._other(me, username)
        try:
            await self._store.unfriend(me["id"], other["id"])
        except NotFriends:
            raise not_found("not_friends", f"You and {other['username']} are not friends.") from None
        self._notify(me, other, False)

    async def list_friends(self, me: User) -> list[dict[str, Any]]:
        return await self._store.list_friends(me["id"])

    async def list_requests(self, me: User) -> dict[str, list[dict[str, Any]]]:
        return await self._store.list_requests(me["id"])
