"""
The denoise scheduler's settings and their defaults, in one place.

The server's configuration (``denoisecast.app.config``) offers these as
options and takes its defaults from here; the scheduler takes a
``SchedulerSettings``.  Nothing here imports the configuration: it reads
any object with the ``denoise_*`` fields (``DenoiseOptions``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from denoisecast.audio import HOP_SAMPLES, SAMPLE_RATE
from denoisecast.model.config import DEFAULT_RUNTIME as DEFAULT_DENOISE_RUNTIME
from denoisecast.model.config import RUNTIMES as DENOISE_RUNTIMES

#: Chosen from bench/engine.py: see docs/streaming.md.
DEFAULT_DENOISE_CHUNK_SECONDS = 0.1
DEFAULT_DENOISE_CROSSFADE_SECONDS = 0.05
DEFAULT_DENOISE_MAX_BATCH = 64
DEFAULT_DENOISE_WORKERS = 1

#: The live path's gathering wait: one 20 ms WebRTC frame, the spread of
#: aligned streams' chunk completions (see ``SchedulerSettings.gather_seconds``).
LIVE_GATHER_SECONDS = 0.02


class DenoiseOptions(Protocol):
    """The denoise options of the server configuration (``denoisecast.app.config.Config``)."""

    @property
    def denoise_chunk_seconds(self) -> float: ...
    @property
    def denoise_crossfade_seconds(self) -> float: ...
    @property
    def denoise_max_batch(self) -> int: ...
    @property
    def denoise_workers(self) -> int: ...
    @property
    def denoise_device(self) -> str: ...
    @property
    def denoise_half(self) -> bool: ...
    @property
    def denoise_model(self) -> str: ...
    @property
    def denoise_runtime(self) -> str: ...


@dataclass(frozen=True)
class SchedulerSettings:
    """The denoise pool's knobs (resolved from the server configuration)."""

    chunk_seconds: float = DEFAULT_DENOISE_CHUNK_SECONDS
    crossfade_seconds: float = DEFAULT_DENOISE_CROSSFADE_SECONDS
    max_batch: int = DEFAULT_DENOISE_MAX_BATCH
    workers: int = DEFAULT_DENOISE_WORKERS
    device: str = "auto"
    half: bool = False
    model: str = "auto"
    runtime: str = DEFAULT_DENOISE_RUNTIME
    #: Chunks a stream may have waiting (besides the one in flight) before the oldest passes through raw.
    max_waiting_chunks: int = 2
    #: Cut every stream's chunks at the same instants of a shared clock, so
    #: that live streams' chunks are ready together and share forward passes.
    align: bool = False
    #: How long a free worker waits for the chunks of other streams due at
    #: the same instant before it starts a pass with those that are ready.
    gather_seconds: float = 0.0

    def __post_init__(self) -> None:
        if not 0.01 <= self.chunk_seconds <= 8.0:
            raise ValueError(f"chunk length {self.chunk_seconds} s is outside 0.01–8 s")
        if not 0.001 <= self.crossfade_seconds <= 1.0:
            raise ValueError(f"crossfade length {self.crossfade_seconds} s is outside 0.001–1 s")
        if self.max_batch < 1 or self.workers < 1 or self.max_waiting_chunks < 0:
            raise ValueError("max_batch and workers must be at least 1, max_waiting_chunks at least 0")
        if self.runtime not in DENOISE_RUNTIMES:
            raise ValueError(f"runtime {self.runtime!r} is not one of {', '.join(DENOISE_RUNTIMES)}")
        if not 0.0 <= self.gather_seconds <= self.chunk_seconds:
            raise ValueError("gather_seconds must be between 0 and the chunk length")

    @classmethod
    def from_config(cls, config: DenoiseOptions) -> SchedulerSettings:
        """The live path's settings from the server configuration's denoise options."""
        return cls(
            chunk_seconds=config.denoise_chunk_seconds,
            crossfade_seconds=config.denoise_crossfade_seconds,
            max_batch=config.denoise_max_batch,
            workers=config.denoise_workers,
            device=config.denoise_device,
            half=config.denoise_half,
            model=config.denoise_model,
            runtime=config.denoise_runtime,
            align=True,
            gather_seconds=min(LIVE_GATHER_SECONDS, config.denoise_chunk_seconds / 2),
        )

    @property
    def chunk_hops(self) -> int:
        """The chunk in whole 10 ms hops (rounded to the nearest, at least one)."""
        return max(1, round(self.chunk_seconds * SAMPLE_RATE / HOP_SAMPLES))
