"""
The network run by ONNX Runtime (``model/onnxnet.py``, the engine's
default on the CPU) holds to the same bars as the torch network: it
computes the torch network's outputs and states to rounding, its audio
equals the official runtime's (the parity case of test_model_parity),
and chunking and batching change nothing (as test_model_pipeline checks
for torch).
"""

from __future__ import annotations

import copy

import numpy as np
import torch
from twisted.trial.unittest import SynchronousTestCase

from denoisecast.denoise.scheduler import run_batch
from denoisecast.model.config import ModelConfig
from denoisecast.model.dfnet3 import NetState
from denoisecast.model.engine import DenoiseEngine
from denoisecast.model.layers import fold_batch_norms
from denoisecast.model.onnxnet import OnnxNet, onnx_net
from denoisecast.model.pipeline import RuntimePolicy, SignalPath
from denoisecast.model.weights.checkpoints import build_network
from tests.dsp_fixtures import DFN2_INI, seeded_init
from tests.dsp_helpers import bundled_dfnet3, si_sdr
from tests.reference import official_enhance
from tests.test_model_parity import _test_signal
from tests.test_model_pipeline import signals

_paths: dict[str, SignalPath] = {}


def onnx_path() -> SignalPath:
    """The bundled DeepFilterNet3, folded as the engine folds it, run by ONNX Runtime (exported once)."""
    if "dfn3" not in _paths:
        net, config, _ = bundled_dfnet3()
        net = copy.deepcopy(net).eval()
        fold_batch_norms(net)
        _paths["dfn3"] = SignalPath(onnx_net(net, config), config)
    return _paths["dfn3"]


def chained(net: "OnnxNet | torch.nn.Module", config: ModelConfig, lengths: list[int], batch: int = 3) -> list:
    """Outputs and final state of chunks of the given lengths run one after another."""
    g = torch.Generator().manual_seed(5)
    state = NetState.initial(batch, config)
    outs = []
    for frames in lengths:
        erb = torch.randn(batch, 1, frames, config.nb_erb, generator=g)
        spec = torch.randn(batch, 2, frames, config.nb_df, generator=g) * 0.3
        with torch.inference_mode():
            out, state = net.forward_stream(erb, spec, state)
        outs += [out.gains, torch.view_as_real(out.coefs), out.lsnr]
    return outs + [getattr(state, name) for name in ("erb_ctx", "spec_ctx", "c0_ctx", "h_enc", "h_erb", "h_df")]


class OnnxNetworkTests(SynchronousTestCase):
    def check_same(self, net: torch.nn.Module, config: ModelConfig) -> None:
        net = copy.deepcopy(net).eval()
        fold_batch_norms(net)
        runtime = OnnxNet(net, config, threads=1)
        lengths = [1, 2, 3, 4, 10, 7, 1]
        for a, b in zip(chained(net, config, lengths), chained(runtime, config, lengths)):
            self.assertEqual(a.shape, b.shape)
            self.assertLess(float((a - b).abs().max()), 1e-4)

    def test_deepfilternet3_outputs_and_states_equal_torch(self) -> None:
        """One exported graph gives torch's outputs and states for chunks of 1 to 10 frames in a row (< 1e-4)."""
        net, config, _ = bundled_dfnet3()
        self.check_same(net, config)

    def test_deepfilternet2_outputs_and_states_equal_torch(self) -> None:
        """The same holds for DeepFilterNet2's network (seeded weights)."""
        config = ModelConfig.from_ini_text(DFN2_INI)
        net = build_network(config).eval()
        seeded_init(net)
        self.check_same(net, config)


class OnnxAudioParityTests(SynchronousTestCase):
    def test_audio_matches_official_runtime(self) -> None:
        """At 100, 12 and 6 dB limits the audio equals the official runtime's (SI-SDR >= 35 dB, max error < 1e-4)."""
        noisy = _test_signal()
        for limit in (100.0, 12.0, 6.0):
            reference = official_enhance(noisy, limit)
            ours = onnx_path().enhance(torch.from_numpy(noisy)[None], RuntimePolicy(atten_lim_db=limit))[0].numpy()
            self.assertGreaterEqual(si_sdr(reference, ours), 35.0, limit)
            self.assertLess(float(np.abs(reference - ours).max()), 1e-4, limit)


class OnnxExactnessTests(SynchronousTestCase):
    def test_chunks_equal_one_pass(self) -> None:
        """Chunks of 1, 2, 3, 7 or 50 hops with carried state give the one-pass audio (< 1e-5)."""
        path = onnx_path()
        audio = torch.from_numpy(np.stack([signals()[1]] * 2))
        whole = path.enhance(audio, chunk_frames=10_000)
        for frames in (1, 2, 3, 7, 50):
            chunked = path.enhance(audio, chunk_frames=frames)
            self.assertLess(float((whole - chunked).abs().max()), 1e-5, frames)

    def test_batch_equals_alone(self) -> None:
        """A batch of different signals gives each the audio it gets alone (< 1e-5)."""
        path = onnx_path()
        items = signals()
        batch = np.zeros((len(items), max(len(s) for s in items)), dtype=np.float32)
        for row, s in zip(batch, items):
            row[: len(s)] = s
        together = path.enhance(torch.from_numpy(batch)).numpy()
        for i, s in enumerate(items):
            alone = path.enhance(torch.from_numpy(s)[None]).numpy()[0]
            self.assertLess(float(np.abs(together[i, : len(s)] - alone).max()), 1e-5, i)


