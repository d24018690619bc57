"""
Inference rewrites of the network: batch norms folded into convolutions,
in-place activations and the channels-last layout must not change what the
network computes.
"""

from __future__ import annotations

import copy

import torch
from torch import nn
from twisted.trial.unittest import TestCase

from denoisecast.model.weights.checkpoints import build_network
from denoisecast.model.config import ModelConfig
from denoisecast.model.dfnet3 import NetState
from denoisecast.model.layers import Conv2dNormAct, fold_batch_norms
from tests.dsp_fixtures import DFN2_INI, seeded_init
from tests.dsp_helpers import bundled_dfnet3


def outputs(net: nn.Module, config: ModelConfig, frames: int = 30, batch: int = 3) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(3)
    erb = torch.randn(batch, 1, frames, config.nb_erb, generator=g)
    spec = torch.randn(batch, 2, frames, config.nb_df, generator=g)
    with torch.inference_mode():
        out, state = net.forward_stream(erb, spec, NetState.initial(batch, config))
    return [out.gains, torch.view_as_real(out.coefs), out.lsnr, state.c0_ctx, state.h_df]


class FoldBatchNormsTests(TestCase):
    def check_equal(self, net: nn.Module, config: ModelConfig) -> None:
        before = outputs(net, config)
        folded = copy.deepcopy(net)
        fold_batch_norms(folded)
        self.assertFalse(any(isinstance(m, nn.BatchNorm2d) for m in folded.modules()))
        after = outputs(folded, config)
        for a, b in zip(before, after):
            self.assertLess(float((a - b).abs().max()), 1e-4)

    def test_deepfilternet2_outputs_unchanged(self) -> None:
        config = ModelConfig.from_ini_text(DFN2_INI)
        net = build_network(config).eval()
        seeded_init(net)
        self.check_equal(net, config)

    def test_deepfilternet3_outputs_unchanged(self) -> None:
        net, config, _ = bundled_dfnet3()
        self.check_equal(net.eval(), config)

    def test_every_norm_after_a_convolution_is_folded(self) -> None:
        """
        DeepFilterNet's norms all follow a plain or pointwise convolution
        (transposed convolutions are separable, so a pointwise one comes
        last); none may be left as a separate pass.
        """
        net = build_network(ModelConfig.from_ini_text(DFN2_INI)).eval()
        self.assertTrue(any(isinstance(m, nn.BatchNorm2d) for m in net.modules()))
        fold_batch_norms(net)
        self.assertEqual([n for n, m in net.named_modules() if isinstance(m, nn.BatchNorm2d)], [])
        self.assertTrue(all(m.inplace for m in net.modules() if isinstance(m, nn.ReLU)))

    def test_folding_twice_changes_nothing(self) -> None:
        block = Conv2dNormAct(4, 8, (3, 3), separable=True).eval()
        with torch.no_grad():
            block[3].running_mean.uniform_(-1, 1)
            block[3].running_var.uniform_(0.5, 2)
        x = torch.randn(2, 4, 6, 10)
        expected = block(x)
        fold_batch_norms(block)
        once = block(x)
        fold_batch_norms(block)
        self.assertLess(float((once - expected).abs().max()), 1e-5)
        self.assertTrue(torch.equal(block(x), once))

    def test_separable_block_with_few_inputs_becomes_one_convolution(self) -> None:
        """
        A grouped convolution over few input channels and its pointwise
        convolution (DeepFilterNet3's first spectrum block: 2 channels in 2
        groups, then 64x64) are merged into one dense convolution with the
        same output; a depthwise block over many channels, where the merge
        would cost more multiplications, stays separable.
        """
        net, _, _ = bundled_dfnet3()
        net = copy.deepcopy(net).eval()
        fold_batch_norms(net)
        first = [m for m in net.enc.df_conv0 if isinstance(m, nn.Conv2d)]
        self.assertEqual([(c.in_channels, c.out_channels, c.groups) for c in first], [(2, 64, 1)])
        depthwise = [m for m in net.enc.df_conv1 if isinstance(m, nn.Conv2d)]
        self.assertEqual([c.groups for c in depthwise], [64, 1])
        block = Conv2dNormAct(2, 16, (3, 3), fstride=2, separable=True).eval()
        with torch.no_grad():
            block[3].running_mean.uniform_(-1, 1)
            block[3].running_var.uniform_(0.5, 2)
            block[3].weight.uniform_(0.5, 2)
            block[3].bias.uniform_(-1, 1)
        x = torch.randn(2, 2, 6, 10)
        expected = block(x)
        fold_batch_norms(block)
        self.assertEqual(len([m for m in block if isinstance(m, nn.Conv2d)]), 1)
        self.assertLess(float((block(x) - expected).abs().max()), 1e-5)

    def test_training_mode_is_refused(self) -> None:
        with self.assertRaises(ValueError):
            fold_batch_norms(Conv2dNormAct(4, 8, (3, 3)))


class ChannelsLastTests(TestCase):
    def test_layout_of_inputs_does_not_matter(self) -> None:
        """Callers may pass contiguous or channels-last features and states."""
        config = ModelConfig.from_ini_text(DFN2_INI)
        net = build_network(config).eval()
        seeded_init(net)
        erb = torch.randn(2, 1, 12, config.nb_erb)
        spec = torch.randn(2, 12, config.nb_df, 2).permute(0, 3, 1, 2)  # channels-last view
        with torch.inference_mode():
            a = net.forward_stream(erb, spec, NetState.initial(2, config))[0]
            b = net.forward_stream(erb, spec.contiguous(), NetState.initial(2, config))[0]
        self.assertLess(float((a.gains - b.gains).abs().max()), 1e-5)
        self.assertLess(float((a.coefs - b.coefs).abs().max()), 1e-5)
