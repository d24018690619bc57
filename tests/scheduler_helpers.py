"""
Stand-ins for the scheduler's tests: a reactor that runs thread callbacks at
once, thread pools that run work at once or on demand, and a tiny engine
that only delays and scales its input (so batching logic is tested without
the network).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import torch
from twisted.python.failure import Failure

from denoisecast.denoise.scheduler import DenoiseScheduler, SchedulerSettings


class ImmediateReactor:
    """``callFromThread`` runs the call at once: with a synchronous pool everything happens in the test."""

    def callFromThread(self, f: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
        f(*args, **kwargs)


class SynchronousPool:
    """A thread pool that runs each job in the calling thread, at once."""

    def start(self) -> None:
        pass

    def stop(self) -> None:
        pass

    def callInThreadWithCallback(
        self, on_result: Callable[[bool, Any], None], f: Callable[..., Any], *args: Any, **kwargs: Any
    ) -> None:
        try:
            result = f(*args, **kwargs)
        except BaseException:
            on_result(False, Failure())
        else:
            on_result(True, result)


class ManualPool(SynchronousPool):
    """A thread pool whose jobs wait until the test runs them (an engine slower than real time)."""

    def __init__(self) -> None:
        self.jobs: list[tuple[Callable[[bool, Any], None], Callable[..., Any], tuple[Any, ...]]] = []

    def callInThreadWithCallback(
        self, on_result: Callable[[bool, Any], None], f: Callable[..., Any], *args: Any, **kwargs: Any
    ) -> None:
        self.jobs.append((on_result, f, args))

    def run_all(self) -> None:
        while self.jobs:
            on_result, f, args = self.jobs.pop(0)
            SynchronousPool.callInThreadWithCallback(self, on_result, f, *args)


@dataclass
class DelayState:
    tail: torch.Tensor  # [B, delay]

    @staticmethod
    def concat(states: "list[DelayState]") -> "DelayState":
        return DelayState(torch.cat([s.tail for s in states]))

    def split(self) -> "list[DelayState]":
        return [DelayState(t) for t in self.tail.split(1)]


class DelayEngine:
    """Output = input delayed by ``delay`` samples times ``gain``; records the batch sizes it saw."""

    #: Parts of a batch that run at once (``DenoiseEngine.parallel``): one.
    parallel = 1

    def __init__(self, delay: int = 960, gain: float = 0.5) -> None:
        self.delay = delay
        self.gain = gain
        self.device = torch.device("cpu")
        self.batches: list[int] = []

    def map_parallel(self, work: Any, items: Any) -> list[Any]:
        return [work(self, item) for item in items]

    def fork(self) -> "DelayEngine":
        return self

    def describe(self) -> dict[str, object]:
        return {"model": "delay", "device": "cpu"}

    def new_streams(self, count: int) -> DelayState:
        return DelayState(torch.zeros(count, self.delay))

    def process(self, audio: torch.Tensor, state: DelayState, atten_lim_db: Any = 100.0) -> Any:
        self.batches.append(audio.shape[0])
        line = torch.cat([state.tail, audio], dim=1)
        return line[:, : audio.shape[1]] * self.gain, None, DelayState(line[:, audio.shape[1] :])


def start_scheduler(
    engine: Any, pool: Any = None, **settings: Any
) -> tuple[DenoiseScheduler, Any]:
    """A started scheduler on the immediate reactor and a synchronous (or given) pool."""
    pool = pool or SynchronousPool()
    scheduler = DenoiseScheduler(
        ImmediateReactor(), SchedulerSettings(**settings), engine_factory=lambda: engine, threadpool=pool
    )
    if isinstance(pool, ManualPool):
        scheduler.startService()
        pool.run_all()  # the model load
    else:
        scheduler.startService()
    return scheduler, pool


class Collector:
    """Gathers one stream's output blocks."""

    def __init__(self) -> None:
        self.denoised: list[np.ndarray] = []
        self.raw: list[np.ndarray] = []

    def __call__(self, denoised: np.ndarray, raw: np.ndarray) -> None:
        assert denoised.dtype == np.float32 and raw.dtype == np.float32 and len(denoised) == len(raw)
        self.denoised.append(denoised)
        self.raw.append(raw)

    @property
    def samples(self) -> int:
        return sum(len(b) for b in self.denoised)

    def out(self) -> np.ndarray:
        return np.concatenate(self.denoised) if self.denoised else np.zeros(0, np.float32)

    def raw_out(self) -> np.ndarray:
        return np.concatenate(self.raw) if self.raw else np.zeros(0, np.float32)
