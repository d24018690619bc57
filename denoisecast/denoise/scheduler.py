"""
The batched denoise worker pool of the live path.

Every live stream pushes its audio on the reactor thread; the scheduler
resamples it to 48 kHz mono, collects it in the stream's ring buffer and
cuts it into chunks of whole 10 ms hops.  Ready chunks of all streams are
gathered into batched forward passes (one chunk per stream per pass, up to
``max_batch`` streams) that run on a worker thread pool, each worker with
its own engine on the shared weights.  Results come back on the reactor
thread, where each stream's output is crossfaded between the denoised
signal and the delay-matched raw input and handed to ``on_output``.

Each stream's model state (``StreamState``) travels with its chunk to the
worker and back, so a stream can join or leave between any two passes, and
a stream has at most one chunk in flight: its chunks are processed in
order, each with the state the previous one left.  The concatenated output
is therefore the engine's offline output delayed by ``engine.delay``.

When the engine falls behind real time, a stream's chunks pile up; rather
than letting the queue grow, the oldest waiting chunk beyond
``max_waiting_chunks`` is passed through raw (counted, logged), spliced
onto what the stream played before so there is no click, and the stream
fades back to denoised audio as soon as the engine catches up.  The reactor
thread never runs model code: concatenating states, the forward pass and
splitting states all happen on the worker.
"""

from __future__ import annotations

import time
from collections import Counter, OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt
from twisted.application.service import Service
from twisted.internet import defer
from twisted.internet.threads import deferToThreadPool
from twisted.python.threadpool import ThreadPool

from denoisecast.audio import SAMPLE_RATE
from denoisecast.audio.ringbuffer import COMPILED, HOP_SAMPLES
from denoisecast.denoise.settings import SchedulerSettings
from denoisecast.denoise.stream import Chunk, FloatArray, OutputCallback, StreamHandle
from denoisecast.runtime.logs import logger

if TYPE_CHECKING:
    from denoisecast.model.engine import DenoiseEngine
    from denoisecast.model.pipeline import StreamState

__all__ = ["DenoiseScheduler", "SchedulerSettings", "SchedulerStats", "StreamHandle", "run_batch"]

#: Output lag of DeepFilterNet3 (the bundled model) until an engine reports its own.
DEFAULT_DELAY_SAMPLES = 1440
HOP_SECONDS = HOP_SAMPLES / SAMPLE_RATE
#: Hops a stream's chunk completion may stray from the shared instants before
#: its next chunk is made a hop shorter or longer to bring it back.
DRIFT_HOPS = 2.5


@dataclass
class SchedulerStats:
    """Counters for the metrics endpoint; read on the reactor thread."""

    streams: int = 0
    queue_depth: int = 0  # chunks waiting for a worker, all streams
    in_flight_batches: int = 0
    batches: int = 0
    chunks_denoised: int = 0
    batch_sizes: Counter[int] = field(default_factory=Counter)
    model_seconds_total: float = 0.0
    last_model_seconds: float = 0.0  # wall time of the last forward pass (whole batch)
    last_model_seconds_per_chunk: float = 0.0
    fallback_chunks: int = 0  # chunks passed through raw because the engine was behind (or not ready)
    errors: int = 0

    def snapshot(self) -> dict[str, float]:
        """Plain numbers for a metrics exporter (batch sizes as their mean and maximum)."""
        sizes = self.batch_sizes
        total = sum(sizes.values())
        return {
            "streams": self.streams,
            "queue_depth": self.queue_depth,
            "in_flight_batches": self.in_flight_batches,
            "batches": self.batches,
            "chunks_denoised": self.chunks_denoised,
            "batch_size_mean": sum(k * v for k, v in sizes.items()) / total if total else 0.0,
            "batch_size_max": max(sizes) if sizes else 0,
            "model_seconds_total": self.model_seconds_total,
            "last_model_seconds": self.last_model_seconds,
            "last_model_seconds_per_chunk": self.last_model_seconds_per_chunk,
            "fallback_chunks": self.fallback_chunks,
            "errors": self.errors,
        }


