"""
The object graph of one DenoiseCast server, wired in one place.

Each part is built on first use by a cached ``get_*`` method, so tests can
replace any part (a cheap password hasher, a memory reactor) before the
parts that depend on it are built, and nothing reaches for globals.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from datetime import datetime
from functools import cached_property
from typing import TYPE_CHECKING, Any

from argon2 import PasswordHasher
from autobahn.twisted.resource import WebSocketResource
from prometheus_client import CollectorRegistry
from twisted.internet.threads import deferToThreadPool
from twisted.python.threadpool import ThreadPool
from twisted.web.resource import Resource
from twisted.web.server import Site

from denoisecast.app.config import Config
from denoisecast.bus.base import LiveBus, NodeInfo, new_node_id
from denoisecast.bus.memory import InProcessBus, MemoryBroker
from denoisecast.bus.metrics import BusMetrics
from denoisecast.denoise.scheduler import DenoiseScheduler, SchedulerSettings
from denoisecast.handlers.access import Access
from denoisecast.handlers.accounts import Accounts, EndedSessions, utcnow
from denoisecast.handlers.admin import Administration, LiveControl
from denoisecast.handlers.friends import Friends
from denoisecast.handlers.loginguard import LoginGuard
from denoisecast.handlers.passwordqueue import PasswordQueue
from denoisecast.handlers.presence import PresenceHub
from denoisecast.handlers.sessionsweep import SocketSessions
from denoisecast.handlers.tokens import CREATIONS_PER_HOUR, LISTEN, Tokens
from denoisecast.live.candidates import CandidatePolicy
from denoisecast.live.cluster import (
    NodeWatch,
    route_ended_sessions,
    route_friendships,
    share_limits,
    share_login_guard,
)
from denoisecast.live.ice import ice_servers_for
from denoisecast.live.lease import NodeLease
from denoisecast.live.manager import LiveManager
from denoisecast.live.mediaports import MediaPlan
from denoisecast.live.metrics import LiveMetrics
from denoisecast.live.whip import WhipSessions
from denoisecast.protocols.socket import SignalingFactory
from denoisecast.recordings.library import RecordingLibrary
from denoisecast.recordings.recorder import Recorder
from denoisecast.runtime.background import at_low_priority
from denoisecast.runtime.ratelimit import FailureLimiter
from denoisecast.runtime.reactorlag import ReactorLagMonitor
from denoisecast.runtime.servermetrics import DiskSampler, ServerMetrics, add_standard_collectors
from denoisecast.storage.admin import AdminStore
from denoisecast.storage.database import Database
from denoisecast.storage.passwords import PasswordHashes
from denoisecast.storage.store import Store, User
from denoisecast.web import openapi
from denoisecast.web.access import AccessLoggingSite
from denoisecast.web.forwarded import TrustedProxies
from denoisecast.web.metrics import HttpMetrics, metrics_resource
from denoisecast.web.pages import PageAccess
from denoisecast.web.resource import JsonApi, Route
from denoisecast.web.routes.admin import AdminRoutes
from denoisecast.web.routes.auth import AuthRoutes
from denoisecast.web.routes.friends import FriendRoutes
from denoisecast.web.routes.health import HealthRoutes
from denoisecast.web.routes.listen import OggListenResource
from denoisecast.web.routes.recordings import RecordingRoutes
from denoisecast.web.routes.streams import StreamRoutes
from denoisecast.web.routes.tokens import TokenRoutes
from denoisecast.web.routes.whep import WhepRoutes
from denoisecast.web.routes.whip import WhipRoutes
from denoisecast.web.tree import build_root, build_site, static_directory

if TYPE_CHECKING:
    from denoisecast.model.engine import DenoiseEngine

#: Wrong current passwords allowed per account on /api/auth/password, per window.
PASSWORD_CHECK_FAILURES = 5
PASSWORD_CHECK_WINDOW_SECONDS = 300.0
#: argon2id lanes per hash: one, so that hashing a password never takes more
#: than one core.
PASSWORD_HASH_LANES = 1
#: argon2id cost: OWASP's Password Storage Cheat Sheet's first choice,
#: m=19 MiB, t=2, p=1 (its equal-strength alternative is m=46 MiB, t=1).
#: Chosen over the alternative because a hash then holds 19 MiB instead of
#: 46 MiB for the same CPU time (docs/security.md, docs/performance.md).
#: argon2-cffi's default, used before, was m=64 MiB, t=3: about three times
#: the work.  Hashes made with it still verify (the parameters are in the hash).
PASSWORD_MEMORY_KIB = 19 * 1024
PASSWORD_TIME_COST = 2


def password_lanes(cores: int | None = None) -> int:
    """
    How many passwords are hashed at once: a quarter of the cores, at least
    one, so a login storm never takes more than that from live audio.
    """
    return max(1, (cores or os.cpu_count() or 1) // 4)


def default_password_hasher() -> PasswordHasher:
    return PasswordHasher(
        time_cost=PASSWORD_TIME_COST,
        memory_cost=PASSWORD_MEMORY_KIB,
        parallelism=PASSWORD_HASH_LANES,
    )


def load_live_engine(settings: SchedulerSettings) -> "DenoiseEngine":
    """
    The engine for the live path, with one intra-op torch thread per worker.

    Live chunks are small; torch's default (a thread per core, spinning
    while it waits) fights the reactor thread, which runs WebRTC, for the
    same cores: measured on 2 cores, a 100 ms chunk took 1.7 s instead of
    12 ms.  Parallelism comes from batching and the worker count instead.
    """
    import torch

    from denoisecast.model.engine import DenoiseEngine

    torch.set_num_threads(1)
    return DenoiseEngine.load(settings.model, device=settings.device, runtime=settings.runtime)


class DenoiseCastServer:
    def __init__(
        self,
        config: Config,
        reactor: Any,
        clock: Callable[[], datetime] = utcnow,
        password_hasher: PasswordHasher | None = None,
        engine_loader: "Callable[[SchedulerSettings], DenoiseEngine]" = load_live_engine,
        bus: LiveBus | None = None,
    ) -> None:
        """
        The arguments after C{reactor} are the parts a test may swap (a
        clock, a cheap password hasher, an engine loader, the live bus:
        tests put several in-process nodes on one broker); everything else
        is built from them and the configuration.
        """
        self.config = config
        self.reactor = reactor
        self.clock = clock
        self.password_hasher = password_hasher or default_password_hasher()
        self._engine_loader = engine_loader
        if bus is not None:
            self.bus = bus

    @cached_property
    def node(self) -> NodeInfo:
        """This node's announcement on the live bus."""
        return NodeInfo(self.config.node_id or new_node_id(), self.config.advertise_url, self.reactor.seconds())

    @cached_property
    def bus(self) -> LiveBus:
        """
        The live bus: on Redis when C{--redis-url} is given, else inside
        this process (one node).  Nothing else knows which.
        """
        if self.config.redis_url:
            from denoisecast.bus.redisbus import RedisBus

            return RedisBus(self.config.redis_url, self.config.redis_prefix, self.node, self.config.node_ttl)
        return InProcessBus(MemoryBroker(self.reactor), self.node, self.config.node_ttl)

    @cached_property
    def node_watch(self) -> NodeWatch:
        watch = NodeWatch(self.bus, self.presence, self.recorder, self.store, self.reactor, min(1.0, self.bus.ttl / 4))
        watch.gone_observers.append(self.live.remote.node_gone)
        return watch

    @cached_property
    def node_lease(self) -> NodeLease:
        """This node's lease in the shared database (renewed only when the bus is shared)."""
        return NodeLease(self.store, self.bus, self.reactor)

    @cached_property
    def database(self) -> Database:
        return Database(self.config.effective_database_url, self.reactor)

    @cached_property
    def store(self) -> Store:
        return Store(self.database)

    @cached_property
    def access(self) -> Access:
        return Access(self.store)

    @cached_property
    def login_guard(self) -> LoginGuard:
        # Every limit holds across nodes: failures are shared over the live bus
        # and, with Redis, stored there (a node started later knows them).
        guard = LoginGuard(self.reactor)
        share_login_guard(self.bus, guard)
        return guard

    @cached_property
    def accounts(self) -> Accounts:
        per_hour = self.config.registrations_per_hour
        registrations = FailureLimiter(self.reactor, per_hour, 3600.0) if per_hour else None
        password_checks = FailureLimiter(self.reactor, PASSWORD_CHECK_FAILURES, PASSWORD_CHECK_WINDOW_SECONDS)
        share_limits(self.bus, {"password-check": password_checks})
        if registrations is not None:
            share_limits(self.bus, {"registration": registrations})
        return Accounts(
            self.store,
            self.clock,
            self.password_queue,
            self.login_guard,
            registrations,
            password_checks,
            self.password_hasher,
            PasswordHashes(self.database),
        )

    @cached_property
    def password_lanes(self) -> int:
        return password_lanes()

    @cached_property
    def password_pool(self) -> ThreadPool:
        """
        Where passwords are hashed and verified: on ``password_lanes``
        threads, each hash on one argon2 lane, at low priority
        (``background``).  argon2 is meant to be expensive, and a login
        storm (fifty friends arriving for a broadcast) on the shared reactor
        pool took both cores of a small server, so live streams lost their
        denoising.  argon2-cffi releases the GIL while it hashes (checked by
        tests/test_accounts_api.py), so these threads take no time from the
        reactor thread's Python work, only the CPU the kernel gives them.
        """
        return ThreadPool(minthreads=0, maxthreads=self.password_lanes, name="denoisecast-passwords")

    @cached_property
    def password_queue(self) -> PasswordQueue:
        return PasswordQueue(
            self.reactor,
            lambda fn, *args: deferToThreadPool(self.reactor, self.password_pool, at_low_priority(fn), *args),
            lanes=self.password_lanes,
        )

    @cached_property
    def admin_store(self) -> AdminStore:
        return AdminStore(self.database)

    @cached_property
    def socket_sessions(self) -> SocketSessions:
        return SocketSessions(self.signaling, self.live, self.admin_store, self.clock, self.end_sessions)

    @cached_property
    def end_sessions(self) -> Callable[[EndedSessions], None]:
        """Ends sessions' sockets on every node (logout, password change, disabled account)."""
        return route_ended_sessions(self.bus, lambda ended: self.signaling.sessions_ended(ended))

    @cached_property
    def administration(self) -> Administration:
        sessions = self.socket_sessions
        return Administration(
            self.store,
            self.admin_store,
            self.accounts,
            self.config.data_dir,
            self.clock,
            LiveControl(
                broadcasts=self.live.all_broadcasts,
                end_broadcast=sessions.end_broadcast,
                close_sockets=sessions.close_user,
            ),
            self.recorder.active.get,
        )

    @cached_property
    def friends(self) -> Friends:
        return Friends(self.store, self.clock)

    @cached_property
    def tokens(self) -> Tokens:
        creations = FailureLimiter(self.reactor, CREATIONS_PER_HOUR, 3600.0)
        share_limits(self.bus, {"token-creation": creations})
        return Tokens(self.store, self.clock, self.access, creations)

    @cached_property
    def recorder(self) -> Recorder:
        return Recorder(
            self.store,
            self.reactor,
            self.config.data_dir,
            self.clock,
            quota_bytes=self.config.recording_quota_bytes,
            max_seconds=self.config.recording_max_seconds,
            min_free_bytes=self.config.recording_min_free_bytes,
            node_id=self.bus.node_id,
        )

    @cached_property
    def recordings(self) -> RecordingLibrary:
        return RecordingLibrary(
            self.store, self.recorder, self.store.get_user_by_name, self.presence.send_to_circle
        )

    @cached_property
    def metrics_registry(self) -> CollectorRegistry:
        registry = CollectorRegistry()
        add_standard_collectors(registry)
        return registry

    @cached_property
    def disk_sampler(self) -> DiskSampler:
        return DiskSampler(self.config.data_dir, self.reactor)

    @cached_property
    def server_metrics(self) -> ServerMetrics:
        return ServerMetrics(
            self.metrics_registry,
            lambda: self.signaling.connections,
            lambda: self.database.errors,
            lambda: self.signaling.rate_limited,
            self.disk_sampler,
        )

    @cached_property
    def bus_metrics(self) -> BusMetrics:
        return BusMetrics(self.metrics_registry, self.bus, lambda: self.node_watch.alive, self.node_lease)

    @cached_property
    def metrics_site(self) -> Site:
        """The site of C{--metrics-listen}: C{/metrics} and nothing else."""
        root = Resource()
        root.putChild(b"metrics", metrics_resource(self.metrics_registry, self.config.metrics_token))
        site = AccessLoggingSite(root)
        site.displayTracebacks = False
        return site

    @cached_property
    def reactor_lag(self) -> ReactorLagMonitor:
        return ReactorLagMonitor(self.reactor, self.metrics_registry)

    @cached_property
    def http_metrics(self) -> HttpMetrics:
        return HttpMetrics(self.metrics_registry)

    @cached_property
    def presence(self) -> PresenceHub:
        # The live manager is built on the first status asked for, after the hub.
        return PresenceHub(
            self.store,
            lambda user_id: self.live.live_status(user_id),
            self.bus,
            lambda: list(self.live.broadcasts),
        )

    @cached_property
    def friendship_routes(self) -> None:
        """
        Friendships crossing nodes: every node's hub and live manager see
        each change (built with the site, once both exist).
        """
        self.friends.observers.append(
            route_friendships(self.bus, [self.presence.friendship_changed, self.live.friendship_changed])
        )
        self.friends.request_observers.append(self.presence.request_changed)

    @cached_property
    def scheduler(self) -> DenoiseScheduler:
        settings = SchedulerSettings.from_config(self.config)
        return DenoiseScheduler(self.reactor, settings, engine_factory=lambda: self._engine_loader(settings))

    @cached_property
    def live(self) -> LiveManager:
        manager = LiveManager(
            self.store,
            self.presence,
            self.scheduler,
            self.clock,
            self.reactor,
            self.config.silence_timeout,
            recorder=self.recorder,
            reconnect_grace=self.config.reconnect_grace,
            access=self.access,
            candidate_policy=CandidatePolicy.from_config(self.config),
            media=MediaPlan.from_config(self.config),
            find_page=lambda connection_id: self.signaling.by_id.get(connection_id),
        )
        # Every heartbeat says how many more streams this node can denoise (placement).
        self.bus.headroom = self.scheduler.headroom
        return manager

    @cached_property
    def whip_sessions(self) -> WhipSessions:
        return WhipSessions(self.live, CandidatePolicy.from_config(self.config))

    @cached_property
    def live_metrics(self) -> LiveMetrics:
        return LiveMetrics(self.metrics_registry, self.live, self.scheduler)

    @cached_property
    def signaling(self) -> SignalingFactory:
        factory = SignalingFactory(
            self.accounts.user_for_token,
            self.presence,
            self.live,
            ice_servers_for(self.config, self.reactor.seconds),
            TrustedProxies(self.config.trusted_proxies),
            self.config.proxy_header,
        )
        self.accounts.session_observers.append(self.end_sessions)
        return factory

    @cached_property
    def routes(self) -> list[Route]:
        return [
            *openapi.routes(),
            *HealthRoutes(self.store, self.recorder.disk_state, self.bus, self.config.worker).routes(),
            *AuthRoutes(self.accounts).routes(),
            *FriendRoutes(self.friends).routes(),
            *StreamRoutes(self.access, self.live).routes(),
            *RecordingRoutes(self.recordings).routes(),
            *AdminRoutes(self.administration).routes(),
            *TokenRoutes(self.tokens).routes(),
            *WhipRoutes(self.tokens, self.whip_sessions, ice_servers_for(self.config, self.reactor.seconds)).routes(),
            *WhepRoutes(self.tokens, self.live, ice_servers_for(self.config, self.reactor.seconds)).routes(),
        ]

    async def listen_token_user(self, token: str) -> User | None:
        """
        The person a listen token belongs to, if it is valid (WHEP, the HTTP
        stream); whether they may listen to a broadcast is the live side's
        question (friends only, asked at every use).
        """
        return await self.tokens.check(token, LISTEN)

    @cached_property
    def api(self) -> JsonApi:
        return JsonApi(self.routes, self.accounts.user_for_token)

    @cached_property
    def site(self) -> Site:
        # The metrics register their collectors when built: build them with the site.
        _ = self.live_metrics
        _ = self.server_metrics
        _ = self.bus_metrics
        _ = self.friendship_routes
        root = build_root(
            self.api,
            static_directory(),
            self.metrics_registry,
            # WHIP's and WHEP's routes are in the API's route table; the API resource serves them there too.
            {
                b"ws": WebSocketResource(self.signaling),
                b"whip": self.api,
                b"whep": self.api,
                b"listen": OggListenResource(self.live, self.listen_token_user, self.accounts.user_for_token),
            },
            PageAccess(
                self.accounts.user_for_token,
                self.store.get_user_by_name,
                self.store.are_friends,
                self.store.get_visible_recording,
            ),
        )
        # /metrics on its own endpoint, or here behind the token if one is set.
        if self.config.metrics_listen:
            root.delEntity(b"metrics")
        else:
            root.putChild(b"metrics", metrics_resource(self.metrics_registry, self.config.metrics_token))
        return build_site(
            root,
            self.http_metrics,
            self.config.max_body_bytes,
            TrustedProxies(self.config.trusted_proxies),
            self.config.proxy_header,
        )
