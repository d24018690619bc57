"""
Tests for :mod:`denoisecast.audio.ringbuffer`: every behaviour test runs against
both the compiled module and its plain-Python twin, then the two are checked
against each other on random data, then the selector's fallback is checked.
"""

from __future__ import annotations

import importlib
import os
import sys
import warnings
from types import ModuleType
from typing import Any
from unittest import mock

import numpy as np
from twisted.internet.testing import EventLoggingObserver
from twisted.logger import LogLevel, globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase

from denoisecast.audio import _ringbuffer_py
from denoisecast.audio._ringbuffer_common import RingBufferOverflow

try:
    from denoisecast.audio import _ringbuffer as _compiled
except ImportError as error:  # pragma: no cover - depends on the build
    compiled: ModuleType | None = None
    COMPILED_MISSING = f"compiled module not built: {error}"
else:
    compiled = _compiled
    COMPILED_MISSING = ""


HOP = 480
SELECTOR = "denoisecast.audio.ringbuffer"
COMPILED_NAME = "denoisecast.audio._ringbuffer"


def ramp(start: int, count: int) -> np.ndarray:
    """Samples whose values are their positions in the stream: easy to check."""
    return np.arange(start, start + count, dtype=np.float32)


def sine(frequency: float, count: int, amplitude: float = 0.5,
         phase: float = 0.0) -> np.ndarray:
    t = np.arange(count, dtype=np.float64) / 48_000
    return (amplitude * np.sin(2 * np.pi * frequency * t + phase)).astype(np.float32)


