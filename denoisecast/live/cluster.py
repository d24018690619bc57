"""
This node among the others: what crosses nodes besides presence, and what
happens when a node dies.

Friendships beginning or ending and sessions ending are published on the
live bus, and every node (this one first, before C{publish} returns) runs
its observers: the presence hub's and the live manager's friend sets, the
WebSocket factory's closing of sockets whose session ended (a logout or a
password change on node A closes the user's sockets on node B).  Rate
limits are shared the same way, and also stored in Redis when there is one
(L{share_limits}), so a node started later knows the failures before it.

L{NodeWatch} looks at the node registry every second: a node that holds
users or unfinished recordings but whose heartbeat has expired cannot be
reached on the bus.  Every node forgets its users (their friends learn they
are offline and not live).  Its unfinished recordings are repaired only
once its lease in the database (L{denoisecast.live.lease}) has run out as
well: a node cut off from Redis may still be recording, and is looked at
again on every check until it comes back or its lease runs out.  Each row
is claimed with a conditional UPDATE, so exactly one node repairs it
however many notice.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from dataclasses import asdict
from typing import Any

from twisted.application.service import Service
from twisted.internet.defer import Deferred, ensureDeferred
from twisted.internet.task import LoopingCall

from denoisecast.bus.base import Event, LiveBus
from denoisecast.handlers.accounts import EndedSessions
from denoisecast.handlers.loginguard import DEVICE_LIFETIME_SECONDS, KNOWN_PER_ACCOUNT, LoginGuard
from denoisecast.handlers.presence import PresenceHub
from denoisecast.recordings.recorder import Recorder
from denoisecast.runtime.logs import logger
from denoisecast.runtime.ratelimit import ChangeObserver, FailureLimiter, key_from_text, key_text
from denoisecast.storage.store import Store, User

FriendshipObserver = Callable[[User, User, bool], None]
_log = logger()


def _who(user: User) -> dict[str, Any]:
    """What other nodes need of a user: id and name (never the password hash)."""
    return {"id": int(user["id"]), "username": str(user["username"])}


def route_friendships(bus: LiveBus, observers: list[FriendshipObserver]) -> FriendshipObserver:
    """
    Returns the observer to give L{denoisecast.handlers.friends.Friends}:
    it publishes the change, and on every node C{observers} see it.
    """
    def handler(observer: FriendshipObserver) -> Callable[[Event], None]:
        return lambda event: observer(event["a"], event["b"], bool(event["friends"]))

    for observer in observers:
        bus.on("friendship", handler(observer))

    def publish(a: User, b: User, friends: bool) -> None:
        bus.publish("friendship", a=_who(a), b=_who(b), friends=friends)

    return publish


def route_ended_sessions(bus: LiveBus, close: Callable[[EndedSessions], None]) -> Callable[[EndedSessions], None]:
    """
    Returns the observer of ended sessions: it publishes them, and every
    node's C{close} (the WebSocket factory's) ends the sockets opened with them.
    """

    def received(event: Event) -> None:
        user_id = event.get("user_id")
        close(
            EndedSessions(
                token_hash=event.get("token_hash"),
                user_id=int(user_id) if user_id is not None else None,
                except_hash=event.get("except_hash"),
            )
        )

    bus.on("sessions_ended", received)

    def publish(ended: EndedSessions) -> None:
        bus.publish("sessions_ended", **asdict(ended))

    return publish


#: The known clients' name in the store (no limiter has it).
KNOWN_CLIENTS = "login-known"


def share_limits(bus: LiveBus, limiters: dict[str, FailureLimiter]) -> None:
    """
    Every node's limiters of the same name count the same failures, and,
    where the bus has a store (Redis), a node started later or restarted
    knows the earlier ones.

    Each failure or reset made on one node is published, and made on the
    others as it reaches them; it is also written to the store.  When the
    bus connects (at start, and again after an outage, in which events were
    missed both ways) the node loads the stored failures of these limiters
    into memory, and writes back those it counted that the store lacks.
    Checks stay in memory: a login never waits on Redis (and in the
    milliseconds between a node's start and its load, it knows what the
    bus tells it).
    """
    store = bus.failures
    for name in limiters:
        if ":" in name or name == KNOWN_CLIENTS:
            raise ValueError(f"a limiter's name is part of a Redis key, without ':': {name!r}")
    # Resets made while the bus was away (limiter -> key -> when, on the
    # limiter's clock): neither the store nor the other nodes heard of them.
    # The next load skips the key's stored failures from before, clears the
    # stored key, and tells the reset again, followed by the key's failures
    # since (the other nodes count each id once).
    unheard_resets: dict[str, dict[Hashable, float]] = {name: {} for name in limiters}

    def teller(name: str, limiter: FailureLimiter) -> ChangeObserver:
        def tell(change: str, key: Hashable, failure_id: str) -> None:
            text = key_text(key)
            if change == "reset" and not bus.connected:
                unheard_resets[name][key] = limiter.now()
            bus.publish("ratelimit", limiter=name, change=change, key=text, id=failure_id)
            if store is not None and change == "reset":
                store.clear(name, text)
            elif store is not None:
                store.add(name, text, failure_id, 0.0, limiter.window, limiter.max_failures)

        return tell

    for name, limiter in limiters.items():
        limiter.observers.append(teller(name, limiter))

    def received(event: Event) -> None:
        limiter = limiters.get(str(event.get("limiter")))
        if limiter is None or event["node"] == bus.node_id:
            return  # unknown here, or made here already
        age = event.get("age")
        limiter.apply(
            str(event.get("change")), key_from_text(str(event.get("key"))), str(event.get("id") or ""),
            float(age) if isinstance(age, (int, float)) and 0 <= age < limiter.window else 0.0,
        )

    bus.on("ratelimit", received)

    def loaded(name: str, stored: dict[Hashable, dict[str, float]]) -> None:
        limiter = limiters[name]
        assert store is not None
        resets, unheard_resets[name] = unheard_resets[name], {}
        for key in resets:
            text = key_text(key)
            store.clear(name, text)
            bus.publish("ratelimit", limiter=name, change="reset", key=text, id="")
        for key, failure_id, age in limiter.merge(stored, resets):
            text = key_text(key)
            store.add(name, text, failure_id, age, limiter.window, limiter.max_failures)
            if key in resets:
                bus.publish("ratelimit", limiter=name, change="failure", key=text, id=failure_id, age=age)

    _load_when_connected(bus, list(limiters), loaded)


def share_login_guard(bus: LiveBus, guard: LoginGuard) -> None:
    """
    The login guard's budgets, and the clients each account knows, on
    every node; with a store (Redis) on nodes started later too, for as
    long as the device cookie lives.
    """
    share_limits(bus, guard.limiters())
    store = bus.failures

    def store_known(account: str, entry: str) -> None:
        """Keep one known client of C{account} in the store, for the device cookie's lifetime."""
        assert store is not None
        store.add(KNOWN_CLIENTS, key_text(account), entry, 0.0, DEVICE_LIFETIME_SECONDS, KNOWN_PER_ACCOUNT)

    def tell(account: str, address: str, device: str) -> None:
        bus.publish("known_client", account=account, address=address, device=device)
        if store is not None:
            store_known(account, address)
            store_known(account, device)

    guard.known_observers.append(tell)

    def received(event: Event) -> None:
        if event["node"] != bus.node_id:
            guard.remember(str(event["account"]), str(event["address"]), str(event["device"]))

    bus.on("known_client", received)

    def loaded(_: str, stored: dict[Hashable, dict[str, float]]) -> None:
        for account, entries in stored.items():
            oldest_first = sorted(entries, key=lambda entry: -entries[entry])
            guard.remember(str(account), *oldest_first)
        # What Redis lost (a restart without persistence) is written back
        # where it matters: for the accounts being guessed at, lest a node
        # started later keep their owners out with the others.
        for account in guard.limiters()["login-account"].keys():
            have = stored.get(account, {})
            for entry in guard.known(str(account)):
                if entry not in have:
                    store_known(str(account), entry)

    _load_when_connected(bus, [KNOWN_CLIENTS], loaded)


