"""
Presence: who of my friends is online, who is live, and how.

The hub keeps, for every user with at least one open WebSocket, the set of
their open connections and the ids of their friends (loaded once when their
first connection opens, then kept current by friendship events).  Pushes go
only to connected friends: a change about user X is sent to each online user
whose friend set holds X.  Several tabs of one user count once: X is online
while any of X's connections is open.  Unfriending removes each from the
other's set at once and tells both sides, so no later change leaks.

Several nodes: every change of a user's state on this node (online here or
not, live here or not) is published on the live bus as a C{presence}
event; each node keeps the other nodes' states (L{RemoteStates}) and a
friend's status is the union of all of them: online if online on any
node, live if live on one.  Messages for a user's pages (C{send_to_user},
C{send_to_circle}) are bus events too, delivered by every node to the
connections it holds.  A node that starts or comes back from a bus outage
announces all its users (C{node_state}) and asks the others to do the same
(C{sync}); a node that died is forgotten (L{PresenceHub.node_gone}), which
tells its users' friends that they went offline and their broadcasts ended.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

from denoisecast.bus.base import Event, LiveBus
from denoisecast.bus.memory import lone_bus
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


class RemoteStates:
    """
    What the other nodes said of their users: node -> user id -> state
    (C{online} there, C{live} status there or C{None}).
    """

    def __init__(self) -> None:
        self.by_node: dict[str, dict[int, dict[str, Any]]] = {}

    def put(self, node: str, user_id: int, state: dict[str, Any]) -> None:
        users = self.by_node.setdefault(node, {})
        if state.get("online") or state.get("live") is not None:
            users[user_id] = state
        else:
            users.pop(user_id, None)
            if not users:
                del self.by_node[node]

    def replace(self, node: str, users: dict[int, dict[str, Any]]) -> set[int]:
        """A node's whole state; returns the users whose state may have changed."""
        before = set(self.by_node.pop(node, {}))
        for user_id, state in users.items():
            self.put(node, user_id, state)
        return before | set(users)

    def online(self, user_id: int) -> bool:
        return any(users.get(user_id, {}).get("online") for users in self.by_node.values())

    def live(self, user_id: int) -> tuple[str, dict[str, Any]] | None:
        for node, users in self.by_node.items():
            live = users.get(user_id, {}).get("live")
            if live is not None:
                return node, live
        return None


