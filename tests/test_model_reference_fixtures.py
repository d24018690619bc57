"""
DeepFilterNet2 and DeepFilterNet3 against fixtures made once from the
reference implementation (``tools/make_dfn_fixtures.py``): the state-dict
names and shapes of the official checkpoints, and the reference forward
output with name-seeded weights on a short input.
"""

from __future__ import annotations

import json

import numpy as np
import torch
from twisted.trial.unittest import SynchronousTestCase

from denoisecast.model.weights.checkpoints import build_network
from denoisecast.model.config import ModelConfig
from denoisecast.model.features import FeatureExtractor, NormState, erb_widths
from denoisecast.model.offline import reference_forward
from denoisecast.model.stft import Stft

from tests.dsp_fixtures import DFN2_INI, FIXTURES, seeded_init



def dfn3_config() -> ModelConfig:
    from denoisecast.model.weights.onnx_export import read_archive
    from tests.reference import bundled_model_path

    return ModelConfig.from_ini_text(read_archive(bundled_model_path()).config_text)


class _FixtureMixin:
    name = ""

    def config(self) -> ModelConfig:
        raise NotImplementedError

    def check_state_dict(self) -> None:
        shapes = json.loads((FIXTURES / f"{self.name}_state_dict.json").read_text())
        net = build_network(self.config())
        mine = {k: list(v.shape) for k, v in net.state_dict().items()}
        self.assertEqual(mine, shapes)  # type: ignore[attr-defined]
        state = {k: torch.zeros(v) for k, v in shapes.items()}
        net.load_state_dict(state, strict=True)

    def check_forward(self) -> None:
        ref = np.load(FIXTURES / f"{self.name}_reference.npz")
        config = self.config()
        net = build_network(config).eval()
        seeded_init(net)
        audio = torch.from_numpy(ref["audio"])
        spec = Stft(960, 480).analysis(audio)
        extract = FeatureExtractor(erb_widths(48000, 960, 32, 2), 96, 0.99)
        feat_erb, feat_spec, _ = extract(spec, NormState.initial(1, 32, 96))
        enhanced, gains, lsnr = reference_forward(net, config, spec, feat_erb, feat_spec)
        expected = torch.view_as_complex(torch.from_numpy(ref["spec_enhanced"][:, 0]).contiguous())
        scale = float(expected.abs().max())
        self.assertLess(float((enhanced - expected).abs().max()) / scale, 1e-5)  # type: ignore[attr-defined]
        self.assertLess(float(np.abs(gains.numpy() - ref["mask"][:, 0]).max()), 1e-5)  # type: ignore[attr-defined]
        self.assertLess(float(np.abs(lsnr.numpy() - ref["lsnr"][..., 0]).max()), 1e-4)  # type: ignore[attr-defined]


class DeepFilterNet2FixtureTests(_FixtureMixin, SynchronousTestCase):
    name = "deepfilternet2"

    def config(self) -> ModelConfig:
        return ModelConfig.from_ini_text(DFN2_INI)

    def test_state_dict_matches_release(self) -> None:
        """DfNet2's state-dict names and shapes are the official DeepFilterNet2 checkpoint's; it loads strictly."""
        self.check_state_dict()

    def test_forward_matches_reference(self) -> None:
        """With the same seeded weights, DfNet2 reproduces the reference forward output (rel. 1e-5)."""
        self.check_forward()


class DeepFilterNet3FixtureTests(_FixtureMixin, SynchronousTestCase):
    name = "deepfilternet3"

    def config(self) -> ModelConfig:
        return dfn3_config()

    def test_state_dict_matches_release(self) -> None:
        """DfNet3's state-dict names and shapes are the official DeepFilterNet3 checkpoint's; it loads strictly."""
        self.check_state_dict()

    def test_forward_matches_reference(self) -> None:
        """With the same seeded weights, DfNet3 reproduces the reference forward output (rel. 1e-5)."""
        self.check_forward()
