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
from typing import Any

from argon2 import PasswordHasher
from prometheus_client import CollectorRegistry
from twisted.internet.threads import deferToThread
from twisted.web.server import Site

from denoisecast.accounts import Accounts, utcnow
from denoisecast.config import Config
from denoisecast.friends import Friends
from denoisecast.ratelimit import FailureLimiter
from denoisecast.recordings.library import RecordingLibrary
from denoisecast.recordings.recorder import Recorder
from denoisecast.storage.database import Database
from denoisecast.storage.store import Store
from denoisecast.web import openapi
from denoisecast.web.auth import AuthRoutes
from denoisecast.web.friends import FriendRoutes
from denoisecast.web.health import HealthRoutes
from denoisecast.web.metrics import HttpMetrics
from denoisecast.web.recordings import RecordingRoutes
from denoisecast.web.resource import JsonApi, Route
from denoisecast.web.tree import build_root, build_site, static_directory

#: Failed logins allowed per username, and per client address, per window.
LOGIN_FAILURES_PER_NAME = 5
LOGIN_FAILURES_PER_ADDRESS = 20
LOGIN_WINDOW_SECONDS = 300.0


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
        self.password_hasher = password_hasher or PasswordHasher()

    @cached_property
    def database(self) -> Database:
        return Database(self.config.effective_database_url, self.reactor)

    @cached_property
    def store(self) -> Store:
        return Store(self.database)

    @cached_property
    def accounts(self) -> Accounts:
        return Accounts(
            self.store,
            self.clock,
            lambda fn, *args: deferToThread(fn, *args),
            FailureLimiter(self.reactor, LOGIN_FAILURES_PER_NAME, LOGIN_WINDOW_SECONDS),
            FailureLimiter(self.reactor, LOGIN_FAILURES_PER_ADDRESS, LOGIN_WINDOW_SECONDS),
            self.password_hasher,
        )

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
        )

    @cached_property
    def recordings(self) -> RecordingLibrary:
        return RecordingLibrary(self.store, self.recorder, self.store.get_user_by_name)

    @cached_property
    def metrics_registry(self) -> CollectorRegistry:
        return CollectorRegistry()

    @cached_property
    def http_metrics(self) -> HttpMetrics:
        return HttpMetrics(self.metrics_registry)

    @cached_property
    def routes(self) -> list[Route]:
        return [
            *openapi.routes(),
            *HealthRoutes(self.store).routes(),
            *AuthRoutes(self.accounts).routes(),
            *FriendRoutes(self.friends).routes(),
            *RecordingRoutes(self.recordings).routes(),
        ]

    @cached_property
    def api(self) -> JsonApi:
        return JsonApi(self.routes, self.accounts.user_for_token)

    @cached_property
    def site(self) -> Site:
        root = build_root(self.api, static_directory(), self.metrics_registry)
        return build_site(root, self.http_metrics, self.config.max_body_bytes)
