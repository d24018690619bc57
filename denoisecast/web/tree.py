"""
The resource tree, assembled from one path -> resource table.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from prometheus_client import CollectorRegistry
from twisted.web.resource import IResource, Resource
from twisted.web.server import Site

from denoisecast.web.access import AccessLoggingSite
from denoisecast.web.forwarded import X_FORWARDED, TrustedProxies
from denoisecast.web.metrics import HttpMetrics, metrics_resource
from denoisecast.web.pages import AppPages, AppRoot, PageAccess, StaticFiles
from denoisecast.web.request import DenoiseCastRequest
from denoisecast.web.resource import JsonApi

#: The browser app's page URLs (first path segment); see L{AppPages}.
APP_PATHS = (b"", b"login", b"register", b"search", b"requests", b"settings", b"u", b"r")


def build_root(
    api: JsonApi,
    static_dir: Path,
    registry: CollectorRegistry,
    extra: dict[bytes, IResource] | None = None,
    pages: PageAccess | None = None,
) -> Resource:
    """
    The tree: the app's pages, its static files, the API, metrics and
    whatever C{extra} adds (the WebSocket); any other URL is the app's
    404 page.  Without C{pages} (tests of the API alone) nobody is logged
    in as far as the pages know.
    """
    app = AppPages(static_dir / "app.html", pages or _nobody())
    table: dict[bytes, IResource] = {
        **{path: app for path in APP_PATHS},
        b"static": StaticFiles(str(static_dir)),
        b"api": api,
        b"metrics": metrics_resource(registry),
        **(extra or {}),
    }
    root = AppRoot(app)
    for path, resource in table.items():
        root.putChild(path, resource)
    return root


def _nobody() -> PageAccess:
    async def none(*args: object) -> None:
        return None

    async def never(*args: object) -> bool:
        return False

    return PageAccess(none, none, never, none)


def build_site(
    root: Resource,
    metrics: HttpMetrics,
    max_body_bytes: int,
    trusted_proxies: TrustedProxies | None = None,
    proxy_header: str = X_FORWARDED,
) -> Site:
    request_class: type[DenoiseCastRequest] = type(
        "SiteRequest",
        (DenoiseCastRequest,),
        {
            "metrics": metrics,
            "max_body_bytes": max_body_bytes,
            "trusted_proxies": trusted_proxies or TrustedProxies(),
            "proxy_header": proxy_header,
        },
    )
    site = AccessLoggingSite(root)
    site.requestFactory = request_class
    site.displayTracebacks = False
    return site


def static_directory() -> Path:
    """
    The browser app's files, inside the package so that an installed wheel
    carries them as well as the checkout does.
    """
    return Path(__file__).resolve().parent.parent / "static"


__all__: Sequence[str] = ["build_root", "build_site", "static_directory"]
