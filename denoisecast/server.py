"""
The object graph of one DenoiseCast server, wired in one place.

Each part is built on first use by a cached ``get_*`` method, so tests can
replace any part (a cheap password hasher, a memory reactor) before the
parts that depend on it are built, and nothing reaches for globals.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from functools import cached_property
from typing import TYPE_CHECKING, Any

from argon2 import PasswordHasher
from autobahn.twisted.resource import WebSocketResource
from prometheus_client import CollectorRegistry
from twisted.internet.threads import deferToThreadPool
from twisted.python.threadpool import ThreadPool
from twisted.web.server import Site

from denoisecast.accounts import Accounts, utcnow
from denoisecast.background import at_low_priority
from denoisecast.config import Config
from denoisecast.denoise.scheduler import DenoiseScheduler, SchedulerSettings
from denoisecast.friends import Friends
from denoisecast.handlers.access import Access
from denoisecast.live.candidates import CandidatePolicy
from denoisecast.live.ice import ice_servers_for
from denoisecast.live.manager import LiveManager
from denoisecast.live.metrics import LiveMetrics
from denoisecast.presence import PresenceHub
from denoisecast.protocols.socket import SignalingFactory
from denoisecast.ratelimit import FailureLimiter
from denoisecast.reactorlag import ReactorLagMonitor
from denoisecast.recordings.library import RecordingLibrary
from denoisecast.recordings.recorder import Recorder
from denoisecast.storage.database import Database
from denoisecast.storage.store import Store
from denoisecast.web import openapi
from denoisecast.web.auth import AuthRoutes
from denoisecast.web.friends import FriendRoutes
from denoisecast.web.health import HealthRoutes
from denoisecast.web.metrics import HttpMetrics
from denoisecast.web.pages import PageAccess
from denoisecast.web.recordings import RecordingRoutes
from denoisecast.web.resource import JsonApi, Route
from denoisecast.web.streams import StreamRoutes
from denoisecast.web.tree import build_root, build_site, static_directory

if TYPE_CHECKING:
    from denoisecast.model.engine import DenoiseEngine

#: Failed logins allowed per username, and per client address, per window.
LOGIN_FAILURES_PER_NAME = 5
LOGIN_FAILURES_PER_ADDRESS = 20
LOGIN_WINDOW_SECONDS = 300.0
#: argon2id lanes per hash: one, so that hashing a password never takes more
#: than one core (64 MiB, three passes: about 150 ms on a current core).
PASSWORD_HASH_LANES = 1


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
    return DenoiseEngine.load(settings.model, device=settings.device)


class DenoiseCastServer:
    def __init__(
        self,
        config: Config,
        reactor: Any,
        clock: Callable[[], datetime] = utcnow,
        password_hasher: PasswordHasher | None = None,
    ) -> None:
        self.config = config
        self.reactor = reactor
        self.clock = clock
        self.password_hasher = password_hasher or PasswordHasher(parallelism=PASSWORD_HASH_LANES)

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
    def accounts(self) -> Accounts:
        return Accounts(
            self.store,
            self.clock,
            lambda fn, *args: deferToThreadPool(self.reactor, self.password_pool, at_low_priority(fn), *args),
            FailureLimiter(self.reactor, LOGIN_FAILURES_PER_NAME, LOGIN_WINDOW_SECONDS),
            FailureLimiter(self.reactor, LOGIN_FAILURES_PER_ADDRESS, LOGIN_WINDOW_SECONDS),
            self.password_hasher,
        )

    @cached_property
    def password_pool(self) -> ThreadPool:
        """
        Where passwords are hashed and verified: one at a time, on one lane
        (``PASSWORD_HASH_LANES``), at low priority (``background``).  argon2
        is meant to be expensive, and a login storm (fifty friends arriving
        for a broadcast) on the shared reactor pool took both cores of a
        small server, so live streams lost their denoising; queued this way,
        logins wait instead.
        """
        return ThreadPool(minthreads=0, maxthreads=1, name="denoisecast-passwords")

    @cached_property
    def friends(self) -> Friends:
        return Friends(self.store, self.clock)

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
        )

    @cached_property
    def recordings(self) -> RecordingLibrary:
        return RecordingLibrary(
            self.store, self.recorder, self.store.get_user_by_name, self.presence.send_to_circle
        )

    @cached_property
    def metrics_registry(self) -> CollectorRegistry:
        return CollectorRegistry()

    @cached_property
    def reactor_lag(self) -> ReactorLagMonitor:
        return ReactorLagMonitor(self.reactor, self.metrics_registry)

    @cached_property
    def http_metrics(self) -> HttpMetrics:
        return HttpMetrics(self.metrics_registry)

    @cached_property
    def presence(self) -> PresenceHub:
        hub = PresenceHub(self.store)
        self.friends.observers.append(hub.friendship_changed)
        self.friends.request_observers.append(hub.request_changed)
        return hub

    @cached_property
    def scheduler(self) -> DenoiseScheduler:
        settings = SchedulerSettings.from_config(self.config)
        return DenoiseScheduler(self.reactor, settings, engine_factory=lambda: load_live_engine(settings))

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
        )
        self.friends.observers.append(manager.friendship_changed)
        return manager

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
        )
        self.accounts.session_observers.append(factory.sessions_ended)
        return factory

    @cached_property
    def routes(self) -> list[Route]:
        return [
            *openapi.routes(),
            *HealthRoutes(self.store, self.recorder.disk_state).routes(),
            *AuthRoutes(self.accounts).routes(),
            *FriendRoutes(self.friends).routes(),
            *StreamRoutes(self.access, self.live).routes(),
            *RecordingRoutes(self.recordings).routes(),
        ]

    @cached_property
    def api(self) -> JsonApi:
        return JsonApi(self.routes, self.accounts.user_for_token)

    @cached_property
    def site(self) -> Site:
        # The live metrics register their collectors when built: build them with the site.
        _ = self.live_metrics
        root = build_root(
            self.api,
            static_directory(),
            self.metrics_registry,
            {b"ws": WebSocketResource(self.signaling)},
            PageAccess(
                self.accounts.user_for_token,
                self.store.get_user_by_name,
                self.store.are_friends,
                self.store.get_visible_recording,
            ),
        )
        return build_site(root, self.http_metrics, self.config.max_body_bytes)
