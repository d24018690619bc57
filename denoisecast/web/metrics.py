"""
Prometheus metrics of the HTTP server, in a registry owned by the server
object (not the process-global one) so several servers can live in one
process, as they do in the tests.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.twisted import MetricsResource
from twisted.web.resource import IResource


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

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        self.requests.labels(method, route, str(status)).inc()
        self.latency.labels(method, route).observe(seconds)


def metrics_resource(registry: CollectorRegistry) -> IResource:
    return MetricsResource(registry=registry)
