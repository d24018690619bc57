"""
A small denoise scheduler with the agreed ``DenoiseScheduler`` interface,
used by the live path until the batching scheduler of the DSP package is in.

Each tick (20 ms) takes the whole chunks waiting in every open stream and
runs them through the real L{DenoiseEngine} on one worker thread; the
results come back on the reactor thread as ``on_output(output, raw)``, where
C{raw} is the input delayed by the engine's latency and C{output} is the
denoised signal, or (denoise off) the raw one, switched with the engine's
equal-power crossfade so a toggle never clicks.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from twisted.application.service import Service
from twisted.internet.defer import Deferred
from twisted.internet.task import LoopingCall
from twisted.internet.threads import deferToThread

from denoisecast.dsp.engine import DenoiseEngine
from denoisecast.dsp.ringbuffer import Crossfader
from denoisecast.logs import logger

RATE = 48000
HOP = 480
CHUNK_HOPS = 4
CROSSFADE = 960
#: Backlog (samples) beyond which the oldest input is dropped.
MAX_BACKLOG = RATE
TICK = 0.02

OnOutput = Callable[[np.ndarray, np.ndarray], None]


def to_mono_48k(pcm: np.ndarray, rate: int, channels: int) -> np.ndarray:
    audio = pcm.astype(np.float32)
    if pcm.dtype == np.int16:
        audio /= 32768.0
    if channels > 1:
        audio = audio.reshape(-1, channels).mean(axis=1)
    if rate != RATE and len(audio):
        n = int(round(len(audio) * RATE / rate))
        audio = np.interp(np.arange(n) * (rate / RATE), np.arange(len(audio)), audio).astype(np.float32)
    return audio


class StreamHandle:
    def __init__(
        self, scheduler: "InterimScheduler", stream_id: str, on_output: OnOutput,
        denoise: bool, atten_lim_db: float, input_rate: int, input_channels: int, delay: int,
    ) -> None:
        self.stream_id = stream_id
        self._scheduler = scheduler
        self.on_output = on_output
        self.atten_lim_db = atten_lim_db
        self.input_rate = input_rate
        self.input_channels = input_channels
        self.pending = np.zeros(0, dtype=np.float32)
        self.history = np.zeros(delay, dtype=np.float32)
        self.fader = Crossfader(CROSSFADE, wet=denoise)
        self.state: Any = None
        self.closed = False

    def push(self, pcm: np.ndarray) -> None:
        if self.closed:
            return
        audio = to_mono_48k(pcm, self.input_rate, self.input_channels)
        self.pending = np.concatenate([self.pending, audio])
        if len(self.pending) > MAX_BACKLOG:
            drop = len(self.pending) - MAX_BACKLOG
            self._scheduler.stats["frames_dropped"] += drop // HOP
            self.pending = self.pending[drop:]

    def set_denoise(self, enabled: bool, atten_lim_db: float | None = None) -> None:
        self.fader.wet = enabled
        if atten_lim_db is not None:
            self.atten_lim_db = atten_lim_db

    def close(self) -> None:
        self.closed = True
        self._scheduler._streams.pop(self.stream_id, None)


class InterimScheduler(Service):
    log = logger()

    def __init__(self, model: str = "auto", reactor: Any = None) -> None:
        self.model = model
        self.engine: DenoiseEngine | None = None
        self._streams: dict[str, StreamHandle] = {}
        self._busy = False
        self._loop = LoopingCall(self._tick)
        if reactor is not None:
            self._loop.clock = reactor
        self.ready: Deferred[None] = Deferred()
        self.stats: dict[str, float] = {
            "queue_depth": 0, "batch_size": 0, "chunk_seconds": 0.0,
            "frames_dropped": 0, "passthrough_fallbacks": 0,
        }
        self.observers: list[Callable[[dict[str, float]], None]] = []

    @property
    def latency_seconds(self) -> float:
        return (self._delay() + CHUNK_HOPS * HOP) / RATE

    def _delay(self) -> int:
        return 2400 if self.engine is not None and self.engine.info.model == "deepfilternet2" else 1440

    def startService(self) -> None:
        super().startService()
        # One intra-op thread: small live chunks gain nothing from more, and
        # several threads fighting the reactor for two cores cost 100x.
        torch.set_num_threads(1)
        started = deferToThread(DenoiseEngine.load, self.model)

        def loaded(engine: DenoiseEngine) -> None:
            self.engine = engine
            self._loop.start(TICK, now=False)
            self.ready.callback(None)

        started.addCallbacks(loaded, self.ready.errback)

    def stopService(self) -> None:
        super().stopService()
        if self._loop.running:
            self._loop.stop()
        for handle in list(self._streams.values()):
            handle.close()

    def open_stream(
        self, stream_id: str, on_output: OnOutput, denoise: bool = True,
        atten_lim_db: float = 100.0, input_rate: int = RATE, input_channels: int = 1,
    ) -> StreamHandle:
        handle = StreamHandle(
            self, stream_id, on_output, denoise, atten_lim_db, input_rate, input_channels, self._delay()
        )
        self._streams[stream_id] = handle
        return handle

    def _tick(self) -> None:
        if self._busy or self.engine is None:
            return
        size = CHUNK_HOPS * HOP
        jobs = []
        for handle in self._streams.values():
            whole = (len(handle.pending) // size) * size
            if whole:
                jobs.append((handle, handle.pending[:whole].copy(), handle.atten_lim_db))
                handle.pending = handle.pending[whole:]
        self.stats["queue_depth"] = sum(len(h.pending) for h in self._streams.values()) / HOP
        if not jobs:
            return
        self._busy = True
        self.stats["batch_size"] = len(jobs)
        engine = self.engine
        started = time.perf_counter()

        def work() -> list[tuple[StreamHandle, np.ndarray | None, np.ndarray, Any]]:
            results = []
            for handle, chunk, limit in jobs:
                state = handle.state if handle.state is not None else engine.new_streams(1)
                try:
                    with torch.inference_mode():
                        out, _, state = engine.process(torch.from_numpy(chunk)[None], state, limit)
                    results.append((handle, out[0].cpu().numpy().astype(np.float32), chunk, state))
                except Exception:
                    self.log.failure("Engine failed on {stream}; passing through", stream=handle.stream_id)
                    results.append((handle, None, chunk, None))
            return results

        def deliver(results: list[tuple[StreamHandle, np.ndarray | None, np.ndarray, Any]]) -> None:
            self._busy = False
            self.stats["chunk_seconds"] = time.perf_counter() - started
            for observer in self.observers:
                observer(self.stats)
            for handle, denoised, chunk, state in results:
                if handle.closed:
                    continue
                joined = np.concatenate([handle.history, chunk])
                raw = joined[: len(chunk)].copy()
                handle.history = joined[len(chunk):]
                if denoised is None:
                    self.stats["passthrough_fallbacks"] += 1
                    denoised = raw
                else:
                    handle.state = state
                output = handle.fader.process(raw, denoised)
                try:
                    handle.on_output(output, raw)
                except Exception:
                    self.log.failure("Output of {stream} failed", stream=handle.stream_id)

        def failed(failure: Any) -> None:
            self._busy = False
            self.log.failure("Denoise tick failed", failure)

        deferToThread(work).addCallbacks(deliver, failed)
