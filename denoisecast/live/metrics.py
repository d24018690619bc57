"""
Prometheus metrics of the live path: streams, listeners, and the denoise
scheduler's queue depth, batch sizes, chunk latency, dropped frames and
pass-through fallbacks.  Gauges are read when scraped; histograms and
counters are fed by the scheduler's per-tick statistics.
"""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Gauge, Histogram

from denoisecast.live.manager import LiveManager


class LiveMetrics:
    def __init__(self, registry: CollectorRegistry, live: LiveManager, scheduler: Any) -> None:
        self._scheduler = scheduler
        streams = Gauge("denoisecast_live_streams", "Broadcasts live now.", registry=registry)
        streams.set_function(lambda: len(live.broadcasts))
        listeners = Gauge("denoisecast_live_listeners", "Listeners connected now.", registry=registry)
        listeners.set_function(live.listener_count)
        depth = Gauge(
            "denoisecast_engine_queue_depth_hops", "Hops waiting for the engine.", registry=registry
        )
        depth.set_function(lambda: float(scheduler.stats.get("queue_depth", 0)))
        dropped = Gauge(
            "denoisecast_engine_frames_dropped", "Input hops dropped because the engine fell behind (total).",
            registry=registry,
        )
        dropped.set_function(lambda: float(scheduler.stats.get("frames_dropped", 0)))
        fallbacks = Gauge(
            "denoisecast_engine_passthrough_fallbacks",
            "Chunks passed through undenoised because the engine failed (total).",
            registry=registry,
        )
        fallbacks.set_function(lambda: float(scheduler.stats.get("passthrough_fallbacks", 0)))
        self.batch = Histogram(
            "denoisecast_engine_batch_streams", "Streams per engine batch.",
            buckets=(1, 2, 4, 8, 16, 32, 64), registry=registry,
        )
        self.latency = Histogram(
            "denoisecast_engine_chunk_seconds", "Engine time per chunk.",
            buckets=(0.005, 0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64), registry=registry,
        )
        observers = getattr(scheduler, "observers", None)
        if isinstance(observers, list):
            observers.append(self.observe)

    def observe(self, stats: dict[str, Any]) -> None:
        self.batch.observe(float(stats.get("batch_size", 0)))
        self.latency.observe(float(stats.get("chunk_seconds", 0.0)))