class DenoiseScheduler(Service):
    """
    Owns the worker thread pool, one engine per worker and the batching.
    ``startService`` loads the model in a thread; ``stopService`` waits for
    the batches in flight.
    """

    log = logger()

    def __init__(
        self,
        reactor: Any,
        settings: SchedulerSettings | None = None,
        engine_factory: "Callable[[], DenoiseEngine] | None" = None,
        threadpool: ThreadPool | None = None,
    ) -> None:
        self.reactor = reactor
        self.settings = settings or SchedulerSettings()
        self._engine_factory = engine_factory or self._load_engine
        self._own_pool = threadpool is None
        self._pool = threadpool
        self._free_engines: list[DenoiseEngine] = []
        self._streams: dict[str, StreamHandle] = {}
        # Each open stream's waiting chunks as last counted, and their sum
        # (the queue depth), kept up to date stream by stream: recounting
        # every stream whenever one changed cost O(streams) per chunk.
        self._waiting_counts: dict[str, int] = {}
        self._waiting_total = 0
        # Streams with a waiting chunk and none in flight, in the order they became ready.
        self._ready: OrderedDict[str, StreamHandle] = OrderedDict()
        self._in_flight: set[defer.Deferred[Any]] = set()
        self.stats = SchedulerStats()
        self.ready = False
        self._settled = False
        self._settle_waiters: list[defer.Deferred[None]] = []
        self.delay_samples = DEFAULT_DELAY_SAMPLES
        self.crossfade_samples = round(self.settings.crossfade_seconds * SAMPLE_RATE)
        self.engine_info: dict[str, object] = {}
        self._behind_logged: set[str] = set()
        self._epoch = 0.0
        self._ready_since: float | None = None
        self._gather_call: Any = None

    @property
    def latency_seconds(self) -> float:
        """The fixed latency the path adds: one chunk plus the model's own delay."""
        return (self.settings.chunk_hops * HOP_SAMPLES + self.delay_samples) / SAMPLE_RATE

    def headroom(self) -> int | None:
        """
        How many more streams this pool can take in real time, from the
        engine's own last measured model time per chunk (GPU or CPU):
        C{workers x chunk length / seconds per chunk}, less the streams it
        has.  Conservative at low load (larger batches cost less per
        chunk).  C{None} before anything was measured; 0 without a model.
        """
        if not self.ready:
            return 0 if self._settled else None
        per_chunk = self.stats.last_model_seconds_per_chunk
        if per_chunk <= 0:
            return None
        chunk_seconds = self.settings.chunk_hops * HOP_SAMPLES / SAMPLE_RATE
        return max(0, int(self.settings.workers * chunk_seconds / per_chunk) - len(self._streams))

    def _load_engine(self) -> "DenoiseEngine":
        from denoisecast.model.engine import DenoiseEngine

        return DenoiseEngine.load(self.settings.model, device=self.settings.device, runtime=self.settings.runtime)

    # -- service ---------------------------------------------------------

    def startService(self) -> "defer.Deferred[Any]":
        super().startService()
        self._epoch = self.reactor.seconds() if self.settings.align else 0.0
        if self._pool is None:
            self._pool = ThreadPool(self.settings.workers, self.settings.workers, "denoise")
        self._pool.start()
        d = deferToThreadPool(self.reactor, self._pool, self._load_and_warm_up)
        d.addCallbacks(self._engine_loaded, self._engine_failed)
        return d

    def _load_and_warm_up(self) -> "DenoiseEngine":
        """(Worker thread.)  The engine, with its first-pass costs paid before any stream waits on them."""
        engine = self._engine_factory()
        warm_up = getattr(engine, "warm_up", None)
        if warm_up is not None:
            warm_up()
        return engine

    def when_settled(self) -> "defer.Deferred[None]":
        """
        Fires once the model has loaded, or failed to load (then streams
        pass through raw).  The server opens its listeners only then, so
        the first broadcast after a start is not passed through raw while
        the model is still loading.
        """
        if self._settled:
            return defer.succeed(None)
        d: defer.Deferred[None] = defer.Deferred()
        self._settle_waiters.append(d)
        return d

    def _settle(self) -> None:
        self._settled = True
        waiters, self._settle_waiters = self._settle_waiters, []
        for d in waiters:
            d.callback(None)

    def _engine_failed(self, failure: Any) -> None:
        self.log.failure(
            "Could not load the denoise model; live audio passes through raw", failure, log_id="dsp.scheduler.load"
        )
        self._settle()

    def _engine_loaded(self, engine: "DenoiseEngine") -> None:
        from denoisecast.model.half import use_half_precision

        engines = [engine] + [engine.fork() for _ in range(self.settings.workers - 1)]
        if self.settings.half:
            if not all([use_half_precision(e) for e in engines]):
                self.log.warn("Half precision needs a GPU; running fp32 on {device}", device=str(engine.device))
        self._free_engines = engines
        self.delay_samples = engine.delay
        # What runs, for health endpoints: the model, its weights, the device, and whether the
        # compiled ring buffer runs (the plain-Python twin is a deployment problem).
        self.engine_info = {**engine.describe(), "ringbuffer_compiled": COMPILED}
        for stream in self._streams.values():
            stream.delay_changed(self.delay_samples)
        self.ready = True
        self.log.info(
            "Denoise pool ready: {workers} workers, chunks of {chunk_seconds} s, batches up to {max_batch}, "
            "latency {latency_seconds} s, compiled ring buffer {ringbuffer_compiled}",
            workers=self.settings.workers,
            chunk_seconds=self.settings.chunk_hops * HOP_SAMPLES / SAMPLE_RATE,
            max_batch=self.settings.max_batch,
            latency_seconds=self.latency_seconds,
            ringbuffer_compiled=COMPILED,
            log_id="dsp.scheduler.ready",
        )
        self._settle()
        self.pump()

    def stopService(self) -> "defer.Deferred[None]":
        super().stopService()
        self.ready = False
        if self._gather_call is not None and self._gather_call.active():
            self._gather_call.cancel()
        self._gather_call = None
        d: defer.Deferred[Any] = defer.DeferredList(list(self._in_flight))

        def stop_pool(_: object) -> None:
            if self._own_pool and self._pool is not None:
                self._pool.stop()

        d.addCallback(stop_pool)
        return d

    # -- streams ---------------------------------------------------------

    def open_stream(
        self,
        stream_id: str,
        on_output: OutputCallback,
        denoise: bool = True,
        atten_lim_db: float = 100.0,
        input_rate: int = SAMPLE_RATE,
        input_channels: int = 1,
    ) -> StreamHandle:
        """A slot for a new live stream; ``on_output(denoised, raw)`` is called on the reactor thread."""
        if stream_id in self._streams:
            raise ValueError(f"stream {stream_id!r} is already open")
        handle = StreamHandle(self, stream_id, on_output, denoise, atten_lim_db, input_rate, input_channels)
        self._streams[stream_id] = handle
        self.stats.streams = len(self._streams)
        return handle

    # -- the slots' side (``stream.SlotOwner``) ---------------------------

    def stream_closed(self, stream: StreamHandle) -> None:
        if self._streams.get(stream.stream_id) is stream:
            del self._streams[stream.stream_id]
        self._ready.pop(stream.stream_id, None)
        self._behind_logged.discard(stream.stream_id)
        self.stats.streams = len(self._streams)
        self._waiting_total -= self._waiting_counts.pop(stream.stream_id, 0)
        self.stats.queue_depth = self._waiting_total

    def queue_changed(self, stream: StreamHandle) -> None:
        """A stream with waiting chunks and none in flight becomes ready for a batch."""
        if stream.waiting and not stream.in_flight and stream.stream_id not in self._ready:
            if not self._ready and self.settings.gather_seconds:
                self._ready_since = self.reactor.seconds()
            self._ready[stream.stream_id] = stream
        self._count_queue(stream)

    def _count_queue(self, *streams: StreamHandle) -> None:
        """
        The queue depth, counted here only: chunks waiting for a worker, all
        streams.  ``streams`` are those whose waiting chunks may have changed.
        """
        for stream in streams:
            if self._streams.get(stream.stream_id) is stream:
                now = stream.waiting
                self._waiting_total += now - self._waiting_counts.get(stream.stream_id, 0)
                self._waiting_counts[stream.stream_id] = now
        self.stats.queue_depth = self._waiting_total

    # -- the shared chunk clock ------------------------------------------

    def first_chunk_hops(self) -> int:
        """
        The length of a new stream's first chunk: up to the next instant of
        the shared chunk clock, so that its later chunks complete together
        with every other stream's (when ``align`` is on; else a whole chunk).
        Streaming is exact for any chunk lengths, so this costs nothing.
        """
        hops = self.settings.chunk_hops
        if not self.settings.align:
            return hops
        past = int((self.reactor.seconds() - self._epoch) / HOP_SECONDS) % hops
        return hops - past

    def next_chunk_hops(self) -> int:
        """
        The length of a stream's next chunk, asked just as one completed: a
        whole chunk, or a hop less or more when the stream's audio clock has
        drifted more than ``DRIFT_HOPS`` from the shared instants (such a
        chunk runs in a pass of its own or with others of its length).
        """
        hops = self.settings.chunk_hops
        if not self.settings.align or hops < 4 * DRIFT_HOPS:
            return hops
        phase = ((self.reactor.seconds() - self._epoch) / HOP_SECONDS) % hops
        if phase > hops / 2:
            phase -= hops
        if phase > DRIFT_HOPS:
            return hops - 1
        if phase < -DRIFT_HOPS:
            return hops + 1
        return hops

    def _should_gather(self) -> bool:
        """
        Whether a free worker should wait a little: some streams that are
        not in flight still owe the chunk due now, and the oldest waiting
        chunk has waited less than ``gather_seconds``.  If so, a later pump
        is scheduled for when the wait ends.
        """
        wait = self.settings.gather_seconds
        if not wait or self._ready_since is None or len(self._ready) >= self.settings.max_batch:
            return False
        owing = sum(1 for s in self._streams.values() if not s.in_flight and s.stream_id not in self._ready)
        if not owing:
            return False
        remaining = self._ready_since + wait - self.reactor.seconds()
        if remaining <= 0:
            return False
        if self._gather_call is None or not self._gather_call.active():
            self._gather_call = self.reactor.callLater(remaining, self.pump)
        return True

    def passed_through(self, handle: StreamHandle, reason: str) -> None:
        self._count_queue(handle)
        self.stats.fallback_chunks += 1
        if handle.stream_id not in self._behind_logged:
            self._behind_logged.add(handle.stream_id)
            self.log.warn(
                "Denoise pool cannot serve stream {stream_id} in real time ({reason}); passing its audio through",
                stream_id=handle.stream_id,
                reason=reason,
                queue_depth=self.stats.queue_depth,
                fallback_chunks=self.stats.fallback_chunks,
                log_id="dsp.scheduler.behind",
            )

    # -- batching --------------------------------------------------------

    def pump(self) -> None:
        """Start batches while a worker is free and chunks are waiting (reactor thread)."""
        while self.ready and self._free_engines and self._ready:
            if self._should_gather():
                return
            # One pass holds chunks of one length: the first waiting chunk's.
            length = next(iter(self._ready.values())).next_chunk_length
            # Spread the waiting streams evenly over the free workers: on the
            # CPU two passes of 32 on two workers finish in about half the
            # time of one pass of 64, while the other worker would idle.
            alike = sum(1 for s in self._ready.values() if s.next_chunk_length == length)
            size = min(self.settings.max_batch, -(-alike // len(self._free_engines)))
            batch: list[tuple[StreamHandle, Chunk]] = []
            for stream in list(self._ready.values()):
                if len(batch) == size:
                    break
                if stream.next_chunk_length == length:
                    del self._ready[stream.stream_id]
                    batch.append((stream, stream.take_chunk()))
            self._ready_since = self.reactor.seconds() if self._ready and self.settings.gather_seconds else None
            self._submit(batch)

    def _submit(self, batch: list[tuple[StreamHandle, Chunk]]) -> None:
        assert self._pool is not None
        self._count_queue(*(stream for stream, _ in batch))
        engine = self._free_engines.pop()
        # A chunk given to the engine still has its audio (only passed-through chunks lose it).
        audio = np.stack([chunk.audio for _, chunk in batch])  # type: ignore[misc]
        limits = np.array([s.atten_lim_db for s, _ in batch], dtype=np.float32)
        states = [s.state for s, _ in batch]
        d = deferToThreadPool(self.reactor, self._pool, run_batch, engine, audio, states, limits)
        self._in_flight.add(d)
        self.stats.in_flight_batches = len(self._in_flight)

        released = False

        def release() -> None:
            # The engine is free again: the next pass may start.
            nonlocal released
            if not released:
                released = True
                self._in_flight.discard(d)
                self.stats.in_flight_batches = len(self._in_flight)
                self._free_engines.append(engine)
                self.pump()

        def done(result: tuple[FloatArray, list["StreamState"], float]) -> None:
            out, new_states, seconds = result
            self.stats.batches += 1
            self.stats.chunks_denoised += len(batch)
            self.stats.batch_sizes[len(batch)] += 1
            self.stats.model_seconds_total += seconds
            self.stats.last_model_seconds = seconds
            self.stats.last_model_seconds_per_chunk = seconds / len(batch)
            for row, (stream, chunk) in enumerate(batch):
                stream.state = new_states[row]
                chunk.denoised = out[row]
                stream.chunk_returned()
            # The next pass starts before this one's output is delivered
            # (crossfades, the listeners' and recorder's callbacks), so that
            # the worker computes while the reactor delivers.
            release()
            for stream, _ in batch:
                stream.deliver()

        def failed(failure: Any) -> None:
            self.stats.errors += 1
            self.log.failure("Denoise batch failed; its chunks pass through", failure, log_id="dsp.scheduler.error")
            for stream, chunk in batch:
                chunk.audio = None
                self.stats.fallback_chunks += 1
                stream.chunk_done()

        def finally_(_: object) -> None:
            release()

        d.addCallbacks(done, failed)
        d.addBoth(finally_)


def run_batch(
    engine: "DenoiseEngine",
    audio: FloatArray,
    states: "list[StreamState | None]",
    limits: npt.NDArray[np.float32],
) -> tuple[FloatArray, "list[StreamState]", float]:
    """
    One forward pass of a batch on a worker thread: gathers the streams'
    states (fresh ones for streams that start), runs the engine with a
    per-stream attenuation limit and splits the new state per stream.
    A long chunk is run as consecutive pieces of ``auto_chunk_frames`` hops
    (the result is the same, streaming is exact): on the CPU a pass over
    about 800 stream-hops keeps the activations in cache and measured up to
    1.6x faster than one pass over a 2 s chunk of 16 streams.  A batch of
    more than 64 streams runs in groups of 64 (``auto_batch_rows``).
    """
    import torch

    from denoisecast.model.pipeline import auto_batch_rows, auto_chunk_frames

    started = time.perf_counter()
    rows = [s if s is not None else engine.new_streams(1) for s in states]
    tensor = torch.from_numpy(audio).to(engine.device)
    limit = torch.from_numpy(limits).to(engine.device)
    group = auto_batch_rows(len(rows), engine.device)
    # An engine with several one-thread sessions runs that many groups at once.
    group = min(group, -(-len(rows) // engine.parallel))
    step = auto_chunk_frames(group, engine.device) * HOP_SAMPLES

    def run_group(worker: "DenoiseEngine", first: int) -> "tuple[torch.Tensor, list[StreamState]]":
        last = min(first + group, len(rows))
        new = type(rows[0]).concat(rows[first:last]) if last - first > 1 else rows[first]
        pieces = []
        for start in range(0, tensor.shape[1], step):
            out, _, new = worker.process(tensor[first:last, start : start + step], new, limit[first:last])
            pieces.append(out)
        return torch.cat(pieces, dim=1) if len(pieces) > 1 else pieces[0], new.split() if last - first > 1 else [new]

    done = engine.map_parallel(run_group, range(0, len(rows), group))
    results = [out for out, _ in done]
    split: "list[StreamState]" = [state for _, states in done for state in states]
    result = (torch.cat(results) if len(results) > 1 else results[0]).float().cpu().numpy()
    return result, split, time.perf_counter() - started
