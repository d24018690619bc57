"""
One live stream's slot in the denoise scheduler.

A ``StreamHandle`` is what the live path holds for a broadcast: it converts
pushed audio at the edge, cuts it into chunks, keeps the delay-matched raw
signal and the stream's model state, and delivers finished chunks in order
through its crossfader.  Everything here runs on the reactor thread; the
scheduler decides when a chunk goes to the engine.

The two talk through one explicit interface each way: a slot sees its
scheduler only as a ``SlotOwner`` (below), and the scheduler uses only the
slot's methods under "the scheduler's side".  Neither touches the other's
private state; the queue-depth count is the scheduler's alone.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import numpy as np
import numpy.typing as npt

from denoisecast.audio.resample import StreamResampler
from denoisecast.audio.ringbuffer import HOP_SAMPLES, Crossfader, RingBuffer

if TYPE_CHECKING:
    from twisted.logger import Logger

    from denoisecast.denoise.settings import SchedulerSettings
    from denoisecast.model.pipeline import StreamState

FloatArray = npt.NDArray[np.float32]
OutputCallback = Callable[[FloatArray, FloatArray], None]


@dataclass
class Chunk:
    raw: FloatArray  # delay-matched raw input
    audio: FloatArray | None  # input for the engine; None once passed through
    denoised: FloatArray | None = None
    submitted: bool = False

    @property
    def done(self) -> bool:
        return self.audio is None or self.denoised is not None


class SlotOwner(Protocol):
    """What a stream's slot needs of its scheduler (``DenoiseScheduler`` is one)."""

    settings: SchedulerSettings
    crossfade_samples: int
    delay_samples: int
    #: Whether the engine runs: until it does, chunks pass through raw.
    ready: bool
    log: Logger

    def first_chunk_hops(self) -> int:
        """The length of a new stream's first chunk."""

    def next_chunk_hops(self) -> int:
        """The length of a stream's next chunk, asked as one completes."""

    def queue_changed(self, stream: StreamHandle) -> None:
        """The stream's waiting chunks changed (added, passed through, or its chunk in flight came back)."""

    def passed_through(self, stream: StreamHandle, reason: str) -> None:
        """A chunk of the stream was passed through raw instead of waiting for the engine."""

    def stream_closed(self, stream: StreamHandle) -> None:
        """The stream is closed: forget it."""

    def pump(self) -> None:
        """Start batches if a worker is free and chunks wait."""


