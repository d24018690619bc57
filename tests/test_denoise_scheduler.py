"""
Tests for denoisecast.denoise.scheduler: batching, exact streaming against the
engine's offline output, join and leave, switches without clicks, falling
behind, and the threads model code runs on.
"""

from __future__ import annotations

import threading
from typing import Any

import numpy as np
import torch
from twisted.internet import defer, reactor, task
from twisted.logger import globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase, TestCase

from denoisecast.denoise.scheduler import DenoiseScheduler, SchedulerSettings, run_batch

from tests.dsp_helpers import SR, mix, noise
from tests.scheduler_helpers import Collector, DelayEngine, ManualPool, SynchronousPool, start_scheduler


def bundled_engine(device: str = "cpu") -> Any:
    from denoisecast.model.engine import DenoiseEngine

    torch.set_num_threads(2)
    return DenoiseEngine.load("deepfilternet3", device=device)


_engines: dict[str, Any] = {}


def shared_engine(device: str = "cpu") -> Any:
    """One engine per device for the whole module (loading takes seconds)."""
    if device not in _engines:
        _engines[device] = bundled_engine(device)
    return _engines[device]


def speechlike(seconds: float, seed: int) -> np.ndarray:
    """A gated tone in coloured noise: denoising changes it audibly."""
    n = int(seconds * SR)
    t = np.arange(n) / SR
    tone = (0.2 * np.sin(2 * np.pi * (170 + 23 * seed) * t) * (np.sin(2 * np.pi * 3 * t) > 0)).astype(np.float32)
    return mix(tone, noise(("white", "pink", "brown")[seed % 3], n, seed=seed), 5.0)


def max_step(x: np.ndarray) -> float:
    return float(np.abs(np.diff(x)).max())


class SettingsTests(SynchronousTestCase):
    def test_chunk_range(self) -> None:
        """Chunk lengths outside 0.01–8 s are refused; inside they round to whole 10 ms hops."""
        for bad in (0.005, 8.5):
            with self.assertRaises(ValueError):
                SchedulerSettings(chunk_seconds=bad)
        self.assertEqual(SchedulerSettings(chunk_seconds=0.01).chunk_hops, 1)
        self.assertEqual(SchedulerSettings(chunk_seconds=8.0).chunk_hops, 800)
        self.assertEqual(SchedulerSettings(chunk_seconds=0.104).chunk_hops, 10)

    def test_from_config(self) -> None:
        """The server configuration's denoise options become the scheduler's settings."""
        from denoisecast.app.config import Config

        config = Config.resolve({"denoise-chunk-seconds": "0.5", "denoise-workers": "2", "denoise-model": "x"}, {})
        settings = SchedulerSettings.from_config(config)
        self.assertEqual((settings.chunk_seconds, settings.workers, settings.model), (0.5, 2, "x"))
        self.assertEqual(SchedulerSettings().chunk_seconds, Config().denoise_chunk_seconds)

    def test_reports_what_runs(self) -> None:
        """engine_info names the model and whether the compiled ring buffer runs."""
        from denoisecast.audio import ringbuffer

        scheduler, _ = start_scheduler(DelayEngine())
        self.assertEqual(scheduler.engine_info["model"], "delay")
        self.assertEqual(scheduler.engine_info["ringbuffer_compiled"], ringbuffer.COMPILED)

    def test_latency(self) -> None:
        """The latency reported is one chunk plus the engine's own delay."""
        scheduler, _ = start_scheduler(DelayEngine(delay=960), chunk_seconds=0.2)
        self.assertAlmostEqual(scheduler.latency_seconds, 0.2 + 960 / SR)