class RingBufferTestsMixin:
    """The ring buffer's behaviour, whichever implementation ``impl`` is."""

    impl: Any

    def test_rejects_bad_geometry_and_policy(self) -> None:
        """A buffer smaller than one hop, or an unknown policy, is refused."""
        self.assertRaises(ValueError, self.impl.RingBuffer, 100, hop=480)
        self.assertRaises(ValueError, self.impl.RingBuffer, 960, hop=0)
        self.assertRaises(ValueError, self.impl.RingBuffer, 960, overflow="block")

    def test_defaults(self) -> None:
        """The defaults are a 10 ms hop and the drop-oldest policy."""
        buffer = self.impl.RingBuffer(4800)
        self.assertEqual(
            (buffer.capacity, buffer.hop, buffer.overflow, buffer.available,
             buffer.hops_available, buffer.free),
            (4800, 480, "drop_oldest", 0, 0, 4800),
        )

    def test_frames_in_hops_out(self) -> None:
        """Two 20 ms frames come out as four 10 ms hops, in order."""
        buffer = self.impl.RingBuffer(4800)
        buffer.write(ramp(0, 960))
        buffer.write(ramp(960, 960))
        self.assertEqual(buffer.hops_available, 4)
        np.testing.assert_array_equal(buffer.read_hops(3), ramp(0, 3 * HOP))
        np.testing.assert_array_equal(buffer.read_hops(1), ramp(3 * HOP, HOP))
        self.assertEqual(buffer.available, 0)

    def test_partial_hops(self) -> None:
        """Writes that are not whole hops wait until a hop is complete."""
        buffer = self.impl.RingBuffer(2000)
        buffer.write(ramp(0, 500))
        self.assertEqual((buffer.available, buffer.hops_available), (500, 1))
        np.testing.assert_array_equal(buffer.read_hops(1), ramp(0, HOP))
        self.assertEqual((buffer.available, buffer.hops_available), (20, 0))
        self.assertRaises(ValueError, buffer.read_hops, 1)
        buffer.write(ramp(500, 459))
        self.assertEqual(buffer.hops_available, 0)
        buffer.write(ramp(959, 1))
        np.testing.assert_array_equal(buffer.read_hops(1), ramp(HOP, HOP))

    def test_read_zero_or_negative_hops(self) -> None:
        """Zero hops is an empty read; a negative count is an error."""
        buffer = self.impl.RingBuffer(960)
        buffer.write(ramp(0, 480))
        self.assertEqual(buffer.read_hops(0).shape, (0,))
        self.assertRaises(ValueError, buffer.read_hops, -1)
        self.assertRaises(ValueError, buffer.skip_hops, -1)
        self.assertEqual(buffer.available, 480)

    def test_wrap_around(self) -> None:
        """
        Odd-sized writes and hop reads through a buffer that is not a multiple
        of the hop wrap around many times and still deliver one unbroken
        stream.
        """
        buffer = self.impl.RingBuffer(1337)
        written = read = 0
        for _ in range(200):
            buffer.write(ramp(written, 333))
            written += 333
            hops = buffer.hops_available
            np.testing.assert_array_equal(
                buffer.read_hops(hops), ramp(read, hops * HOP)
            )
            read += hops * HOP
        self.assertGreater(written, 40 * buffer.capacity)
        self.assertEqual(buffer.available, written - read)
        self.assertEqual(buffer.overflow_count, 0)

    def test_write_across_the_end(self) -> None:
        """A single write that crosses the end of the storage is split right."""
        buffer = self.impl.RingBuffer(1000)
        buffer.write(ramp(0, 960))
        buffer.read_hops(2)
        buffer.write(ramp(960, 960))
        np.testing.assert_array_equal(buffer.read_hops(2), ramp(960, 960))

    def test_peek_does_not_consume(self) -> None:
        """Peeking returns what the next read returns, and leaves it there."""
        buffer = self.impl.RingBuffer(1200)
        buffer.write(ramp(0, 700))
        buffer.read_hops(1)
        buffer.write(ramp(700, 800))
        peeked = buffer.peek_hops(2)
        self.assertEqual(buffer.available, 1020)
        np.testing.assert_array_equal(peeked, buffer.read_hops(2))
        self.assertEqual(buffer.available, 60)
        self.assertRaises(ValueError, buffer.peek_hops, 1)

    def test_skip_after_peek(self) -> None:
        """Skipping consumes exactly the hops a peek looked at."""
        buffer = self.impl.RingBuffer(2000)
        buffer.write(ramp(0, 1500))
        buffer.peek_hops(2)
        buffer.skip_hops(2)
        np.testing.assert_array_equal(buffer.read_hops(1), ramp(960, HOP))
        self.assertRaises(ValueError, buffer.skip_hops, 1)

    def test_read_into_batch_row(self) -> None:
        """
        A read fills a caller's array, such as one row of the scheduler's
        batch, and returns that very array; a wrong size is refused.
        """
        buffer = self.impl.RingBuffer(2000)
        buffer.write(ramp(0, 1500))
        batch = np.zeros((2, 2 * HOP), dtype=np.float32)
        row = batch[1]
        self.assertIs(buffer.read_hops(2, out=row), row)
        np.testing.assert_array_equal(batch[1], ramp(0, 960))
        np.testing.assert_array_equal(batch[0], np.zeros(960, np.float32))
        self.assertRaises(ValueError, buffer.read_hops, 1, np.zeros(100, np.float32))
        self.assertRaises(ValueError, buffer.peek_hops, 1, np.zeros(HOP, np.float64))

    def test_drop_oldest(self) -> None:
        """
        With the default policy an overflowing write keeps the newest audio,
        counts one overflow and the samples lost.
        """
        buffer = self.impl.RingBuffer(1000)
        self.assertEqual(buffer.write(ramp(0, 800)), 800)
        self.assertEqual(buffer.write(ramp(800, 400)), 400)
        self.assertEqual((buffer.available, buffer.overflow_count,
                          buffer.dropped_samples), (1000, 1, 200))
        np.testing.assert_array_equal(buffer.read_hops(2), ramp(200, 960))

    def test_drop_oldest_larger_than_capacity(self) -> None:
        """A write larger than the buffer leaves only its own newest samples."""
        buffer = self.impl.RingBuffer(960)
        buffer.write(ramp(0, 100))
        self.assertEqual(buffer.write(ramp(100, 2000)), 960)
        self.assertEqual((buffer.available, buffer.overflow_count,
                          buffer.dropped_samples), (960, 1, 1140))
        np.testing.assert_array_equal(buffer.read_hops(2), ramp(1140, 960))

    def test_drop_newest(self) -> None:
        """The drop-newest policy keeps the buffer and stores what fits."""
        buffer = self.impl.RingBuffer(1000, overflow="drop_newest")
        buffer.write(ramp(0, 800))
        self.assertEqual(buffer.write(ramp(800, 400)), 200)
        self.assertEqual(buffer.write(ramp(1200, 10)), 0)
        self.assertEqual((buffer.available, buffer.overflow_count,
                          buffer.dropped_samples), (1000, 2, 210))
        np.testing.assert_array_equal(buffer.read_hops(2), ramp(0, 960))

    def test_raise(self) -> None:
        """
        The raise policy refuses the whole write, stores nothing of it and
        counts the overflow but no dropped samples: the caller still has them.
        """
        buffer = self.impl.RingBuffer(1000, overflow="raise")
        buffer.write(ramp(0, 800))
        error = self.assertRaises(RingBufferOverflow, buffer.write, ramp(800, 400))
        self.assertIsInstance(error, OverflowError)
        self.assertEqual((error.requested, error.free), (400, 200))
        self.assertRaises(RingBufferOverflow, buffer.write_int16,
                          np.zeros(201, np.int16))
        self.assertEqual((buffer.available, buffer.overflow_count,
                          buffer.dropped_samples), (800, 2, 0))
        self.assertEqual(buffer.write(ramp(800, 200)), 200)

    def test_clear_keeps_counters(self) -> None:
        """Clearing empties the buffer but not the lifetime overflow counters."""
        buffer = self.impl.RingBuffer(500)
        buffer.write(ramp(0, 600))
        buffer.clear()
        self.assertEqual((buffer.available, buffer.free), (0, 500))
        self.assertEqual((buffer.overflow_count, buffer.dropped_samples), (1, 100))
        buffer.write(ramp(0, 480))
        np.testing.assert_array_equal(buffer.read_hops(1), ramp(0, 480))

    def test_empty_write(self) -> None:
        """An empty write stores nothing and is no overflow, even when full."""
        buffer = self.impl.RingBuffer(480)
        buffer.write(ramp(0, 480))
        self.assertEqual(buffer.write(np.zeros(0, np.float32)), 0)
        self.assertEqual(buffer.write_int16(np.zeros(0, np.int16)), 0)
        self.assertEqual(buffer.overflow_count, 0)

    def test_write_refuses_wrong_arrays(self) -> None:
        """Float64, stereo, strided or non-array input is refused, not converted."""
        buffer = self.impl.RingBuffer(960)
        self.assertRaises(ValueError, buffer.write, np.zeros(10, np.float64))
        self.assertRaises(ValueError, buffer.write, np.zeros((10, 2), np.float32))
        self.assertRaises(ValueError, buffer.write, np.zeros(20, np.float32)[::2])
        self.assertRaises(ValueError, buffer.write_int16, np.zeros(10, np.float32))
        self.assertRaises(TypeError, buffer.write, [0.0, 1.0])
        self.assertEqual(buffer.available, 0)

    def test_write_read_only_frames(self) -> None:
        """
        Read-only arrays, such as a frame viewed straight over a decoder's
        bytes, can be written; the first row of a (1, n) mono frame too.
        """
        buffer = self.impl.RingBuffer(2000)
        frame = np.frombuffer(np.arange(480, dtype=np.int16).tobytes(), np.int16)
        self.assertFalse(frame.flags.writeable)
        self.assertEqual(buffer.write_int16(frame), 480)
        floats = ramp(0, 480)
        floats.flags.writeable = False
        self.assertEqual(buffer.write(floats), 480)
        planar = np.arange(480, dtype=np.int16).reshape(1, 480)
        self.assertEqual(buffer.write_int16(planar[0]), 480)
        self.assertEqual(buffer.hops_available, 3)

    def test_write_int16_scales_and_wraps(self) -> None:
        """int16 frames are stored scaled by 1/32768, across the wrap too."""
        buffer = self.impl.RingBuffer(1200)
        frame = np.arange(-480, 480, dtype=np.int16) * 34
        buffer.write(ramp(0, 600))
        buffer.read_hops(1)
        self.assertEqual(buffer.write_int16(frame), 960)
        expected = frame.astype(np.float32) / np.float32(32768)
        np.testing.assert_array_equal(
            buffer.read_hops(2), np.concatenate([ramp(480, 120), expected[:840]])
        )


