"""
The health route: is the database reachable, which version runs.
"""

from __future__ import annotations

from denoisecast import __version__
from denoisecast.logs import logger
from denoisecast.storage.store import Store
from denoisecast.web.resource import ApiCall, Response, Route


class HealthRoutes:
    log = logger()

    def __init__(self, store: Store) -> None:
        self._store = store

    def routes(self) -> list[Route]:
        return [Route("GET", "/api/health", self.health, auth=False)]

    async def health(self, call: ApiCall) -> Response:
        try:
            database = "ok" if await self._store.ping() else "error"
        except Exception as error:
            self.log.warn("Health check: database unreachable: {error}", error=repr(error))
            database = "unreachable"
        ok = database == "ok"
        return (200 if ok else 503), {
            "status": "ok" if ok else "degraded",
            "database": database,
            "version": __version__,
        }