class BatchingTests(SynchronousTestCase):
    def test_batches_gather_streams(self) -> None:
        """Chunks waiting while the worker is busy run together, up to max_batch streams per pass."""
        engine = DelayEngine()
        pool = ManualPool()
        scheduler, _ = start_scheduler(engine, pool, chunk_seconds=0.01, max_batch=3, max_waiting_chunks=10)
        outs = [Collector() for _ in range(5)]
        streams = [scheduler.open_stream(f"s{i}", outs[i]) for i in range(5)]
        streams[0].push(np.zeros(480, np.float32))  # starts a batch of one; the worker is now busy
        for s in streams:
            s.push(np.zeros(480, np.float32))
        self.assertEqual(scheduler.stats.queue_depth, 5)
        pool.run_all()
        self.assertEqual(engine.batches, [1, 3, 2])
        self.assertEqual([o.samples for o in outs], [960, 480, 480, 480, 480])
        self.assertEqual(scheduler.stats.queue_depth, 0)
        self.assertEqual(scheduler.stats.batch_sizes, {1: 1, 3: 1, 2: 1})
        snapshot = scheduler.stats.snapshot()
        self.assertEqual((snapshot["batches"], snapshot["batch_size_max"], snapshot["batch_size_mean"]), (3, 3, 2.0))

    def test_queue_depth_follows_every_change(self) -> None:
        """
        The queue depth (kept stream by stream, not recounted) is the sum of
        the streams' waiting chunks after pushes, passes, pass-throughs and
        closes, including a stream closed with chunks waiting.
        """
        pool = ManualPool()
        scheduler, _ = start_scheduler(DelayEngine(), pool, chunk_seconds=0.01, max_batch=2, max_waiting_chunks=3)
        streams = [scheduler.open_stream(f"s{i}", Collector()) for i in range(3)]

        def waiting() -> int:
            return sum(s.waiting for s in streams if not s.closed)

        for _ in range(5):  # the fifth round passes chunks through (more than 3 waiting)
            for s in streams:
                s.push(np.zeros(480, np.float32))
            self.assertEqual(scheduler.stats.queue_depth, waiting())
        self.assertGreater(scheduler.stats.fallback_chunks, 0)
        streams[1].close()
        self.assertEqual(scheduler.stats.queue_depth, waiting())
        on_result, f, args = pool.jobs.pop(0)  # one pass returns; the next starts
        SynchronousPool.callInThreadWithCallback(pool, on_result, f, *args)
        self.assertEqual(scheduler.stats.queue_depth, waiting())
        pool.run_all()
        self.assertEqual(scheduler.stats.queue_depth, 0)

    def test_waiting_streams_spread_over_free_workers(self) -> None:
        """With two idle workers, waiting streams are split into two even passes instead of one full one."""
        engine = DelayEngine()
        pool = ManualPool()
        scheduler, _ = start_scheduler(engine, pool, chunk_seconds=0.01, max_batch=8, workers=2, max_waiting_chunks=10)
        streams = [scheduler.open_stream(f"s{i}", Collector()) for i in range(7)]
        held, scheduler._free_engines = scheduler._free_engines, []
        for s in streams:
            s.push(np.zeros(480, np.float32))
        scheduler._free_engines = held
        scheduler.pump()
        self.assertEqual(len(pool.jobs), 2)
        pool.run_all()
        self.assertEqual(engine.batches, [4, 3])

    def test_large_batches_run_in_row_groups(self) -> None:
        """run_batch runs more than 64 CPU streams in groups of 64, with the same output and states."""
        engine = DelayEngine(delay=480)
        audio = np.random.default_rng(0).standard_normal((130, 960)).astype(np.float32)
        out, states, _ = run_batch(engine, audio, [None] * 130, np.full(130, 100.0, np.float32))
        self.assertEqual(engine.batches, [64, 64, 2])
        np.testing.assert_array_equal(out[:, 480:], audio[:, :480] * 0.5)
        self.assertEqual(len(states), 130)
        np.testing.assert_array_equal(states[129].tail.numpy(), audio[129:, 480:])

    def test_not_ready_passes_through(self) -> None:
        """Before the model has loaded, audio passes through raw (counted) instead of queueing."""
        pool = ManualPool()
        scheduler = DenoiseScheduler(None, SchedulerSettings(chunk_seconds=0.01), lambda: DelayEngine(), pool)
        out = Collector()
        stream = scheduler.open_stream("a", out)
        stream.push(np.ones(960, np.float32))
        self.assertEqual(out.samples, 960)
        self.assertEqual(scheduler.stats.fallback_chunks, 2)

    def test_stop_waits_for_batches(self) -> None:
        """stopService fires only after the batch in flight has finished and been delivered."""
        pool = ManualPool()
        scheduler, _ = start_scheduler(DelayEngine(), pool, chunk_seconds=0.01)
        out = Collector()
        scheduler.open_stream("a", out).push(np.ones(480, np.float32))
        stopped = scheduler.stopService()
        self.assertNoResult(stopped)
        pool.run_all()
        self.successResultOf(stopped)
        self.assertEqual(out.samples, 480)


