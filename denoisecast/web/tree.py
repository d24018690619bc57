"""
The resource tree, assembled from one path -> resource table.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from prometheus_client import CollectorRegistry
from twisted.web.resource import IResource, Resource
from twisted.web.server import Site
from twisted.web.static import File

from denoisecast.web.access import AccessLoggingSite
from denoisecast.web.forwarded import X_FORWARDED, TrustedProxies
from denoisecast.web.metrics import HttpMetrics, metrics_resource
from denoisecast.web.pages import Page
from denoisecast.web.request import DenoiseCastRequest
from denoisecast.web.resource import JsonApi


def build_root(
    api: JsonApi,
    static_dir: Path,
    registry: CollectorRegistry,
    extra: dict[bytes, IResource] | None = None,
) -> Resource:
    table: dict[bytes, IResource] = {
        b"": Page(static_dir / "home.html"),
        b"login": Page(static_dir / "login.html"),
        b"register": Page(static_dir / "register.html"),
        b"static": File(str(static_dir)),
        b"api": api,
        b"metrics": metrics_resource(registry),
        **(extra or {}),
    }
    root = Resource()
    for path, resource in table.items():
        root.putChild(path, resource)
    return root


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
