"""
The reference implementation's whole-signal formulation of DeepFilterNet
(``DfNet.forward`` in the ``deepfilternet`` Python package), for
DeepFilterNet2, which the realtime runtime does not run, and as a second
reference for DeepFilterNet3.

The network sees features shifted ``conv_lookahead`` frames into the future
(silence after the end), so frame ``t``'s gains and coefficients belong to
frame ``t`` itself.  The deep filter combines frames ``t - df_order + 1 +
df_lookahead .. t + df_lookahead``: of the noisy spectrum for DeepFilterNet3,
of the ERB-masked spectrum for DeepFilterNet2.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import Tensor

from denoisecast.model.config import ModelConfig

if TYPE_CHECKING:
    from denoisecast.model.onnxnet import OnnxNet
    from denoisecast.model.traced import TracedNet


def shift_features(feat: Tensor, frames: int) -> Tensor:
    """``[B, C, T, F]`` features moved ``frames`` earlier, zeros appended."""
    if frames <= 0:
        return feat
    pad = feat.new_zeros(*feat.shape[:2], frames, feat.shape[3])
    return torch.cat([feat[:, :, frames:], pad], dim=2)


def deep_filter(spec: Tensor, coefs: Tensor, order: int, lookahead: int, nb_df: int) -> Tensor:
    """``sum_i spec[t - order + 1 + lookahead + i] * coefs[t, :, i]`` over the lowest ``nb_df`` bins."""
    b, t, _ = spec.shape
    low = spec[..., :nb_df]
    before, after = order - 1 - lookahead, lookahead
    padded = torch.cat([low.new_zeros(b, before, nb_df), low, low.new_zeros(b, after, nb_df)], dim=1)
    frames = torch.stack([padded[:, i : i + t] for i in range(order)], dim=-1)
    return (frames * coefs).sum(dim=-1)


@torch.inference_mode()
def reference_forward(
    net: "torch.nn.Module | TracedNet | OnnxNet",
    config: ModelConfig,
    spec: Tensor,
    feat_erb: Tensor,
    feat_spec: Tensor,
    frames: list[int] | None = None,
) -> tuple[Tensor, Tensor, Tensor]:
    """
    Enhanced spectrum ``[B, T, F]``, ERB gains ``[B, T, E]`` and local SNR
    ``[B, T]``.  ``frames`` gives each row's own length when rows were padded
    to share a batch: the silence after a row's end then counts as the end
    of that signal, so a row comes out as it would alone.
    """
    la = config.conv_lookahead
    erb_in, spec_in = shift_features(feat_erb, la), shift_features(feat_spec, la)
    if frames is not None:
        t = torch.arange(spec.shape[1], device=spec.device)
        valid = (t.unsqueeze(0) < torch.tensor(frames, device=spec.device).unsqueeze(1) - la).to(erb_in.dtype)
        erb_in = erb_in * valid[:, None, :, None]
        spec_in = spec_in * valid[:, None, :, None]
    out = net(erb_in, spec_in)
    masked = spec * (out.gains @ net.get_buffer("mask.erb_inv_fb"))
    source = masked if config.model == "deepfilternet2" else spec
    low = deep_filter(source, out.coefs, config.df_order, config.df_lookahead, config.nb_df)
    enhanced = torch.cat([low, masked[..., config.nb_df :]], dim=-1)
    return enhanced, out.gains, out.lsnr
