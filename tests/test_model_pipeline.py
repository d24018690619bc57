"""
Tests for denoisecast.model.pipeline: batching is invisible, chunking is
invisible, and the runtime's policy switches behave as in the runtime.
"""

from __future__ import annotations

import numpy as np
import torch
from twisted.trial.unittest import SynchronousTestCase

from denoisecast.model.pipeline import RuntimePolicy, StreamState, atten_lim_factor

from tests.dsp_helpers import SR, bundled_path, mix, noise


def signals() -> list[np.ndarray]:
    """Four different noisy signals of different lengths (0.7 to 1.6 s)."""
    out = []
    for i, (kind, seconds) in enumerate([("white", 1.6), ("pink", 0.7), ("brown", 1.25), ("white", 1.0)]):
        n = int(seconds * SR)
        t = np.arange(n) / SR
        tone = (0.2 * np.sin(2 * np.pi * (150 + 60 * i) * t) * (np.sin(2 * np.pi * 2 * t) > 0)).astype(np.float32)
        out.append(mix(tone, noise(kind, n, seed=i), 3.0 * i))
    return out


class BatchingTests(SynchronousTestCase):
    def test_batch_equals_alone(self) -> None:
        """A batch of N different signals gives each the output it gets alone (fp32 CPU, < 1e-5)."""
        path = bundled_path()
        items = signals()
        longest = max(len(s) for s in items)
        batch = np.zeros((len(items), longest), dtype=np.float32)
        for row, s in zip(batch, items):
            row[: len(s)] = s
        together = path.enhance(torch.from_numpy(batch)).numpy()
        for i, s in enumerate(items):
            alone = path.enhance(torch.from_numpy(s)[None]).numpy()[0]
            self.assertLess(float(np.abs(together[i, : len(s)] - alone).max()), 1e-5, i)

    def test_chunks_equal_one_pass(self) -> None:
        """Processing in chunks of 1, 7 or 50 hops with carried state equals one pass (< 1e-5)."""
        path = bundled_path()
        audio = torch.from_numpy(np.stack([signals()[1]] * 2))
        whole = path.enhance(audio, chunk_frames=10_000)
        for frames in (1, 7, 50):
            chunked = path.enhance(audio, chunk_frames=frames)
            self.assertLess(float((whole - chunked).abs().max()), 1e-5, frames)


class PolicyTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.path = bundled_path()
        self.audio = torch.from_numpy(signals()[0])[None]

    def test_atten_lim_factor(self) -> None:
        """100 dB or more is no limit; below 0.01 dB the noisy signal passes; else 10^(-dB/20)."""
        self.assertIsNone(atten_lim_factor(100.0))
        self.assertEqual(atten_lim_factor(0.0), 1.0)
        self.assertAlmostEqual(atten_lim_factor(-20.0) or 0.0, 0.1, places=6)

    def test_zero_db_limit_passes_input(self) -> None:
        """At a 0 dB limit the runtime hands the input through untouched, and so does the engine."""
        out = self.path.enhance(self.audio, RuntimePolicy(atten_lim_db=0.0))
        torch.testing.assert_close(out, self.audio)

    def test_low_snr_threshold_silences(self) -> None:
        """Frames under min_db_thresh get a zero mask and no deep filter: with it above 35 dB the output is silent."""
        out = self.path.enhance(self.audio, RuntimePolicy(min_db_thresh=40.0))
        self.assertEqual(float(out.abs().max()), 0.0)

    def test_high_snr_threshold_passes(self) -> None:
        """Frames over max_db_erb_thresh are left as they are: with it below -15 dB the output is the input."""
        out = self.path.enhance(self.audio, RuntimePolicy(max_db_erb_thresh=-20.0, max_db_df_thresh=-20.0))
        torch.testing.assert_close(out, self.audio, atol=1e-5, rtol=0)

    def test_state_shapes(self) -> None:
        """A fresh StreamState holds one row per stream and the deep filter's four past frames."""
        state = StreamState.initial(3, self.path.config)
        self.assertEqual(tuple(state.history.shape), (3, 4, 481))
        self.assertEqual(tuple(state.previous_hop.shape), (3, 480))


