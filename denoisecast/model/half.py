"""
Half precision for the network on a GPU.

Only the network runs in float16 (under autocast): the STFT, features,
deep filter and synthesis stay in float32, because cuFFT computes half
precision only for power-of-two sizes (DeepFilterNet's FFT is 960 points)
and the normalisation states drift in float16.  The network's outputs are
returned in float32 so the rest of the signal path is unchanged.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import torch
from torch import Tensor


def _widen(value: Any) -> Any:
    if isinstance(value, Tensor):
        if value.dtype == torch.float16:
            return value.float()
        if value.dtype == torch.complex32:
            return value.to(torch.complex64)
    return value


class HalfPrecisionNet:
    """Wraps a DeepFilterNet so ``forward_stream`` runs under float16 autocast on CUDA."""

    def __init__(self, net: Any) -> None:
        self.net = net

    def __getattr__(self, name: str) -> Any:
        return getattr(self.net, name)

    def forward_stream(self, feat_erb: Tensor, feat_spec: Tensor, state: Any) -> tuple[Any, Any]:
        with torch.autocast("cuda", dtype=torch.float16):
            out, new_state = self.net.forward_stream(feat_erb, feat_spec, state)
        widened = {f.name: _widen(getattr(out, f.name)) for f in dataclasses.fields(out)}
        return dataclasses.replace(out, **widened), new_state


def use_half_precision(engine: Any) -> bool:
    """Switch an engine's network to float16 when it runs on CUDA; False (unchanged) elsewhere."""
    if engine.device.type != "cuda":
        return False
    engine.path.net = HalfPrecisionNet(engine.path.net)
    return True
