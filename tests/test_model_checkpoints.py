"""
Tests for denoisecast.model.weights.checkpoints: official release directories load
strictly, and a DeepFilterNet2 release drives the engine end to end (with
name-seeded weights standing in for the release weights, which are not
available offline).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from twisted.trial.unittest import SynchronousTestCase

from denoisecast.model.weights.checkpoints import CheckpointError, build_network, load_release_dir, pick_checkpoint
from denoisecast.model.config import ModelConfig
from denoisecast.model.engine import DenoiseEngine

from tests.dsp_fixtures import seeded_init
from tests.test_model_reference_fixtures import DFN2_INI


def make_dfn2_release(base: Path) -> Path:
    directory = base / "DeepFilterNet2"
    (directory / "checkpoints").mkdir(parents=True)
    (directory / "config.ini").write_text(DFN2_INI)
    net = build_network(ModelConfig.from_ini_text(DFN2_INI))
    seeded_init(net)
    torch.save(net.state_dict(), directory / "checkpoints" / "model_96.ckpt.best")
    return directory


class CheckpointTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.base = Path(self.mktemp())

    def test_pick_checkpoint(self) -> None:
        """The best checkpoint of the highest epoch is chosen over plain ones."""
        ck = self.base / "checkpoints"
        ck.mkdir(parents=True)
        for name in ("model_10.ckpt", "model_90.ckpt.best", "model_96.ckpt", "model_80.ckpt.best"):
            (ck / name).write_bytes(b"")
        self.assertEqual(pick_checkpoint(self.base).name, "model_90.ckpt.best")

    def test_strict_load(self) -> None:
        """A release directory loads strictly; a checkpoint with a missing tensor is refused by name."""
        directory = make_dfn2_release(self.base)
        net, config, checkpoint, sha = load_release_dir(directory)
        self.assertEqual((config.model, checkpoint.name, len(sha)), ("deepfilternet2", "model_96.ckpt.best", 64))
        state = torch.load(checkpoint, weights_only=True)
        del state["enc.lsnr_fc.0.bias"]
        torch.save(state, checkpoint)
        with self.assertRaises(CheckpointError) as caught:
            load_release_dir(directory)
        self.assertIn("enc.lsnr_fc.0.bias", str(caught.exception))

    def test_auto_engine_uses_dfn2_release(self) -> None:
        """With DeepFilterNet2 weights in the model directory, auto runs DeepFilterNet2 and reports it."""
        make_dfn2_release(self.base)
        engine = DenoiseEngine.load("auto", model_dir=self.base, cache_dir=self.base / "cache", device="cpu")
        self.assertEqual(engine.describe()["model"], "deepfilternet2")
        rng = np.random.default_rng(0)
        signals = [rng.standard_normal(n).astype(np.float32) * 0.05 for n in (9600, 20000)]
        out = engine.enhance(signals)
        self.assertEqual([len(o) for o in out], [9600, 20000])
        alone = engine.enhance(signals[:1])[0]
        self.assertLess(float(np.abs(out[0] - alone).max()), 1e-5)


class Dfn3ReleaseTests(SynchronousTestCase):
    def test_dfn3_release_matches_bundled_export(self) -> None:
        """The bundled weights saved as a DFN3 release checkpoint load strictly and denoise identically (< 1e-4)."""
        from denoisecast.model.weights.onnx_export import read_archive
        from tests.reference import bundled_model_path

        from tests.dsp_helpers import bundled_dfnet3

        net, _, _ = bundled_dfnet3()
        directory = Path(self.mktemp()) / "DeepFilterNet3"
        (directory / "checkpoints").mkdir(parents=True)
        (directory / "config.ini").write_text(read_archive(bundled_model_path()).config_text)
        state = net.state_dict()
        for name in list(state):
            if name.endswith("running_var"):
                # The export folds batch norm with eps 0; a checkpoint's norms use eps 1e-5.
                state[name] = state[name] - 1e-5
        torch.save(state, directory / "checkpoints" / "model_120.ckpt.best")
        release = DenoiseEngine.load(str(directory), device="cpu")
        bundled = DenoiseEngine.load("deepfilternet3", device="cpu")
        self.assertEqual(release.describe()["model"], "deepfilternet3")
        signal = np.random.default_rng(3).standard_normal(24000).astype(np.float32) * 0.05
        diff = np.abs(release.enhance([signal])[0] - bundled.enhance([signal])[0]).max()
        self.assertLess(float(diff), 1e-4)
