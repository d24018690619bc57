"""
Prometheus metrics of the HTTP server, in a registry owned by the server
object (not the process-global one) so several servers can live in one
process, as they do in the tests.
"""

from __future__ import annotations

import hmac

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.twisted import MetricsResource
from twisted.web.resource import IResource, Resource
from twisted.web.server import Request


class HttpMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.requests = Counter(
            "denoisecast_http_requests",
            "HTTP requests served, by method, route template and status.",
            ["method", "route", "status"],
            registry=registry,
        )
        self.latency = Histogram(
            "denoisecast_http_request_duration_seconds",
            "Time from a request's arrival to its response's end.",
            ["method", "route"],
            registry=registry,
        )

        self.rate_limited = Counter(
            "denoisecast_http_rate_limited",
            "HTTP requests answered 429 (rate limited), by route.",
            ["route"],
            registry=registry,
        )

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        self.requests.labels(method, route, str(status)).inc()
        if status == 429:
            self.rate_limited.labels(route).inc()
        self.latency.labels(method, route).observe(seconds)


def metrics_resource(registry: CollectorRegistry, token: str = "") -> IResource:
    """
    C{/metrics}; with a C{token}, only for requests that present it as a
    bearer token (Prometheus' C{authorization} setting, or C{bearer_token}).
    """
    resource = MetricsResource(registry=registry)
    return BearerProtected(resource, token) if token else resource


class BearerProtected(Resource):
    """A leaf resource answering 401 unless C{Authorization: Bearer <token>}."""

    isLeaf = True

    def __init__(self, inner: IResource, token: str) -> None:
        super().__init__()
        self._inner = inner
        self._token = token.encode()

    def render(self, request: Request) -> bytes | int:
        given = request.getHeader(b"authorization") or b""
        scheme, _, credential = given.partition(b" ")
        if scheme.lower() != b"bearer" or not hmac.compare_digest(credential.strip(), self._token):
            request.setResponseCode(401)
            request.setHeader(b"www-authenticate", b'Bearer realm="metrics"')
            request.setHeader(b"content-type", b"text/plain; charset=utf-8")
            return b"A bearer token is required.\n"
        result: bytes | int = self._inner.render(request)
        return result
