"""
Tests for denoisecast.denoise.stream: what one stream's slot delivers (the
delay-matched raw signal, converted input, in-order output, the splice when
it falls back to raw audio, closing while a chunk is in flight).  The engine
is a stand-in that only delays and scales.
"""

from __future__ import annotations

import numpy as np
from twisted.trial.unittest import SynchronousTestCase

from tests.dsp_helpers import SR
from tests.scheduler_helpers import Collector, DelayEngine, ManualPool, start_scheduler


def max_step(x: np.ndarray) -> float:
    return float(np.abs(np.diff(x)).max())


class StreamHandleTests(SynchronousTestCase):
    def test_delay_matched_raw(self) -> None:
        """raw is the input delayed by the engine's delay, denoised the engine's output; block lengths are equal."""
        engine = DelayEngine(delay=960, gain=0.5)
        scheduler, _ = start_scheduler(engine, chunk_seconds=0.02)
        out = Collector()
        stream = scheduler.open_stream("a", out)
        signal = np.random.default_rng(0).standard_normal(4800).astype(np.float32)
        for start in range(0, len(signal), 333):
            stream.push(signal[start : start + 333])
        expected = np.concatenate([np.zeros(960, np.float32), signal])[: out.samples]
        np.testing.assert_array_equal(out.raw_out(), expected)
        np.testing.assert_allclose(out.out(), 0.5 * expected, atol=1e-7)

    def test_int16_stereo_16k_input(self) -> None:
        """16 kHz interleaved int16 stereo becomes 48 kHz mono: three times the frames come out."""
        scheduler, _ = start_scheduler(DelayEngine(), chunk_seconds=0.01)
        out = Collector()
        stream = scheduler.open_stream("a", out, input_rate=16000, input_channels=2)
        stream.push(np.zeros(2 * 1600, np.int16))
        self.assertEqual(out.samples % 480, 0)
        self.assertGreaterEqual(out.samples, 4800 - 3 * 16 - 480)

    def test_close_while_in_flight(self) -> None:
        """A stream closed while its chunk is in flight gets no more output, and the pool goes on."""
        pool = ManualPool()
        scheduler, _ = start_scheduler(DelayEngine(), pool, chunk_seconds=0.01)
        gone, kept = Collector(), Collector()
        a = scheduler.open_stream("a", gone)
        b = scheduler.open_stream("b", kept)
        a.push(np.ones(480, np.float32))
        b.push(np.ones(480, np.float32))
        a.close()
        a.push(np.ones(480, np.float32))
        pool.run_all()
        b.push(np.ones(480, np.float32))
        pool.run_all()
        self.assertEqual((gone.samples, kept.samples), (0, 960))
        self.assertEqual(scheduler.stats.streams, 1)
        scheduler.open_stream("a", Collector())  # the id is free again

    def test_pass_through_is_spliced(self) -> None:
        """Falling from denoised to raw audio leaves no step larger than the signals' own."""
        pool = ManualPool()
        scheduler, _ = start_scheduler(DelayEngine(delay=0, gain=0.3), pool, chunk_seconds=0.01, max_waiting_chunks=0)
        out = Collector()
        stream = scheduler.open_stream("a", out)
        t = np.arange(480 * 12) / SR
        signal = (0.5 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)
        stream.push(signal[:480])
        pool.run_all()
        for i in range(1, 12):  # the worker stalls: all but one of these pass through
            stream.push(signal[i * 480 : (i + 1) * 480])
        pool.run_all()
        played = out.out()
        self.assertEqual(len(played), len(signal))
        self.assertGreater(scheduler.stats.fallback_chunks, 0)
        self.assertLessEqual(max_step(played), 1.2 * max_step(signal))