class ConversionTestsMixin:
    """int16/float conversion and mixing, whichever implementation ``impl`` is."""

    impl: Any

    def test_int16_round_trip(self) -> None:
        """Every int16 value survives int16 -> float32 -> int16 unchanged."""
        every = np.arange(-32768, 32768, dtype=np.int16)
        floats = self.impl.int16_to_float32(every)
        self.assertEqual(floats.dtype, np.float32)
        self.assertEqual((floats[0], floats[-1]), (-1.0, np.float32(32767 / 32768)))
        np.testing.assert_array_equal(self.impl.float32_to_int16(floats), every)

    def test_float32_to_int16_saturates(self) -> None:
        """Out-of-range, infinite and NaN samples saturate (or go silent), never wrap."""
        loud = np.array([1.0, 1.5, 1e9, np.inf, -1.0, -1.5, -np.inf, np.nan],
                        dtype=np.float32)
        np.testing.assert_array_equal(
            self.impl.float32_to_int16(loud),
            np.array([32767, 32767, 32767, 32767, -32768, -32768, -32768, 0],
                     dtype=np.int16),
        )

    def test_float32_to_int16_rounds_to_nearest(self) -> None:
        """Samples round to the nearest step, ties to even, not toward zero."""
        steps = np.array([0.4, 0.6, 1.5, 2.5, -0.6, -1.5, -2.5, 100.49],
                         dtype=np.float32) / np.float32(32768)
        np.testing.assert_array_equal(
            self.impl.float32_to_int16(steps),
            np.array([0, 1, 2, 2, -1, -2, -2, 100], dtype=np.int16),
        )

    def test_conversions_into_out(self) -> None:
        """Conversions write into a caller's array and check its size and type."""
        out = np.empty(4, np.int16)
        self.assertIs(self.impl.float32_to_int16(np.zeros(4, np.float32), out), out)
        floats = np.empty(4, np.float32)
        self.assertIs(self.impl.int16_to_float32(np.ones(4, np.int16), floats), floats)
        self.assertRaises(ValueError, self.impl.int16_to_float32,
                          np.ones(4, np.int16), np.empty(5, np.float32))
        self.assertRaises(ValueError, self.impl.float32_to_int16,
                          np.ones(4, np.float32), np.empty(4, np.int32))

    def test_mix_into(self) -> None:
        """Mixing adds the scaled source in place, in float32, without clipping."""
        dst = np.array([0.5, -0.5, 0.9, 0.0], dtype=np.float32)
        src = np.array([0.5, 0.25, 0.9, -1.0], dtype=np.float32)
        expected = dst + np.float32(0.5) * src
        self.assertIsNone(self.impl.mix_into(dst, src, 0.5))
        np.testing.assert_array_equal(dst, expected)
        self.impl.mix_into(dst, src)
        np.testing.assert_array_equal(dst, expected + src)
        self.assertGreater(dst[2], 1.0)

    def test_mix_into_refuses_mismatch(self) -> None:
        """Mixing blocks of different lengths or types is an error."""
        dst = np.zeros(4, np.float32)
        self.assertRaises(ValueError, self.impl.mix_into, dst, np.zeros(5, np.float32))
        self.assertRaises(ValueError, self.impl.mix_into, dst, np.zeros(4, np.float64))
        np.testing.assert_array_equal(dst, np.zeros(4, np.float32))


