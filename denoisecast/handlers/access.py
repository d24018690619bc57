"""
Who may see whom, and who may listen to whom: the one rule.

A user sees their own things and their friends' (a stream's status, the
recordings); a user listens only to a friend's broadcast (never their
own).  The stream routes and the live manager ask L{Access}; the store
applies the same C{can_see} as a SQL condition (``storage/store.py``,
``_visible_to``), because listing recordings filters and pages in the
database.  Unknown names and strangers get the same answer, so no one
learns whether a username exists.
"""

from __future__ import annotations

from denoisecast.storage.store import Store, User


def can_see(viewer_id: int, owner_id: int, friends: bool) -> bool:
    """Whether C{viewer_id} sees C{owner_id}'s stream status and recordings."""
    return viewer_id == owner_id or friends


def can_listen(viewer_id: int, owner_id: int, friends: bool) -> bool:
    """Whether C{viewer_id} may listen to C{owner_id}'s broadcast."""
    return viewer_id != owner_id and friends


class Access:
    """The rule applied to usernames, with the store's friendships."""

    def __init__(self, store: Store) -> None:
        self._store = store

    async def _other(self, viewer: User, username: str) -> tuple[User | None, bool]:
        other = await self._store.get_user_by_name(username)
        if other is None:
            return None, False
        return other, await self._store.are_friends(viewer["id"], other["id"])

    async def visible(self, viewer: User, username: str) -> User | None:
        """The user C{username} if C{viewer} may see them, else None (unknown or not a friend)."""
        other, friends = await self._other(viewer, username)
        if other is None or not can_see(viewer["id"], other["id"], friends):
            return None
        return other

    async def listenable(self, viewer: User, username: str) -> User | None:
        """The user C{username} if C{viewer} may listen to them, else None (unknown, oneself or not a friend)."""
        other, friends = await self._other(viewer, username)
        if other is None or not can_listen(viewer["id"], other["id"], friends):
            return None
        return other
