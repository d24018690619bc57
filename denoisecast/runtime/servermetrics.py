"""
Prometheus metrics an operator of any server expects: the process (CPU,
memory, file descriptors) and Python (GC, version) collectors, the build,
WebSocket connections and online users, recording bytes and free disk,
database errors and rate-limited requests.

Counts the server keeps anyway are read when scraped.  Disk figures need
file-system calls (``statvfs``, a directory walk), which can block on a slow
or network disk, so L{DiskSampler} takes them on a pool thread every minute
and the collector reports the last sample.
"""

from __future__ import annotations

import os
import platform
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    InfoMetricFamily,
    Metric,
)
from prometheus_client.gc_collector import GCCollector
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector
from twisted.application.internet import TimerService
from twisted.internet.threads import deferToThread

from denoisecast._version import __version__
from denoisecast.runtime.logs import logger

DISK_SAMPLE_SECONDS = 60.0


def add_standard_collectors(registry: CollectorRegistry) -> None:
    """
    The process, platform and GC collectors (prometheus_client registers
    them on its global registry; each server here has its own).
    """
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    GCCollector(registry=registry)


def build_labels() -> dict[str, str]:
    """Versions of DenoiseCast and of the parts whose changes matter most."""
    labels = {"version": __version__, "python": platform.python_version()}
    for package in ("twisted", "aiortc", "torch"):
        try:
            labels[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            labels[package] = "none"
    return labels


@dataclass
class DiskSample:
    free_bytes: float = float("nan")
    total_bytes: float = float("nan")
    recording_bytes: float = float("nan")
    recording_files: float = float("nan")


def sample_disk(data_dir: Path) -> DiskSample:
    """Free space where the data lives, and the size of every recording file."""
    usage = shutil.disk_usage(data_dir)
    size = files = 0
    recordings = data_dir / "recordings"
    if recordings.is_dir():
        for owner in os.scandir(recordings):
            if not owner.is_dir(follow_symlinks=False):
                continue
            for entry in os.scandir(owner.path):
                if entry.is_file(follow_symlinks=False):
                    size += entry.stat(follow_symlinks=False).st_size
                    files += 1
    return DiskSample(float(usage.free), float(usage.total), float(size), float(files))


class DiskSampler(TimerService):
    """Samples the data directory's disk on a pool thread every minute."""

    log = logger()

    def __init__(self, data_dir: Path, reactor: Any, interval: float = DISK_SAMPLE_SECONDS) -> None:
        super().__init__(interval, self.sample)
        self.clock = reactor
        self.data_dir = data_dir
        self.last = DiskSample()

    def sample(self) -> Any:
        def keep(sample: DiskSample) -> None:
            self.last = sample

        def failed(failure: Any) -> None:
            self.last = DiskSample()
            self.log.warn("Cannot measure the data directory {path}: {error}", path=str(self.data_dir), error=failure.value)

        return deferToThread(sample_disk, self.data_dir).addCallbacks(keep, failed)


class ServerMetrics(Collector):
    """
    Reads the server's own counts at scrape time.

    @param connections: the open WebSocket connections (each with a C{user}).
    """

    def __init__(
        self,
        registry: CollectorRegistry,
        connections: Callable[[], Any],
        database_errors: Callable[[], int],
        socket_rate_limited: Callable[[], int],
        disk: DiskSampler,
    ) -> None:
        self._connections = connections
        self._database_errors = database_errors
        self._socket_rate_limited = socket_rate_limited
        self._disk = disk
        self._build = build_labels()
        registry.register(self)

    def collect(self) -> Iterator[Metric]:
        yield InfoMetricFamily(
            "denoisecast_build", "Versions of DenoiseCast, Python and its main parts.", value=self._build
        )
        connections = list(self._connections())
        yield GaugeMetricFamily(
            "denoisecast_websocket_connections", "Open WebSocket (/ws) connections.", value=len(connections)
        )
        online = {c.user["id"] for c in connections if c.user is not None}
        yield GaugeMetricFamily(
            "denoisecast_online_users", "Users with at least one open WebSocket.", value=len(online)
        )
        yield CounterMetricFamily(
            "denoisecast_database_errors",
            "Database operations that failed with a database error (connection lost, timeouts, locks).",
            value=self._database_errors(),
        )
        yield CounterMetricFamily(
            "denoisecast_websocket_rate_limited",
            "WebSocket messages refused with rate_limited (HTTP 429s are counted in denoisecast_http_rate_limited).",
            value=self._socket_rate_limited(),
        )
        disk = self._disk.last
        yield GaugeMetricFamily(
            "denoisecast_data_disk_free_bytes", "Free bytes on the data directory's file system.", value=disk.free_bytes
        )
        yield GaugeMetricFamily(
            "denoisecast_data_disk_size_bytes", "Size of the data directory's file system.", value=disk.total_bytes
        )
        yield GaugeMetricFamily(
            "denoisecast_recordings_bytes", "Bytes of recording files on disk (both tracks).", value=disk.recording_bytes
        )
        yield GaugeMetricFamily(
            "denoisecast_recordings_files", "Recording files on disk (two per broadcast).", value=disk.recording_files
        )
