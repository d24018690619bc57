"""Tests for denoisecast.model.stft: DeepFilterNet's framing, window and scaling."""

from __future__ import annotations

import math

import numpy as np
import torch
from twisted.trial.unittest import SynchronousTestCase

from denoisecast.model.stft import Stft, vorbis_window


class WindowTests(SynchronousTestCase):
    def test_vorbis_formula(self) -> None:
        """The window is sin(pi/2 sin^2(pi (n + 0.5) / (N/2))), the runtime's Vorbis window."""
        w = vorbis_window(960).numpy()
        n = np.arange(960)
        expected = np.sin(0.5 * math.pi * np.sin(0.5 * math.pi * (n + 0.5) / 480) ** 2)
        np.testing.assert_allclose(w, expected, atol=1e-7)

    def test_power_complementary(self) -> None:
        """w[n]^2 + w[n + hop]^2 == 1, which makes windowed overlap-add reconstruct exactly."""
        w = vorbis_window(960).double()
        torch.testing.assert_close(w[:480] ** 2 + w[480:] ** 2, torch.ones(480, dtype=torch.float64))


class StftTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.stft = Stft(960, 480)
        self.audio = torch.randn(3, 480 * 20, generator=torch.Generator().manual_seed(1))

    def test_shapes_and_scaling(self) -> None:
        """n hops give n frames of 481 bins, scaled by 1/960 like the runtime (DC of a constant)."""
        spec = self.stft.analysis(torch.ones(1, 480 * 4))
        self.assertEqual(tuple(spec.shape), (1, 4, 481))
        expected_dc = float(vorbis_window(960).sum()) / 960
        self.assertAlmostEqual(float(spec[0, 2, 0].real), expected_dc, places=5)

    def test_perfect_reconstruction_with_one_hop_delay(self) -> None:
        """Synthesis of the analysis returns the input delayed by fft_size - hop_size (480) samples."""
        out = self.stft.synthesis(self.stft.analysis(self.audio))
        torch.testing.assert_close(out[:, 480:], self.audio[:, :-480], atol=1e-5, rtol=0)

    def test_chunked_equals_whole(self) -> None:
        """Analysis carried across chunks by the previous hop equals one analysis of the whole signal."""
        whole = self.stft.analysis(self.audio)
        first = self.stft.analysis(self.audio[:, : 480 * 7])
        second = self.stft.analysis(self.audio[:, 480 * 7 :], previous_hop=self.audio[:, 480 * 6 : 480 * 7])
        torch.testing.assert_close(torch.cat([first, second], dim=1), whole)

    def test_batch_rows_are_independent(self) -> None:
        """Each row of a batch is analysed as if alone."""
        whole = self.stft.analysis(self.audio)
        alone = self.stft.analysis(self.audio[1:2])
        torch.testing.assert_close(whole[1:2], alone)
