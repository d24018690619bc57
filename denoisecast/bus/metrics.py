"""
The live bus in Prometheus: whether it reaches the other nodes, how many
nodes are alive, what it sent, received and dropped; this node's lease in
the database, and the rate-limit writes that did not reach Redis.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, InfoMetricFamily, Metric
from prometheus_client.registry import Collector

from denoisecast.bus.base import LiveBus
from denoisecast.live.lease import NodeLease


class BusMetrics(Collector):
    def __init__(
        self, registry: CollectorRegistry, bus: LiveBus, alive_nodes: Callable[[], int], lease: NodeLease
    ) -> None:
        self._bus = bus
        self._alive_nodes = alive_nodes
        self._lease = lease
        registry.register(self)

    def collect(self) -> Iterator[Metric]:
        bus = self._bus
        yield InfoMetricFamily(
            "denoisecast_node", "This node's id on the live bus, and the bus.",
            value={"node_id": bus.node_id, "bus": bus.kind, "url": bus.node.url},
        )
        yield GaugeMetricFamily(
            "denoisecast_bus_connected", "1 while the live bus reaches the other nodes (Redis), else 0.",
            value=1.0 if bus.connected else 0.0,
        )
        yield GaugeMetricFamily(
            "denoisecast_bus_nodes", "Nodes whose heartbeat this node saw at its last check (itself included).",
            value=self._alive_nodes(),
        )
        headroom = bus.headroom()
        yield GaugeMetricFamily(
            "denoisecast_node_headroom",
            "Streams this node's denoiser can still take in real time, as its heartbeat announces "
            "(from the last measured model time; NaN before one was measured).",
            value=float("nan") if headroom is None else float(headroom),
        )
        yield CounterMetricFamily("denoisecast_bus_events_sent", "Events this node published.", value=bus.events_sent)
        yield CounterMetricFamily(
            "denoisecast_bus_events_received", "Events from other nodes.", value=bus.events_received
        )
        yield CounterMetricFamily(
            "denoisecast_bus_events_dropped",
            "Events that could not reach the other nodes (Redis unreachable).",
            value=bus.events_dropped,
        )
        held = self._lease.held
        yield GaugeMetricFamily(
            "denoisecast_node_lease_held",
            "1 while this node's last lease renewal in the database succeeded, 0 while renewals fail "
            "(other nodes repair its recordings once the lease runs out); NaN without a shared bus.",
            value=float("nan") if held is None else float(held),
        )
        yield CounterMetricFamily(
            "denoisecast_node_lease_renewals", "Renewals of this node's lease in the database.",
            value=self._lease.renewals,
        )
        yield CounterMetricFamily(
            "denoisecast_node_lease_renewals_failed", "Lease renewals the database refused or did not answer.",
            value=self._lease.failed_renewals,
        )
        yield CounterMetricFamily(
            "denoisecast_bus_limit_writes_dropped",
            "Rate-limit failures and resets not written to Redis (unreachable or too slow); "
            "failures are written back from memory after the next reconnect.",
            value=0 if bus.failures is None else bus.failures.dropped,
        )