class PresenceHub:
    log = logger()

    def __init__(
        self,
        store: Store,
        live_status: LiveStatus = lambda user_id: None,
        bus: LiveBus | None = None,
        live_users: Callable[[], Iterable[int]] = lambda: (),
    ) -> None:
        """
        @param live_status: a user's broadcast status (the live manager's),
            given here so that nothing assigns it later.
        @param bus: the live bus to the other nodes (none: this node alone).
        @param live_users: the users live on this node (the live manager's),
            for announcing this node's whole state.
        """
        self._store = store
        self._online: dict[int, Online] = {}
        self._names: dict[int, str] = {}
        self._live_status = live_status
        self._live_users = live_users
        self.remote = RemoteStates()
        self.bus = bus if bus is not None else lone_bus()
        self.bus.on("presence", self._on_presence)
        self.bus.on("node_state", self._on_node_state)
        self.bus.on("sync", self._on_sync)
        self.bus.on("to_user", lambda event: self._deliver_to_user(int(event["user"]), event["message"]))
        self.bus.on("to_circle", lambda event: self._deliver_to_circle(int(event["user"]), event["message"]))
        self.bus.connected_observers.append(self.announce)

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
        """Whether the user has a connection open on any node."""
        return user_id in self._online or self.remote.online(user_id)

    def online_count(self) -> int:
        """Users with a connection open on this node."""
        return len(self._online)

    def live_node(self, user_id: int) -> str | None:
        """The node that holds the user's broadcast, or C{None} when they are not live."""
        if self._live_status(user_id) is not None:
            return self.bus.node_id
        remote = self.remote.live(user_id)
        return remote[0] if remote is not None else None

    def live_node_named(self, username: str) -> str | None:
        """
        The other node holding the broadcast of the user called C{username},
        from what the nodes announced, or C{None}.  A listen can be relayed
        on this alone, without reading the database here: the owning node
        checks the friendship, as it does for its own listeners.
        """
        wanted = username.lower()
        for node, users in self.remote.by_node.items():
            for user_id, state in users.items():
                if state.get("live") is not None and self._names.get(user_id, "").lower() == wanted:
                    return node
        return None

    def name_of(self, user_id: int) -> str:
        """A user's name as this node last heard it ("" if never)."""
        return self._names.get(user_id, "")

    def remote_broadcasts(self) -> list[dict[str, Any]]:
        """The broadcasts the other nodes hold, as friends see them (with C{node})."""
        return [
            {"user": self._names.get(user_id, ""), "live": True, **state["live"], "node": node}
            for node, users in self.remote.by_node.items()
            for user_id, state in users.items()
            if state.get("live") is not None
        ]

    # the other nodes ----------------------------------------------------------

    def _local_state(self, user_id: int) -> dict[str, Any]:
        return {
            "username": self._names.get(user_id, ""),
            "online": user_id in self._online,
            "live": self._live_status(user_id),
        }

    def announce(self) -> None:
        """
        Tell every node this node's whole state and ask theirs: at start,
        and after a bus outage (in which events were lost both ways).
        """
        users = set(self._online) | set(self._live_users())
        self.bus.publish("node_state", users={str(u): self._local_state(u) for u in users})
        self.bus.publish("sync")

    def _on_sync(self, event: Event) -> None:
        if event["node"] != self.bus.node_id:
            users = set(self._online) | set(self._live_users())
            self.bus.publish("node_state", users={str(u): self._local_state(u) for u in users})

    def _remember(self, user_id: int, state: dict[str, Any]) -> dict[str, Any]:
        if state.get("username"):
            self._names.setdefault(user_id, str(state["username"]))
        return {"online": bool(state.get("online")), "live": state.get("live")}

    def _on_presence(self, event: Event) -> None:
        user_id = int(event["user"])
        if event["node"] == self.bus.node_id:
            self._push(user_id)
            return
        before = self.status(user_id)
        self.remote.put(event["node"], user_id, self._remember(user_id, event))
        if self.status(user_id) != before:
            self._push(user_id)

    def _on_node_state(self, event: Event) -> None:
        if event["node"] == self.bus.node_id:
            return
        users = {int(k): self._remember(int(k), v) for k, v in dict(event.get("users") or {}).items()}
        self._replace_node(event["node"], users)

    def node_gone(self, node: str) -> set[int]:
        """
        Forget a node that died: its users' friends here learn that they
        are offline and not live (unless they are, on another node).
        Returns the users it held.
        """
        return self._replace_node(node, {})

    def _replace_node(self, node: str, users: dict[int, dict[str, Any]]) -> set[int]:
        """Take a node's whole state; push the users whose status changed.  Returns the node's old users."""
        old = set(self.remote.by_node.get(node, {}))
        before = {user_id: self.status(user_id) for user_id in old | set(users)}
        self.remote.replace(node, users)
        for user_id, was in before.items():
            if self.status(user_id) != was:
                self._push(user_id)
        return old

    # state -------------------------------------------------------------------

    def status(self, user_id: int) -> dict[str, Any]:
        """
        What a friend sees of C{user_id}.
        """
        live = self._live_status(user_id)
        if live is None:
            remote = self.remote.live(user_id)
            live = remote[1] if remote is not None else None
        return {
            "username": self._names.get(user_id, ""),
            "online": self.is_online(user_id),
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
        C{user_id}'s state on this node changed: every node pushes their
        status to the online friends it holds.
        """
        self.bus.publish("presence", user=user_id, **self._local_state(user_id))

    def _push(self, user_id: int) -> None:
        """Push C{user_id}'s status to every friend of theirs online on this node."""
        message = server_message("friend", friend=self.status(user_id))
        for other in self._online.values():
            if user_id in other.friends:
                self._send_all(other, message)

    def send_to_circle(self, user_id: int, message: dict[str, Any]) -> None:
        """
        Send to the user's own pages and to every online friend of theirs,
        on every node: the people allowed to see what the user owns
        (recordings).
        """
        self.bus.publish("to_circle", user=user_id, message=message)

    def _deliver_to_circle(self, user_id: int, message: dict[str, Any]) -> None:
        self._deliver_to_user(user_id, message)
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
        """Send to every page of the user, on every node."""
        self.bus.publish("to_user", user=user_id, message=message)

    def _deliver_to_user(self, user_id: int, message: dict[str, Any]) -> None:
        entry = self._online.get(user_id)
        if entry is not None:
            self._send_all(entry, message)


    def _send_all(self, entry: Online, message: dict[str, Any]) -> None:
        for connection in list(entry.connections):
            connection.send_message(message)

    # friendship events ------------------------------------------------------------

    def friendship_changed(self, a: User, b: User, friends: bool) -> None:
        """
        Called on every node (through the bus) after a friendship begins or
        ends (L{denoisecast.handlers.friends.Friends}).
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