class CrossfadeTestsMixin:
    """The equal-power crossfade, whichever implementation ``impl`` is."""

    impl: Any

    def test_equal_power(self) -> None:
        """Through a whole fade the two gains' squares sum to one."""
        ones, zeros = np.ones(2400, np.float32), np.zeros(2400, np.float32)
        gain_from = self.impl.crossfade(ones, zeros).astype(np.float64)
        gain_to = self.impl.crossfade(zeros, ones).astype(np.float64)
        np.testing.assert_allclose(gain_from**2 + gain_to**2, 1.0, atol=1e-6)
        self.assertTrue(np.all(np.diff(gain_to) > 0))
        self.assertEqual((gain_from[-1], gain_to[-1]), (0.0, 1.0))

    def test_crossfade_then_target(self) -> None:
        """After ``length`` samples a crossfade is exactly the target signal."""
        a, b = sine(440, 1000), sine(300, 1000)
        out = self.impl.crossfade(a, b, 200)
        np.testing.assert_array_equal(out[200:], b[200:])
        self.assertLess(abs(out[0] - a[0]), 1e-3)

    def test_steady_state_passes_through(self) -> None:
        """Without a switch the output is the selected signal, untouched."""
        dry, wet = sine(440, 960), sine(300, 960)
        fader = self.impl.Crossfader(2400)
        np.testing.assert_array_equal(fader.process(dry, wet), dry)
        fader.reset(True)
        np.testing.assert_array_equal(fader.process(dry, wet), wet)
        self.assertEqual((fader.wet, fader.position, fader.fading), (True, 2400, False))

    def test_fade_spans_chunks(self) -> None:
        """
        A fade that starts ten samples before a chunk boundary and lasts five
        chunks gives exactly what one uninterrupted block would give.
        """
        dry, wet = sine(440, 4800), sine(300, 4800, phase=1.0)
        fader = self.impl.Crossfader(2400)
        whole = fader.process(dry[:950], wet[:950])
        fader.wet = True
        whole = np.concatenate([whole, fader.process(dry[950:], wet[950:])])

        chunked = self.impl.Crossfader(2400)
        pieces = [chunked.process(dry[:950], wet[:950])]
        chunked.wet = True
        self.assertTrue(chunked.fading)
        for start in range(950, 4800, 480):
            stop = min(start + 480, 4800)
            pieces.append(chunked.process(dry[start:stop], wet[start:stop]))
            self.assertEqual(chunked.position, min(stop - 950, 2400))
        self.assertFalse(chunked.fading)
        np.testing.assert_array_equal(np.concatenate(pieces), whole)

    def test_no_click(self) -> None:
        """
        Switching between anti-phase signals (the worst case: a hard switch
        jumps by twice the amplitude) moves no faster, sample to sample, than
        the signals themselves, across chunk boundaries and a switch back in
        mid-fade.
        """
        dry = sine(440, 9600)
        wet = -dry
        own_step = max(np.abs(np.diff(dry)).max(), np.abs(np.diff(wet)).max())
        # A hard switch at the wrong moment jumps by up to this much.
        self.assertGreater(np.abs(dry - wet).max(), 30 * own_step)

        fader = self.impl.Crossfader(2400)
        pieces = []
        for index, start in enumerate(range(0, 9600, 960)):
            if index == 2:
                fader.wet = True
            if index == 4:
                fader.wet = False  # back again before the first fade ends
            pieces.append(fader.process(dry[start:start + 960], wet[start:start + 960]))
        out = np.concatenate(pieces)
        self.assertLessEqual(np.abs(np.diff(out)).max(), own_step + 1e-6)
        np.testing.assert_array_equal(out[-960:], dry[-960:])

    def test_reversal_turns_around(self) -> None:
        """A switch back in mid-fade retraces the fade from where it was."""
        fader = self.impl.Crossfader(100, wet=False)
        ones = np.ones(30, np.float32)
        fader.wet = True
        fader.process(ones, ones)
        self.assertEqual(fader.position, 30)
        fader.wet = False
        fader.process(ones, ones)
        self.assertEqual((fader.position, fader.fading), (0, False))

    def test_crossfader_refuses_bad_input(self) -> None:
        """A fade of no length, or blocks of different lengths, is an error."""
        self.assertRaises(ValueError, self.impl.Crossfader, 0)
        fader = self.impl.Crossfader(10)
        self.assertRaises(ValueError, fader.process,
                          np.zeros(4, np.float32), np.zeros(5, np.float32))