class FallingBehindTests(SynchronousTestCase):
    def test_behind_passes_through_bounded(self) -> None:
        """
        With the engine stalled, a stream's waiting chunks never exceed
        max_waiting_chunks: older ones pass through raw, are counted and
        logged once as a structured event, and output stays in order.
        """
        events: list[dict[str, Any]] = []
        globalLogPublisher.addObserver(events.append)
        self.addCleanup(globalLogPublisher.removeObserver, events.append)
        pool = ManualPool()
        scheduler, _ = start_scheduler(DelayEngine(delay=0, gain=1.0), pool, chunk_seconds=0.01, max_waiting_chunks=2)
        out = Collector()
        stream = scheduler.open_stream("a", out)
        signal = np.arange(480 * 10, dtype=np.float32)
        for i in range(10):
            stream.push(signal[i * 480 : (i + 1) * 480])
            self.assertLessEqual(scheduler.stats.queue_depth, 2)
        self.assertEqual(scheduler.stats.fallback_chunks, 7)
        pool.run_all()
        np.testing.assert_array_equal(out.raw_out(), signal)
        behind = [e for e in events if e.get("log_id") == "dsp.scheduler.behind"]
        self.assertEqual(len(behind), 1)
        self.assertEqual(behind[0]["stream_id"], "a")