class Dfn2StreamingTests(SynchronousTestCase):
    def setUp(self) -> None:
        from denoisecast.model.weights.checkpoints import build_network
        from denoisecast.model.config import ModelConfig
        from denoisecast.model.pipeline import SignalPath

        from tests.dsp_fixtures import seeded_init
        from tests.test_model_reference_fixtures import DFN2_INI

        self.config = ModelConfig.from_ini_text(DFN2_INI)
        net = build_network(self.config).eval()
        seeded_init(net)
        self.path = SignalPath(net, self.config)
        self.audio = torch.randn(2, 48000, generator=torch.Generator().manual_seed(0)) * 0.1
        n = self.audio.shape[1]
        total = -(-(n + self.path.delay) // 480) * 480
        self.padded = torch.nn.functional.pad(self.audio, (0, total - n))

    def _stream(self, chunk_frames: int) -> torch.Tensor:
        state = StreamState.initial(2, self.config)
        pieces = []
        for start in range(0, self.padded.shape[1], chunk_frames * 480):
            out, _, state = self.path.process(self.padded[:, start : start + chunk_frames * 480], state)
            pieces.append(out)
        n = self.audio.shape[1]
        return torch.cat(pieces, dim=1)[:, self.path.delay : self.path.delay + n]

    def test_delay(self) -> None:
        """DeepFilterNet2 filters masked frames, so its lookaheads add: 480 + 4 * 480 samples of delay."""
        self.assertEqual(self.path.delay, 2400)

    def test_chunks_equal_one_pass(self) -> None:
        """Streaming DeepFilterNet2 in chunks of 1, 3 or 17 hops equals one pass (< 1e-5)."""
        whole = self._stream(10_000)
        for frames in (1, 3, 17):
            self.assertLess(float((self._stream(frames) - whole).abs().max()), 1e-5, frames)

    def test_stream_equals_reference_path_after_start(self) -> None:
        """
        Streaming equals the reference's whole-signal path (< 1e-5) once the
        start-up differs no more (the reference never shows the network the
        first two frames) and before the last 0.1 s (where the reference
        feeds zero features).
        """
        whole = self.path.enhance(self.audio)
        stream = self._stream(50)
        n = self.audio.shape[1]
        self.assertLess(float((whole - stream)[:, 24000 : n - 4800].abs().max()), 1e-5)


class StreamRegroupingTests(SynchronousTestCase):
    def test_streams_can_join_and_leave(self) -> None:
        """
        Streams regrouped between chunks (one leaves, a new one joins) get
        exactly the output they get when processed alone from their start.
        """
        path = bundled_path()
        g = torch.Generator().manual_seed(5)
        a, b, c = (torch.randn(1, 480 * 12, generator=g) * 0.05 for _ in range(3))
        hop = 480 * 6

        def alone(x: torch.Tensor) -> torch.Tensor:
            return path.process(x, StreamState.initial(1, path.config))[0]

        # chunk 1: a and b together; chunk 2: b continues, c joins (fresh), a has left.
        out1, _, state = path.process(torch.cat([a[:, :hop], b[:, :hop]]), StreamState.initial(2, path.config))
        joined = StreamState.concat([state.select([1]), StreamState.initial(1, path.config)])
        out2, _, _ = path.process(torch.cat([b[:, hop:], c[:, :hop]]), joined)
        self.assertLess(float((out1[0] - alone(a[:, :hop])[0]).abs().max()), 1e-5)
        self.assertLess(float((torch.cat([out1[1], out2[0]]) - alone(b)[0]).abs().max()), 1e-5)
        self.assertLess(float((out2[1] - alone(c[:, :hop])[0]).abs().max()), 1e-5)


class SplitTests(SynchronousTestCase):
    def test_split_then_concat(self) -> None:
        """split() gives each stream its own state (equal to select) and concat() joins them back unchanged."""
        path = bundled_path()
        audio = torch.from_numpy(np.stack([s[:4800] for s in signals()[:3]]))
        _, _, state = path.process(audio, StreamState.initial(3, path.config))
        parts = state.split()
        self.assertEqual(len(parts), 3)
        alone = state.select([1])
        torch.testing.assert_close(parts[1].history, alone.history)
        torch.testing.assert_close(parts[1].net.h_df, alone.net.h_df)
        joined = StreamState.concat(parts)
        torch.testing.assert_close(joined.overlap, state.overlap)
        torch.testing.assert_close(joined.net.c0_ctx, state.net.c0_ctx)

    def test_concat_of_a_whole_split_reuses_the_batch(self) -> None:
        """
        concat() of all rows of one split batch, in their order, is that
        batch itself (no copies); any other selection or order is copied,
        with the same values as joining the rows one by one.
        """
        path = bundled_path()
        audio = torch.from_numpy(np.stack([s[:4800] for s in signals()[:3]]))
        _, _, state = path.process(audio, StreamState.initial(3, path.config))
        parts = state.split()
        self.assertIs(StreamState.concat(parts), state)
        for rows in ([2, 0, 1], [0, 1], [0, 1, 2, 0]):
            joined = StreamState.concat([parts[i] for i in rows])
            self.assertIsNot(joined, state)
            torch.testing.assert_close(joined.history, state.history[rows])
            torch.testing.assert_close(joined.net.h_enc, state.net.h_enc[:, rows])
        fresh = StreamState.initial(1, path.config)
        mixed = StreamState.concat([*parts, fresh])
        self.assertEqual(mixed.history.shape[0], 4)
        torch.testing.assert_close(mixed.norm.mean[:3], state.norm.mean)
