"""Tests for denoisecast.model.config: reading a model's config.ini."""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from denoisecast.model.config import ModelConfig


class ConfigTests(SynchronousTestCase):
    def test_alpha_rounding(self) -> None:
        """tau = 1 s at a 10 ms hop gives alpha 0.99, rounded as the runtime does."""
        self.assertEqual(ModelConfig().norm_alpha, 0.99)

    def test_from_ini(self) -> None:
        """config.ini values override the defaults, lists and booleans included."""
        c = ModelConfig.from_ini_text(
            "[train]\nmodel = deepfilternet3\n[df]\nnb_df = 64\n[deepfilternet]\nconv_kernel = 1,5\n"
            "enc_concat = true\nlinear_groups = 8\n"
        )
        self.assertEqual((c.nb_df, c.conv_kernel, c.enc_concat, c.linear_groups), (64, (1, 5), True, 8))

    def test_lookahead_per_model(self) -> None:
        """DeepFilterNet3's lookaheads overlap (2 frames); DeepFilterNet2's add up (4 frames)."""
        self.assertEqual(ModelConfig(model="deepfilternet3").lookahead, 2)
        self.assertEqual(ModelConfig(model="deepfilternet2").lookahead, 4)
