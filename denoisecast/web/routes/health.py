"""
The health route: is the database reachable, has the recordings disk room,
which version runs.

An unreachable database is a 503 (the server cannot serve anything); a full
or failing recordings disk is a 200 with ``"status": "degraded"``: logins
and live broadcasts still work, only recording does not.  So is a live bus
that cannot reach Redis: this node serves its own users, but they do not
see (or reach) the other nodes' until it is back.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.internet.defer import Deferred

from denoisecast import __version__
from denoisecast.bus.base import LiveBus
from denoisecast.runtime.logs import logger
from denoisecast.storage.store import Store
from denoisecast.web.apidoc import ok, ref
from denoisecast.web.resource import ApiCall, Response, Route


class HealthRoutes:
    log = logger()

    def __init__(
        self,
        store: Store,
        disk_state: Callable[[], "Deferred[Any]"] | None = None,
        bus: LiveBus | None = None,
        worker: int = 0,
    ) -> None:
        """C{worker}: this process's number among ``--workers`` (0: not a worker; then not reported)."""
        self._store = store
        self._disk_state = disk_state
        self._bus = bus
        self._worker = worker

    def routes(self) -> list[Route]:
        return [Route("GET", "/api/health", self.health, auth=False)]

    async def health(self, call: ApiCall) -> Response:
        try:
            database = "ok" if await self._store.ping() else "error"
        except Exception as error:
            self.log.warn("Health check: database unreachable: {error}", error=repr(error))
            database = "unreachable"
        ok = database == "ok"
        body: dict[str, Any] = {"database": database}
        if self._disk_state is not None:
            disk = await self._disk_state()
            body["disk"] = disk.status
            body["disk_free_bytes"] = disk.free_bytes
            if disk.status != "ok":
                self.log.warn("Health check: recordings disk {status}: {problem}", status=disk.status, problem=disk.problem)
        if self._worker:
            body["worker"] = self._worker
        if self._bus is not None:
            body["node"] = self._bus.node_id
            body["bus"] = self._bus.kind if self._bus.connected else "unreachable"
            if not self._bus.connected:
                self.log.warn("Health check: the live bus is unreachable")
        degraded = not ok or body.get("disk", "ok") != "ok" or body.get("bus") == "unreachable"
        return (200 if ok else 503), {
            "status": "degraded" if degraded else "ok",
            **body,
            "version": __version__,
        }


#: The OpenAPI paths of these routes (web/openapi.py puts the document together).
OPENAPI_PATHS: dict[str, Any] = {
    "/api/health": {
        "get": {
            "summary": "Whether the server, its database, its recordings disk and its live bus work, and its version.",
            "security": [],
            "responses": {
                "200": ok(
                    "Serving; status is degraded when the recordings disk is not ok or the live bus "
                    "cannot reach Redis.",
                    ref("Health"),
                ),
                "503": ok("The database is unreachable.", ref("Health")),
            },
        }
    },
}