class StreamHandle:
    """One live stream's slot in the scheduler; every method runs on the reactor thread."""

    def __init__(
        self,
        scheduler: SlotOwner,
        stream_id: str,
        on_output: OutputCallback,
        denoise: bool,
        atten_lim_db: float,
        input_rate: int,
        input_channels: int,
    ) -> None:
        self.stream_id = stream_id
        self._scheduler = scheduler
        self._on_output = on_output
        self.denoise = denoise
        self.atten_lim_db = float(atten_lim_db)
        self.closed = False
        self._resampler = StreamResampler(input_rate, input_channels)
        hops = scheduler.settings.chunk_hops
        self._buffer = RingBuffer(HOP_SAMPLES * (hops + 1) * 4, HOP_SAMPLES)
        self._fader = Crossfader(scheduler.crossfade_samples, wet=denoise)
        self._raw_tail = np.zeros(scheduler.delay_samples, dtype=np.float32)
        self._chunks: deque[Chunk] = deque()  # in output order, until delivered
        self._waiting: deque[Chunk] = deque()  # not yet given to the engine
        self.state: StreamState | None = None  # model state; None until the first chunk runs
        self.in_flight = False
        self._last_sample = np.float32(0.0)
        self._passing_through = False
        self._next_hops: int | None = None  # length of the chunk being filled; None before any audio

    # -- the live path's interface --------------------------------------

    def push(self, pcm: np.ndarray) -> None:
        """Input samples at the stream's rate (int16 or float32, interleaved if stereo)."""
        if self.closed:
            return
        samples = self._resampler.process(pcm)
        if self._next_hops is None and len(samples):
            self._next_hops = self._scheduler.first_chunk_hops()
        while len(samples):
            taken = self._buffer.write(samples[: self._buffer.free])
            samples = samples[taken:]
            while self._next_hops is not None and self._buffer.hops_available >= self._next_hops:
                self._add_chunk(self._buffer.read_hops(self._next_hops))
                self._next_hops = self._scheduler.next_chunk_hops()
        self._scheduler.pump()

    def set_denoise(self, enabled: bool, atten_lim_db: float | None = None) -> None:
        """
        Switch denoising (and optionally its strength) mid-stream: the next
        output block starts a crossfade, and a new strength applies from the
        next chunk given to the engine.
        """
        self.denoise = bool(enabled)
        if atten_lim_db is not None:
            self.atten_lim_db = float(atten_lim_db)

    def close(self) -> None:
        """Free the slot; a chunk in flight is finished and dropped."""
        if not self.closed:
            self.closed = True
            self._waiting.clear()
            self._chunks.clear()
            self._scheduler.stream_closed(self)

    # -- the scheduler's side --------------------------------------------

    @property
    def waiting(self) -> int:
        """Chunks waiting for the engine."""
        return len(self._waiting)

    @property
    def next_chunk_length(self) -> int:
        """Samples in the oldest chunk waiting for the engine."""
        audio = self._waiting[0].audio
        return 0 if audio is None else len(audio)

    def _add_chunk(self, audio: FloatArray) -> None:
        line = np.concatenate([self._raw_tail, audio])
        raw = line[: len(audio)]
        self._raw_tail = line[len(audio) :]
        chunk = Chunk(raw=raw, audio=audio)
        self._chunks.append(chunk)
        self._waiting.append(chunk)
        if not self._scheduler.ready:
            self._pass_oldest_waiting("engine not ready")
        elif len(self._waiting) > self._scheduler.settings.max_waiting_chunks:
            self._pass_oldest_waiting("engine behind")
        self._scheduler.queue_changed(self)
        self._deliver()

    def _pass_oldest_waiting(self, reason: str) -> None:
        chunk = self._waiting.popleft()
        chunk.audio = None
        self._scheduler.passed_through(self, reason)

    def take_chunk(self) -> Chunk:
        """The oldest waiting chunk, now given to the engine."""
        chunk = self._waiting.popleft()
        chunk.submitted = True
        self.in_flight = True
        return chunk

    def chunk_done(self) -> None:
        """The chunk in flight is back (reactor thread): denoised, or given up as raw."""
        self.chunk_returned()
        self.deliver()

    def chunk_returned(self) -> None:
        """
        The chunk in flight is back, and the stream may join the next pass;
        its output waits for ``deliver`` (the scheduler starts the next pass
        first, so that the worker does not wait for the deliveries).
        """
        self.in_flight = False
        if not self.closed:
            self._scheduler.queue_changed(self)

    def deliver(self) -> None:
        """Hand the chunks that are complete to the listener, in order."""
        self._deliver()

    def delay_changed(self, samples: int) -> None:
        """The engine's output lag, once it has loaded: the raw signal is delayed to match."""
        self._raw_tail = np.zeros(samples, dtype=np.float32)

    def _deliver(self) -> None:
        """Hand completed chunks to the listener, in order."""
        while self._chunks and self._chunks[0].done and not self.closed:
            chunk = self._chunks.popleft()
            if chunk.denoised is None:
                out = self._pass_through(chunk.raw)
            else:
                if self._passing_through:
                    self._passing_through = False
                    self._fader.reset(False)
                self._fader.wet = self.denoise
                out = self._fader.process(chunk.raw, chunk.denoised)
            if len(out):
                self._last_sample = out[-1]
            try:
                self._on_output(out, chunk.raw)
            except Exception:
                self._scheduler.log.failure("Output callback of stream {stream_id} failed", stream_id=self.stream_id)

    def _pass_through(self, raw: FloatArray) -> FloatArray:
        """
        Raw audio in place of denoised audio the engine could not make: there
        is no denoised continuation to crossfade from, so the first samples
        are bent from the last sample played onto the raw signal (a raised-
        cosine correction over the crossfade length), which removes the step.
        """
        out = raw.copy()
        if not self._passing_through and self._fader.position > 0:
            n = min(len(out), max(1, self._fader.length))
            ramp = 0.5 + 0.5 * np.cos(np.pi * np.arange(n, dtype=np.float32) / n)
            out[:n] += (self._last_sample - raw[0]) * ramp.astype(np.float32)
        self._passing_through = True
        self._fader.reset(False)
        return out