class EngineRuntimeTests(SynchronousTestCase):
    def test_cpu_engine_runs_onnx_by_default_and_torch_on_request(self) -> None:
        """The default CPU engine runs ONNX Runtime, says so, and agrees with the torch runtime; unknown names are refused."""
        engine = DenoiseEngine.load("deepfilternet3", device="cpu")
        self.assertIsInstance(engine.path.net, OnnxNet)
        self.assertEqual(engine.describe()["runtime"], "onnx")
        self.assertIsInstance(engine.fork().path.net, OnnxNet)
        torch_engine = DenoiseEngine(engine.net, engine.config, engine.info, runtime="torch")
        self.assertEqual(torch_engine.describe()["runtime"], "torch")
        noisy = _test_signal()[: 48_000]
        a = engine.enhance([noisy])[0]
        b = torch_engine.enhance([noisy])[0]
        self.assertGreater(si_sdr(b, a), 60.0)
        with self.assertRaises(ValueError):
            DenoiseEngine(engine.net, engine.config, engine.info, runtime="tensorflow")

    def test_network_that_cannot_be_exported_runs_in_torch(self) -> None:
        """When ONNX Runtime cannot take the network, the engine logs it and runs traced torch instead of failing."""
        from denoisecast.model import engine as engine_module
        from denoisecast.model.traced import TracedNet

        def broken(*args: object, **kwargs: object) -> OnnxNet:
            raise RuntimeError("no exporter")

        loaded = DenoiseEngine.load("deepfilternet3", device="cpu")
        self.patch(engine_module, "onnx_net", broken)
        fallback = DenoiseEngine(loaded.net, loaded.config, loaded.info, runtime="onnx")
        self.assertIsInstance(fallback.path.net, TracedNet)
        self.assertEqual((fallback.runtime, fallback.parallel), ("torch", 1))
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)

    def test_enhance_deals_signals_to_one_thread_sessions(self) -> None:
        """
        A two-thread engine runs enhance()'s signals as two shares at once:
        every signal comes back in its place, of its length, equal to the
        one-thread engine's one-batch result (< 1e-5), and the progress
        counts up to its total.
        """
        items = signals()
        one = DenoiseEngine.load("deepfilternet3", device="cpu")
        one = DenoiseEngine(one.net, one.config, one.info, "onnx", threads=1)
        two = DenoiseEngine(one.net, one.config, one.info, "onnx", threads=2)
        self.assertEqual((one.parallel, two.parallel, two.fork().parallel), (1, 2, 2))
        seen: list[tuple[int, int]] = []
        dealt = two.enhance(items, progress=lambda done, total: seen.append((done, total)))
        together = one.enhance(items)
        for a, b, signal in zip(dealt, together, items):
            self.assertEqual(len(a), len(signal))
            self.assertLess(float(np.abs(a - b).max()), 1e-5)
        self.assertEqual(seen[-1][0], seen[-1][1])
        self.assertEqual(len({total for _, total in seen}), 1)
        self.assertEqual([done for done, _ in seen], sorted(done for done, _ in seen))

    def test_live_pass_runs_in_parts_on_two_threads(self) -> None:
        """
        run_batch on a two-thread engine runs the streams as two groups at
        once, with the one-thread engine's output and states (< 1e-5),
        pass after pass, and the states stay in stream order.
        """
        one = DenoiseEngine.load("deepfilternet3", device="cpu")
        one = DenoiseEngine(one.net, one.config, one.info, "onnx", threads=1)
        two = DenoiseEngine(one.net, one.config, one.info, "onnx", threads=2)
        items = signals()
        count, step = 7, 4800
        audio = np.stack([items[i % len(items)][: 3 * step] * (1 + 0.1 * i) for i in range(count)])
        limits = np.array([100, 12, 6, 100, 100, 20, 100], dtype=np.float32)
        states_one: list = [None] * count
        states_two: list = [None] * count
        for start in range(0, 3 * step, step):
            block = np.ascontiguousarray(audio[:, start : start + step])
            a, states_one, _ = run_batch(one, block, states_one, limits)
            b, states_two, _ = run_batch(two, block, states_two, limits)
            self.assertLess(float(np.abs(a - b).max()), 1e-5)
        for x, y in zip(states_one, states_two):
            self.assertLess(float((x.net.h_df - y.net.h_df).abs().max()), 1e-5)
            self.assertLess(float((x.overlap - y.overlap).abs().max()), 1e-5)
