"""
Presence: who of my friends is online, who is live, and how.

The hub keeps, for every user with at least one open WebSocket, the set of
their open connections and the ids of their friends (loaded once when their
first connection opens, then kept current by friendship events).  Pushes go
only to connected friends: a change about user X is sent to each online user
whose friend set holds X.  Several tabs of one user count once: X is online
while any of X's connections is open.  Unfriending removes each from the
other's set at once and tells both sides, so no later change leaks.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from denoisecast.protocols.messages import server_message
from denoisecast.runtime.logs import logger
from denoisecast.storage.store import Store, User


class Connection(Protocol):
    """What the hub needs of a WebSocket connection."""

    def send_message(self, message: dict[str, Any]) -> None: ...

    @property
    def still_open(self) -> bool: ...


#: Returns the live status of a user id (C{None} when not live).
LiveStatus = Callable[[int], "dict[str, Any] | None"]


@dataclass
class Online:
    username: str
    connections: set[Connection] = field(default_factory=set)
    friends: dict[int, str] = field(default_factory=dict)


class PresenceHub:
    log = logger()

    def __init__(self, store: Store, live_status: LiveStatus = lambda user_id: None) -> None:
        """
        @param live_status: a user's broadcast status (the live manager's),
            given here so that nothing assigns it later.
        """
        self._store = store
        self._online: dict[int, Online] = {}
        self._names: dict[int, str] = {}
        self._live_status = live_status

    # connections ------------------------------------------------------------

    async def connect(self, user: User, connection: Connection) -> None:
        """
        Register a connection and send it the snapshot of the user's friends.
        """
        me = user["id"]
        self._names[me] = user["username"]
        entry = self._online.get(me)
        first = entry is None
        if entry is None:
            friends = await self._store.list_friends(me)
            if not connection.still_open:
                return  # closed while we were loading: never count it
            entry = self._online.get(me)  # another tab may have raced us
            if entry is None:
                entry = Online(user["username"], friends={f["id"]: f["username"] for f in friends})
                self._online[me] = entry
            else:
                first = False
        entry.connections.add(connection)
        connection.send_message(server_message("presence", friends=self.snapshot(me)))
        if first:
            self.changed(me)

    def disconnect(self, user_id: int, connection: Connection) -> None:
        entry = self._online.get(user_id)
        if entry is None:
            return
        entry.connections.discard(connection)
        if not entry.connections:
            del self._online[user_id]
            self.changed(user_id)

    def is_online(self, user_id: int) -> bool:
        return user_id in self._online

    def online_count(self) -> int:
        return len(self._online)

    # state -------------------------------------------------------------------

    def status(self, user_id: int) -> dict[str, Any]:
        """
        What a friend sees of C{user_id}.
        """
        live = self._live_status(user_id)
        return {
            "username": self._names.get(user_id, ""),
            "online": user_id in self._online,
            "live": live is not None,
            "live_since": live["live_since"] if live else None,
            "denoise": live["denoise"] if live else None,
            "atten_lim_db": live["atten_lim_db"] if live else None,
            "listeners": live["listeners"] if live else 0,
        }

    def snapshot(self, user_id: int) -> list[dict[str, Any]]:
        entry = self._online.get(user_id)
        if entry is None:
            return []
        for friend_id, name in entry.friends.items():
            self._names.setdefault(friend_id, name)
        return sorted(
            (self.status(friend_id) for friend_id in entry.friends),
            key=lambda status: status["username"],
        )

    def changed(self, user_id: int) -> None:
        """
        Push C{user_id}'s status to every online friend of theirs.
        """
        message = server_message("friend", friend=self.status(user_id))
        for other in self._online.values():
            if user_id in other.friends:
                self._send_all(other, message)

    def send_to_circle(self, user_id: int, message: dict[str, Any]) -> None:
        """
        Send to the user's own pages and to every online friend of theirs:
        the people allowed to see what the user owns (recordings).
        """
        self.send_to_user(user_id, message)
        for other in self._online.values():
            if user_id in other.friends:
                self._send_all(other, message)

    def request_changed(self, sender: User, receiver: User, state: str) -> None:
        """
        Called by L{denoisecast.handlers.friends.Friends} when a friend request is
        made, accepted, rejected or cancelled: each side's pages learn it.
        """
        self._names[sender["id"]] = sender["username"]
        self._names[receiver["id"]] = receiver["username"]
        self.send_to_user(
            receiver["id"],
            server_message("friend_request", username=sender["username"], direction="incoming", state=state),
        )
        self.send_to_user(
            sender["id"],
            server_message("friend_request", username=receiver["username"], direction="outgoing", state=state),
        )

    def send_to_user(self, user_id: int, message: dict[str, Any]) -> None:
        entry = self._online.get(user_id)
        if entry is not None:
            self._send_all(entry, message)


    def _send_all(self, entry: Online, message: dict[str, Any]) -> None:
        for connection in list(entry.connections):
            connection.send_message(message)

    # friendship events ------------------------------------------------------------

    def friendship_changed(self, a: User, b: User, friends: bool) -> None:
        """
        Called by L{denoisecast.handlers.friends.Friends} after a friendship begins or ends.
        """
        self._names[a["id"]] = a["username"]
        self._names[b["id"]] = b["username"]
        for me, other in ((a, b), (b, a)):
            entry = self._online.get(me["id"])
            if entry is None:
                continue
            if friends:
                entry.friends[other["id"]] = other["username"]
                self._send_all(entry, server_message("friend", friend=self.status(other["id"])))
            else:
                entry.friends.pop(other["id"], None)
                self._send_all(entry, server_message("friend_removed", username=other["username"]))