def _load_when_connected(
    bus: LiveBus, names: list[str], loaded: Callable[[str, dict[Hashable, dict[str, float]]], None]
) -> None:
    """
    Each time the bus connects (and now, if it is connected), load what its
    store holds under C{names} and give it to C{loaded}, name by name (key
    -> entry -> age); nothing without a store.
    """
    store = bus.failures
    if store is None:
        return

    async def load() -> None:
        assert store is not None
        stored = await store.load(names)
        if stored is None:
            return  # Redis went away again: the next connection loads
        for name in names:
            keys: dict[Hashable, dict[str, float]] = {}
            for text, entries in stored.get(name, {}).items():
                try:
                    keys[key_from_text(text)] = entries
                except ValueError:
                    continue  # not a key this code wrote
            loaded(name, keys)

    def connected() -> None:
        ensureDeferred(load()).addErrback(lambda failure: _log.failure("Loading the rate limits failed", failure))

    bus.connected_observers.append(connected)
    if bus.connected:
        connected()  # shared after the bus connected: load now


class NodeWatch(Service):
    """
    Notices nodes whose heartbeat expired and cleans up after them.

    @ivar alive: how many nodes were alive at the last check (this one included).
    @ivar buried: the dead nodes whose recordings this node has repaired.
    @ivar spared: the nodes gone from the bus whose database lease is still
        renewed: their users are forgotten here, their recordings left to them.
    """

    log = logger()

    def __init__(
        self, bus: LiveBus, presence: PresenceHub, recorder: Recorder, store: Store, reactor: Any,
        interval: float = 1.0,
    ) -> None:
        self.bus = bus
        self._presence = presence
        self._recorder = recorder
        self._store = store
        self._loop = LoopingCall(self._tick)
        self._loop.clock = reactor
        self._interval = interval
        self._checking: Deferred[Any] | None = None
        self.alive = 1
        self.buried: set[str] = set()
        self.spared: set[str] = set()
        #: Nodes gone from the bus whose users were forgotten here.
        self._forgotten: set[str] = set()
        #: Told the id of each dead node, after presence forgot it.
        self.gone_observers: list[Callable[[str], None]] = []

    def startService(self) -> None:
        super().startService()
        self._loop.start(self._interval, now=False)

    def stopService(self) -> Deferred[Any] | None:
        super().stopService()
        if self._loop.running:
            self._loop.stop()
        return self._checking

    def _tick(self) -> None:
        if self._checking is not None:
            return  # the last check still runs (a slow database)

        def failed(failure: Any) -> None:
            self.log.warn("Checking the other nodes failed: {error}", error=failure.getErrorMessage())

        checking = ensureDeferred(self.check()).addErrback(failed)
        if not checking.called:  # a check that found nothing to do has finished already
            self._checking = checking

            def done(_: object) -> None:
                self._checking = None

            checking.addBoth(done)

    async def check(self) -> list[str]:
        """
        Clean up after every node found dead; returns their ids.

        Nothing is judged while this node's own view may be stale: while
        the bus is down, during the first C{ttl} seconds after it
        (re)connected (the others re-announce themselves after a Redis
        restart), and while this node's own heartbeat is not visible.
        """
        if not self.bus.shared:
            return []
        connected = self.bus.connected_for()
        if connected is None or connected < self.bus.ttl:
            return []
        alive = await self.bus.alive_nodes()
        self.alive = max(1, len(alive))
        if self.bus.node_id not in alive:
            return []
        suspects = set(self._presence.remote.by_node) | set(await self._store.recording_nodes())
        dead = sorted(suspects - set(alive) - {self.bus.node_id})
        # A node seen again (or with nothing left here) is judged afresh if it disappears.
        self._forgotten &= set(dead)
        self.spared &= set(dead)
        if not dead:
            return []
        leased = await self._store.live_node_leases(dead)
        # Asked again last: a node back on the bus meanwhile has announced its
        # users again, and they must not be forgotten after that.
        back = await self.bus.alive_nodes()
        dead = [node for node in dead if node not in back]
        for node in dead:
            self.forget(node)
        for node in dead:
            await self.repair(node, node in leased)
        return dead

    def forget(self, node: str) -> None:
        """The node cannot be reached on the bus: its users are offline here, its pages' listens end."""
        users = self._presence.node_gone(node)
        if node in self._forgotten and not users:
            return
        self._forgotten.add(node)
        for observer in self.gone_observers:
            try:
                observer(node)
            except Exception:
                self.log.failure("A dead-node observer failed")
        self.log.warn(
            "Node {node} stopped its heartbeat: its {users} users are offline here",
            node=node, users=len(users), log_id="bus.node_dead",
        )

    async def repair(self, node: str, leased: bool) -> None:
        """
        Repair the node's recordings, unless it still renews its database
        lease (C{leased}): then they are left to it, and it is looked at
        again at the next check.
        """
        if leased:
            if node not in self.spared:
                self.spared.add(node)
                self.log.warn(
                    "Node {node} is cut off from the live bus but renews its database lease: "
                    "its recordings are left to it",
                    node=node, log_id="bus.node_cut_off",
                )
            return
        self.spared.discard(node)
        repaired = await self._recorder.repair([node])
        self.buried.add(node)
        self.log.warn(
            "Node {node} is dead (no heartbeat, no database lease): {repaired} of its recordings "
            "repaired by this node",
            node=node, repaired=repaired, log_id="bus.node_repaired",
        )