class IdenticalResultsTests(SynchronousTestCase):
    """The compiled module and the twin agree bit for bit on random data."""

    if compiled is None:
        skip = COMPILED_MISSING

    def setUp(self) -> None:
        self.random = np.random.default_rng(20261125)

    def test_ring_buffers_agree(self) -> None:
        """Random writes and reads under every policy give identical results."""
        assert compiled is not None
        for policy in ("drop_oldest", "drop_newest", "raise"):
            buffers = [impl.RingBuffer(3000, overflow=policy)
                       for impl in (compiled, _ringbuffer_py)]
            for _ in range(300):
                count = int(self.random.integers(0, 1500))
                if self.random.random() < 0.5:
                    samples: np.ndarray = self.random.standard_normal(count).astype(np.float32)
                    method = "write"
                else:
                    samples = self.random.integers(-32768, 32768, count).astype(np.int16)
                    method = "write_int16"
                results = []
                for buffer in buffers:
                    try:
                        results.append(getattr(buffer, method)(samples))
                    except RingBufferOverflow as error:
                        results.append((error.requested, error.free))
                self.assertEqual(results[0], results[1])
                hops = int(self.random.integers(0, buffers[0].hops_available + 1))
                peeked = [buffer.peek_hops(hops) for buffer in buffers]
                np.testing.assert_array_equal(peeked[0], peeked[1])
                read = [buffer.read_hops(hops) for buffer in buffers]
                np.testing.assert_array_equal(read[0], read[1])
                self.assertEqual(
                    *[(b.available, b.overflow_count, b.dropped_samples) for b in buffers]
                )

    def test_conversions_and_mixing_agree(self) -> None:
        """Random, partly out-of-range samples convert and mix identically."""
        assert compiled is not None
        samples = (self.random.standard_normal(100_000) * 0.7).astype(np.float32)
        np.testing.assert_array_equal(compiled.float32_to_int16(samples),
                                      _ringbuffer_py.float32_to_int16(samples))
        ints = self.random.integers(-32768, 32768, 100_000).astype(np.int16)
        np.testing.assert_array_equal(compiled.int16_to_float32(ints),
                                      _ringbuffer_py.int16_to_float32(ints))
        gain = float(self.random.random())
        mixed = [samples[::-1].copy() for _ in range(2)]
        compiled.mix_into(mixed[0], samples, gain)
        _ringbuffer_py.mix_into(mixed[1], samples, gain)
        np.testing.assert_array_equal(mixed[0], mixed[1])

    def test_crossfades_agree(self) -> None:
        """Random switches over random block sizes crossfade identically."""
        assert compiled is not None
        faders = [impl.Crossfader(2400) for impl in (compiled, _ringbuffer_py)]
        for _ in range(200):
            count = int(self.random.integers(0, 1200))
            dry = self.random.standard_normal(count).astype(np.float32)
            wet = self.random.standard_normal(count).astype(np.float32)
            if self.random.random() < 0.3:
                target = not faders[0].wet
                for fader in faders:
                    fader.wet = target
            outs = [fader.process(dry, wet) for fader in faders]
            np.testing.assert_array_equal(outs[0], outs[1])
            self.assertEqual(faders[0].position, faders[1].position)


