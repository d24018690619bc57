"""
Prometheus metrics of the live path: live streams, listeners, packets
dropped for slow listeners, and the denoise scheduler's queue depth, batch
sizes, model time per chunk, fallbacks to pass-through and errors.

Everything is read from the live manager and the scheduler's counters when
scraped (one custom collector), so the audio path pays nothing for it.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
    SummaryMetricFamily,
)
from prometheus_client.registry import Collector

from denoisecast.live.manager import LiveManager

BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)


class LiveMetrics(Collector):
    def __init__(self, registry: CollectorRegistry, live: LiveManager, scheduler: Any) -> None:
        self._live = live
        self._scheduler = scheduler
        registry.register(self)

    def collect(self) -> Iterator[Metric]:
        live, stats = self._live, self._scheduler.stats
        yield GaugeMetricFamily("denoisecast_live_streams", "Broadcasts live now.", value=len(live.broadcasts))
        yield GaugeMetricFamily("denoisecast_live_listeners", "Listeners connected now.", value=live.listener_count())
        yield CounterMetricFamily(
            "denoisecast_live_listener_packets_dropped",
            "Opus packets dropped because a listener could not keep up (its socket backed up, or it fell 1 s behind).",
            value=live.packets_dropped,
        )
        yield GaugeMetricFamily(
            "denoisecast_engine_streams", "Streams open in the denoise scheduler.", value=stats.streams
        )
        yield GaugeMetricFamily(
            "denoisecast_engine_queue_depth_chunks",
            "Chunks waiting for a denoise worker, all streams.",
            value=stats.queue_depth,
        )
        sizes = HistogramMetricFamily(
            "denoisecast_engine_batch_streams", "Streams per forward pass of the denoise engine."
        )
        counts = stats.batch_sizes
        buckets, total = [], 0
        for bound in BATCH_BUCKETS:
            buckets.append((str(bound), float(sum(n for size, n in counts.items() if size <= bound))))
        total = sum(counts.values())
        buckets.append(("+Inf", float(total)))
        sizes.add_metric([], buckets, float(sum(size * n for size, n in counts.items())))
        yield sizes
        model = SummaryMetricFamily(
            "denoisecast_engine_model_seconds", "Wall time of the denoise engine's forward passes."
        )
        model.add_metric([], stats.batches, stats.model_seconds_total)
        yield model
        yield GaugeMetricFamily(
            "denoisecast_engine_model_seconds_per_chunk",
            "Model time per stream chunk in the last forward pass.",
            value=stats.last_model_seconds_per_chunk,
        )
        yield CounterMetricFamily(
            "denoisecast_engine_fallback_chunks",
            "Chunks passed through undenoised because the engine was behind or not ready (frames dropped from the denoiser).",
            value=stats.fallback_chunks,
        )
        yield CounterMetricFamily(
            "denoisecast_engine_errors", "Forward passes that failed.", value=stats.errors
        )
