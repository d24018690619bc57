"""Tests for denoisecast.model.features: ERB bands, initial norm states, feature recursion."""

from __future__ import annotations

import numpy as np
import torch
from twisted.trial.unittest import SynchronousTestCase

from denoisecast.model.features import (
    FeatureExtractor,
    NormState,
    erb_matrices,
    erb_widths,
    initial_mean_norm_state,
    initial_unit_norm_state,
)

#: DeepFilterNet's 32 ERB bands at 48 kHz with a 960-point FFT.
DFN_WIDTHS = [2] * 13 + [5, 5, 7, 7, 8, 10, 12, 13, 15, 18, 20, 24, 28, 31, 37, 42, 50, 56, 67]


class ErbTests(SynchronousTestCase):
    def test_widths(self) -> None:
        """The band widths are DeepFilterNet's (minimum 2 bins, 481 bins in all)."""
        self.assertEqual(erb_widths(48000, 960, 32, 2), DFN_WIDTHS)

    def test_matrices(self) -> None:
        """Band means sum each band's bins with weight 1/width; spreading copies a gain to its bins."""
        mean, spread = erb_matrices(DFN_WIDTHS)
        torch.testing.assert_close(mean.sum(0), torch.ones(32))
        torch.testing.assert_close(spread.sum(0), torch.ones(481))


class FeatureTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.extract = FeatureExtractor(DFN_WIDTHS, 96, 0.99)
        g = torch.Generator().manual_seed(0)
        self.spec = torch.complex(torch.randn(2, 30, 481, generator=g), torch.randn(2, 30, 481, generator=g)) * 0.01

    def test_initial_states(self) -> None:
        """Mean norm starts at linspace(-60, -90) dB, unit norm at linspace(1e-3, 1e-4)."""
        np.testing.assert_allclose(initial_mean_norm_state(32).numpy(), np.linspace(-60, -90, 32), atol=1e-4)
        np.testing.assert_allclose(initial_unit_norm_state(96).numpy(), np.linspace(1e-3, 1e-4, 96), atol=1e-8)

    def test_first_frame_by_hand(self) -> None:
        """The first frame's features follow the runtime's formulas."""
        state = NormState.initial(2, 32, 96)
        feat_erb, feat_spec, _ = self.extract(self.spec[:, :1], state)
        x = self.spec[0, 0].numpy().astype(np.complex128)
        band = np.array([np.mean(np.abs(x[s : s + w]) ** 2) for s, w in zip(np.cumsum([0] + DFN_WIDTHS[:-1]), DFN_WIDTHS)])
        db = 10 * np.log10(band + 1e-10)
        mean = db * 0.01 + np.linspace(-60, -90, 32) * 0.99
        np.testing.assert_allclose(feat_erb[0, 0, 0].numpy(), (db - mean) / 40, atol=1e-5)
        unit = np.abs(x[:96]) * 0.01 + np.linspace(1e-3, 1e-4, 96) * 0.99
        np.testing.assert_allclose(feat_spec[0, 0, 0].numpy(), (x[:96] / np.sqrt(unit)).real, rtol=1e-4, atol=1e-6)

    def test_chunked_equals_whole(self) -> None:
        """Carrying NormState across chunks gives exactly the features of one pass."""
        whole_erb, whole_spec, _ = self.extract(self.spec, NormState.initial(2, 32, 96))
        a_erb, a_spec, state = self.extract(self.spec[:, :11], NormState.initial(2, 32, 96))
        b_erb, b_spec, _ = self.extract(self.spec[:, 11:], state)
        torch.testing.assert_close(torch.cat([a_erb, b_erb], 2), whole_erb, rtol=0, atol=0)
        torch.testing.assert_close(torch.cat([a_spec, b_spec], 2), whole_spec, rtol=0, atol=0)