class ExactStreamingTests(SynchronousTestCase):
    device = "cpu"

    def setUp(self) -> None:
        if self.device == "cuda" and not torch.cuda.is_available():
            raise self.skipTest("no CUDA device: torch.cuda.is_available() is False")
        self.engine = shared_engine(self.device)

    def test_streams_equal_offline(self) -> None:
        """
        For chunks of one hop, 0.13 s and 8 s, three streams of different
        lengths starting at different times, pushed in odd-sized blocks,
        each come out equal to the engine's offline output for the whole
        signal, delayed by its latency (max abs difference < 1e-4).
        """
        signals = [speechlike(s, i) for i, s in enumerate((0.9, 0.5, 0.7))]
        offline = self.engine.enhance(signals)
        delay = self.engine.delay
        for chunk in (0.01, 0.13, 8.0):
            hop_chunk = round(chunk * SR)
            scheduler, _ = start_scheduler(self.engine, chunk_seconds=chunk, max_batch=8, max_waiting_chunks=10_000)
            outs = [Collector() for _ in signals]
            # Pad each signal so its delayed end is flushed by whole chunks.
            padded = []
            for s in signals:
                total = -(-(len(s) + delay) // hop_chunk) * hop_chunk
                padded.append(np.concatenate([s, np.zeros(total - len(s), np.float32)]))
            handles: dict[int, Any] = {}
            positions = [0] * len(signals)
            starts = [0, 3, 7]  # stream i joins at step starts[i]
            step = 0
            while any(p < len(x) for p, x in zip(positions, padded)):
                for i, x in enumerate(padded):
                    if step < starts[i] or positions[i] >= len(x):
                        continue
                    if i not in handles:
                        handles[i] = scheduler.open_stream(f"s{i}", outs[i])
                    block = 1111 + 97 * i
                    handles[i].push(x[positions[i] : positions[i] + block])
                    positions[i] += block
                step += 1
            for i, s in enumerate(signals):
                got = outs[i].out()[delay : delay + len(s)]
                self.assertEqual(len(got), len(s))
                self.assertLess(float(np.abs(got - offline[i]).max()), 1e-4, (chunk, i))

    def test_switch_is_click_free(self) -> None:
        """
        Turning denoise off and on mid-stream takes effect in the next
        chunk, reaches the raw (or denoised) signal after the 50 ms fade,
        and the largest sample-to-sample step around each switch is no
        larger than the larger of the two signals' own largest steps.
        """
        signal = speechlike(1.6, 4)
        scheduler, _ = start_scheduler(self.engine, chunk_seconds=0.1, max_waiting_chunks=10_000)
        out = Collector()
        stream = scheduler.open_stream("a", out)
        block = 4800
        switches = {6: False, 11: True}
        for i in range(0, len(signal) // block):
            if i in switches:
                stream.set_denoise(switches[i])
            stream.push(signal[i * block : (i + 1) * block])
        played, raw = out.out(), out.raw_out()
        denoised = self.engine.enhance([signal])[0]
        delay = self.engine.delay
        wet = np.concatenate([np.zeros(delay, np.float32), denoised])[: len(played)]
        fade = scheduler.crossfade_samples
        off, on = 6 * block, 11 * block
        np.testing.assert_allclose(played[delay:off], wet[delay:off], atol=1e-4)
        np.testing.assert_array_equal(played[off + fade : on], raw[off + fade : on])
        np.testing.assert_allclose(played[on + fade :], wet[on + fade :], atol=1e-4)
        for at in (off, on):
            window = slice(at - 480, at + fade + 480)
            own = max(max_step(raw[window]), max_step(wet[window]))
            self.assertLessEqual(max_step(played[window]), own * 1.05)

    def test_strength_per_stream(self) -> None:
        """Two streams with different attenuation limits share batches; each gets its own strength."""
        signal = speechlike(0.6, 5)
        pool = ManualPool()
        scheduler, _ = start_scheduler(self.engine, pool, chunk_seconds=0.05, max_waiting_chunks=10_000)
        full, mild = Collector(), Collector()
        a = scheduler.open_stream("full", full)
        b = scheduler.open_stream("mild", mild, atten_lim_db=6.0)
        for i in range(0, len(signal), 2400):
            a.push(signal[i : i + 2400])
            b.push(signal[i : i + 2400])
        pool.run_all()
        delay = self.engine.delay
        n = len(signal) - delay
        expected_full = self.engine.enhance([signal])[0][:n]
        expected_mild = self.engine.enhance([signal], atten_lim_db=6.0)[0][:n]
        self.assertLess(float(np.abs(full.out()[delay:] - expected_full).max()), 1e-4)
        self.assertLess(float(np.abs(mild.out()[delay:] - expected_mild).max()), 1e-4)
        self.assertIn(2, scheduler.stats.batch_sizes)


class CudaExactStreamingTests(ExactStreamingTests):
    """The same on CUDA (skipped where torch sees no GPU)."""

    device = "cuda"


class ThreadedTests(TestCase):
    """With the real reactor and a real worker thread pool."""

    timeout = 120

    def setUp(self) -> None:
        self.engine = shared_engine("cpu")

    async def _start(self, scheduler: DenoiseScheduler) -> None:
        await scheduler.startService()
        self.addCleanup(scheduler.stopService)

    @defer.inlineCallbacks
    def test_reactor_thread_runs_no_model_code(self) -> Any:
        """Every forward pass runs on a worker thread; every output arrives on the reactor thread."""
        reactor_thread = threading.get_ident()
        model_threads: set[int] = set()
        output_threads: set[int] = set()
        net = self.engine.fork()
        original = net.net.forward_stream

        def spy(*args: Any, **kwargs: Any) -> Any:
            model_threads.add(threading.get_ident())
            return original(*args, **kwargs)

        # A forked engine over a wrapper of the shared network, so other tests keep theirs.
        net.path.net = type("Spy", (), {"forward_stream": staticmethod(spy)})()
        scheduler = DenoiseScheduler(reactor, SchedulerSettings(chunk_seconds=0.05), engine_factory=lambda: net)
        yield defer.ensureDeferred(self._start(scheduler))
        done: defer.Deferred[None] = defer.Deferred()
        total = 4800

        def on_output(denoised: np.ndarray, raw: np.ndarray) -> None:
            output_threads.add(threading.get_ident())
            nonlocal total
            total -= len(denoised)
            if total == 0:
                done.callback(None)

        stream = scheduler.open_stream("a", on_output)
        for i in range(0, 4800, 960):
            stream.push(np.random.default_rng(i).standard_normal(960).astype(np.float32) * 0.1)
        yield done
        self.assertTrue(model_threads)
        self.assertNotIn(reactor_thread, model_threads)
        self.assertEqual(output_threads, {reactor_thread})
        self.assertEqual(scheduler.stats.fallback_chunks, 0)

    @defer.inlineCallbacks
    def test_32_streams_join_and_leave(self) -> Any:
        """
        32 streams join and leave at random times on the real reactor and a
        worker thread; each one's output still equals its offline output.
        """
        rng = np.random.default_rng(7)
        chunk = 0.05
        hop_chunk = round(chunk * SR)
        delay = self.engine.delay
        signals = [speechlike(float(rng.uniform(0.15, 0.45)), i) for i in range(32)]
        offline = self.engine.enhance(signals)
        scheduler = DenoiseScheduler(
            reactor,
            SchedulerSettings(chunk_seconds=chunk, max_batch=32, max_waiting_chunks=10_000),
            engine_factory=lambda: self.engine.fork(),
        )
        yield defer.ensureDeferred(self._start(scheduler))
        outs = [Collector() for _ in signals]
        finished: list[defer.Deferred[None]] = []

        def run_stream(i: int) -> defer.Deferred[None]:
            s = signals[i]
            total = -(-(len(s) + delay) // hop_chunk) * hop_chunk
            padded = np.concatenate([s, np.zeros(total - len(s), np.float32)])
            complete: defer.Deferred[None] = defer.Deferred()

            def collect(denoised: np.ndarray, raw: np.ndarray) -> None:
                outs[i](denoised, raw)
                if outs[i].samples == total:
                    handle.close()  # leave as soon as everything is back
                    complete.callback(None)

            handle = scheduler.open_stream(f"s{i}", collect)
            blocks = [padded[j : j + 960] for j in range(0, total, 960)]

            def push_next() -> None:
                if blocks:
                    handle.push(blocks.pop(0))
                    reactor.callLater(float(rng.uniform(0, 0.004)), push_next)

            push_next()
            return complete

        for i in range(32):
            d = task.deferLater(reactor, float(rng.uniform(0, 0.3)), run_stream, i)
            finished.append(d.addCallback(lambda inner: inner))
        yield defer.gatherResults(finished)
        for i, s in enumerate(signals):
            got = outs[i].out()[delay : delay + len(s)]
            self.assertLess(float(np.abs(got - offline[i]).max()), 1e-4, i)
        self.assertEqual(scheduler.stats.streams, 0)
        self.assertGreater(max(scheduler.stats.batch_sizes), 1)


    async def test_aligned_streams_share_passes(self) -> None:
        """
        Live streams that start at different moments and send 20 ms frames
        in real time: with chunks cut at the instants of a shared clock
        (and a short gathering wait), their chunks run in shared passes
        instead of one pass each, and every stream's output still equals
        its offline output.
        """
        rng = np.random.default_rng(11)
        count, frame = 6, 960
        signals = [speechlike(1.3, i) for i in range(count)]
        offline = self.engine.enhance(signals)
        # Chunks may wait long before passing through raw: on a loaded
        # machine a pass can take longer than the chunk, and what this test
        # proves is the sharing and the exactness, not the real-time margin.
        settings = SchedulerSettings(
            chunk_seconds=0.1, max_batch=16, align=True, gather_seconds=0.02, max_waiting_chunks=100
        )
        scheduler = DenoiseScheduler(reactor, settings, engine_factory=lambda: self.engine.fork())
        await self._start(scheduler)
        outs = [Collector() for _ in signals]
        handles = [scheduler.open_stream(f"s{i}", outs[i]) for i in range(count)]
        starts = sorted(float(x) for x in rng.uniform(0, 0.1, count))
        began = reactor.seconds()

        def tick() -> None:
            now = reactor.seconds() - began
            for i, handle in enumerate(handles):
                due = int(max(0.0, now - starts[i]) / 0.02)  # frames this publisher has sent by now
                while handle.sent < min(due, len(signals[i]) // frame):
                    handle.push(signals[i][handle.sent * frame : (handle.sent + 1) * frame])
                    handle.sent += 1

        for handle in handles:
            handle.sent = 0  # type: ignore[attr-defined]
        pacer = task.LoopingCall(tick)
        pacer.start(0.005)
        self.addCleanup(lambda: pacer.running and pacer.stop())
        while any(h.sent < len(signals[i]) // frame for i, h in enumerate(handles)):  # type: ignore[attr-defined]
            await task.deferLater(reactor, 0.05, lambda: None)
        pacer.stop()
        delay = self.engine.delay

        def caught_up() -> bool:
            return all(len(c.out()) - delay > len(signals[i]) - 0.25 * SR for i, c in enumerate(outs))

        # The last chunks come out once a worker has run them: wait for
        # that (a loaded machine takes longer), not a fixed time.
        deadline = reactor.seconds() + 30.0
        while not caught_up() and reactor.seconds() < deadline:
            await task.deferLater(reactor, 0.05, lambda: None)
        for i, collector in enumerate(outs):
            got = collector.out()[delay:]
            self.assertGreater(len(got), len(signals[i]) - 0.25 * SR)
            self.assertLess(float(np.abs(got - offline[i][: len(got)]).max()), 1e-4, i)
        sizes = scheduler.stats.batch_sizes
        passes = sum(sizes.values())
        chunks = sum(k * v for k, v in sizes.items())
        # Unaligned, six staggered streams mostly run one pass per chunk; aligned,
        # after each stream's first (shorter) chunk, they share passes.
        self.assertGreaterEqual(chunks / passes, 3.0, dict(sizes))
        self.assertEqual(scheduler.stats.fallback_chunks, 0)


class ChunkClockTests(SynchronousTestCase):
    def scheduler(self, clock: task.Clock, **settings: Any) -> DenoiseScheduler:
        scheduler = DenoiseScheduler(clock, SchedulerSettings(chunk_seconds=0.1, **settings))
        scheduler._epoch = 0.0
        return scheduler

    def test_first_chunk_ends_at_the_next_instant(self) -> None:
        clock = task.Clock()
        scheduler = self.scheduler(clock, align=True)
        for now, hops in ((0.0, 10), (0.031, 7), (0.099, 1), (1.25, 5)):
            clock.advance(now - clock.seconds())
            self.assertEqual(scheduler.first_chunk_hops(), hops, now)
        self.assertEqual(self.scheduler(clock).first_chunk_hops(), 10)  # not aligned: whole chunks

    def test_drift_is_corrected_a_hop_at_a_time(self) -> None:
        """A stream whose chunks complete late gets a shorter chunk, early a longer one."""
        clock = task.Clock()
        scheduler = self.scheduler(clock, align=True)
        for now, hops in ((1.0, 10), (1.02, 10), (1.03, 9), (1.08, 10), (1.07, 11), (1.049, 9)):
            clock.advance(now - clock.seconds())
            self.assertEqual(scheduler.next_chunk_hops(), hops, now)

    def test_gathering_is_bounded(self) -> None:
        """
        A free worker waits for streams that still owe the current chunk,
        but never longer than ``gather_seconds``: then it runs what is ready.
        """
        from tests.scheduler_helpers import SynchronousPool

        clock = task.Clock()
        engine = DelayEngine(delay=480)
        settings = SchedulerSettings(chunk_seconds=0.02, align=True, gather_seconds=0.01)
        scheduler = DenoiseScheduler(clock, settings, engine_factory=lambda: engine, threadpool=SynchronousPool())
        scheduler.reactor.callFromThread = lambda f, *a, **kw: f(*a, **kw)  # type: ignore[attr-defined]
        scheduler.startService()
        outs = [Collector(), Collector()]
        a, b = (scheduler.open_stream(name, out) for name, out in zip("ab", outs))
        block = np.ones(960, dtype=np.float32)
        a.push(block)
        b.push(block[:480])  # b owes the rest of its chunk
        self.assertEqual(engine.batches, [])  # waiting for b
        b.push(block[480:])
        self.assertEqual(engine.batches, [2])  # both in one pass, at once
        a.push(block)
        clock.advance(0.005)
        self.assertEqual(engine.batches, [2])
        clock.advance(0.006)  # the wait is over: a runs alone
        self.assertEqual(engine.batches, [2, 1])
        scheduler.stopService()


class HeadroomTests(SynchronousTestCase):
    def test_headroom_from_measured_model_time(self) -> None:
        """
        Unknown before a pass was measured; then workers x chunk length /
        seconds per chunk, less the open streams; 0 without a model.
        """
        engine = DelayEngine()
        pool = ManualPool()
        scheduler, _ = start_scheduler(engine, pool, chunk_seconds=0.01, max_batch=3, max_waiting_chunks=10)
        self.assertIsNone(scheduler.headroom())
        streams = [scheduler.open_stream(f"s{i}", Collector()) for i in range(2)]
        streams[0].push(np.zeros(480, np.float32))
        pool.run_all()
        scheduler.stats.last_model_seconds_per_chunk = 0.001  # 10 ms of audio in 1 ms: ten streams per worker
        self.assertEqual(scheduler.headroom(), scheduler.settings.workers * 10 - 2)
        from tests.scheduler_helpers import ImmediateReactor, SynchronousPool

        def broken() -> Any:
            raise RuntimeError("no weights")

        failed = DenoiseScheduler(ImmediateReactor(), SchedulerSettings(chunk_seconds=0.01), broken, SynchronousPool())
        failed.startService()
        self.flushLoggedErrors(RuntimeError)
        self.assertEqual(failed.headroom(), 0)


class LoadAndPrecisionTests(SynchronousTestCase):
    def test_load_failure_passes_through(self) -> None:
        """A model that cannot load is logged as a failure; live audio then passes through raw."""
        from tests.scheduler_helpers import ImmediateReactor, SynchronousPool

        def broken() -> Any:
            raise RuntimeError("no weights")

        scheduler = DenoiseScheduler(ImmediateReactor(), SchedulerSettings(chunk_seconds=0.01), broken, SynchronousPool())
        scheduler.startService()
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)
        out = Collector()
        scheduler.open_stream("a", out).push(np.ones(480, np.float32))
        self.assertEqual((out.samples, scheduler.stats.fallback_chunks), (480, 1))

    def test_half_needs_cuda(self) -> None:
        """Half precision asked for on the CPU is a logged warning, and the engine runs fp32 unchanged."""
        events: list[dict[str, Any]] = []
        globalLogPublisher.addObserver(events.append)
        self.addCleanup(globalLogPublisher.removeObserver, events.append)
        engine = shared_engine("cpu").fork()
        net = engine.path.net
        start_scheduler(engine, half=True)
        self.assertIs(engine.path.net, net)
        self.assertTrue(any("Half precision" in str(e.get("log_format")) for e in events))

    def test_half_quality_on_cuda(self) -> None:
        """On CUDA, half precision stays within 30 dB SI-SDR of the fp32 output (its quality cost)."""
        if not torch.cuda.is_available():
            raise self.skipTest("no CUDA device: torch.cuda.is_available() is False")
        from denoisecast.model.half import use_half_precision

        from tests.dsp_helpers import si_sdr

        signal = speechlike(1.0, 6)
        full = shared_engine("cuda")
        half = full.fork()
        self.assertTrue(use_half_precision(half))
        fp32 = full.enhance([signal])[0]
        fp16 = half.enhance([signal])[0]
        self.assertGreater(si_sdr(fp32, fp16), 30.0)


class DeepFilterNet2Tests(SynchronousTestCase):
    def test_dfn2_streams_like_one_pass(self) -> None:
        """
        DeepFilterNet2 (generated weights) streams through the scheduler in
        0.05 s chunks, two streams sharing batches, exactly as one pass of
        engine.process over each whole signal (< 1e-4).  Its offline path
        is the reference's whole-signal one, which differs in the start-up
        transient (docs/engine.md), so the streaming pass is the reference.
        """
        from denoisecast.model.weights.checkpoints import build_network
        from denoisecast.model.config import ModelConfig
        from denoisecast.model.engine import DenoiseEngine, EngineInfo

        from tests.dsp_fixtures import seeded_init
        from tests.test_model_reference_fixtures import DFN2_INI

        config = ModelConfig.from_ini_text(DFN2_INI)
        net = build_network(config)
        seeded_init(net)
        engine = DenoiseEngine(net.eval(), config, EngineInfo("deepfilternet2", "-", "-", "cpu", config.sr))
        self.assertEqual(engine.delay, 2400)
        signals = [speechlike(0.5, 1), speechlike(0.5, 2)]
        pool = ManualPool()
        scheduler, _ = start_scheduler(engine, pool, chunk_seconds=0.05, max_waiting_chunks=10_000)
        outs = [Collector(), Collector()]
        handles = [scheduler.open_stream(f"s{i}", outs[i], atten_lim_db=[100.0, 12.0][i]) for i in range(2)]
        for start in range(0, 24000, 1200):
            for handle, s in zip(handles, signals):
                handle.push(s[start : start + 1200])
        pool.run_all()
        for i, s in enumerate(signals):
            whole, _, _ = engine.process(torch.from_numpy(s)[None], engine.new_streams(1), [100.0, 12.0][i])
            got = outs[i].out()
            self.assertEqual(len(got), len(s))
            self.assertLess(float(np.abs(got - whole[0].numpy()).max()), 1e-4, i)
        self.assertIn(2, scheduler.stats.batch_sizes)