class SelectorTests(SynchronousTestCase):
    """:mod:`denoisecast.audio.ringbuffer` picks an implementation and says so."""

    def import_selector(self, block_compiled: bool) -> ModuleType:
        """
        Import a fresh copy of the selector, optionally as if the compiled
        module were not built; the original modules come back afterwards.
        """
        import denoisecast.audio as package

        saved = {name: sys.modules.get(name) for name in (SELECTOR, COMPILED_NAME)}
        saved_attribute = getattr(package, "ringbuffer", None)

        def restore() -> None:
            for name, module in saved.items():
                if module is None:
                    sys.modules.pop(name, None)
                else:
                    sys.modules[name] = module
            if saved_attribute is not None:
                package.ringbuffer = saved_attribute  # type: ignore[attr-defined]

        self.addCleanup(restore)
        sys.modules.pop(SELECTOR, None)
        if block_compiled:
            sys.modules[COMPILED_NAME] = None  # type: ignore[assignment]
        return importlib.import_module(SELECTOR)

    def test_compiled_selected(self) -> None:
        """When the extension is built, the selector exposes it and says so."""
        if compiled is None:
            raise self.skipTest(COMPILED_MISSING)
        with mock.patch.dict(os.environ, {"DENOISECAST_PURE_PYTHON": ""}):
            selector = self.import_selector(block_compiled=False)
        self.assertTrue(selector.COMPILED)
        self.assertIsNone(selector.FALLBACK_REASON)
        self.assertIs(selector.RingBuffer, compiled.RingBuffer)
        self.assertIs(selector.Crossfader, compiled.Crossfader)

    def test_missing_compiled_module_is_loud(self) -> None:
        """
        Without the extension the twin runs, with a RuntimeWarning and a
        logged warning event, and ``COMPILED`` is false for the engine.
        """
        events = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)
        with mock.patch.dict(os.environ, {"DENOISECAST_PURE_PYTHON": ""}), \
                warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            selector = self.import_selector(block_compiled=True)
        self.assertFalse(selector.COMPILED)
        self.assertIs(selector.RingBuffer, _ringbuffer_py.RingBuffer)
        self.assertIn("compiled module missing", selector.FALLBACK_REASON)
        self.assertEqual([w.category for w in caught], [RuntimeWarning])
        self.assertIn("plain-Python twin", str(caught[0].message))
        fallback = [e for e in events if e.get("log_id") == "dsp.ringbuffer.fallback"]
        self.assertEqual(len(fallback), 1)
        self.assertEqual(fallback[0]["log_level"], LogLevel.warn)

    def test_pure_python_on_purpose_is_quiet(self) -> None:
        """Choosing the twin with the environment variable warns nobody."""
        with mock.patch.dict(os.environ, {"DENOISECAST_PURE_PYTHON": "1"}), \
                warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            selector = self.import_selector(block_compiled=False)
        self.assertFalse(selector.COMPILED)
        self.assertIs(selector.RingBuffer, _ringbuffer_py.RingBuffer)
        self.assertEqual(caught, [])


class PythonRingBufferTests(RingBufferTestsMixin, SynchronousTestCase):
    impl = _ringbuffer_py


class CompiledRingBufferTests(RingBufferTestsMixin, SynchronousTestCase):
    impl = compiled
    if compiled is None:
        skip = COMPILED_MISSING


class PythonConversionTests(ConversionTestsMixin, SynchronousTestCase):
    impl = _ringbuffer_py


class CompiledConversionTests(ConversionTestsMixin, SynchronousTestCase):
    impl = compiled
    if compiled is None:
        skip = COMPILED_MISSING


class PythonCrossfadeTests(CrossfadeTestsMixin, SynchronousTestCase):
    impl = _ringbuffer_py


class CompiledCrossfadeTests(CrossfadeTestsMixin, SynchronousTestCase):
    impl = compiled
    if compiled is None:
        skip = COMPILED_MISSING
