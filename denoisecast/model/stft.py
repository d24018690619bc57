"""
DeepFilterNet's short-time Fourier transform, batched in torch.

The official runtime analyses one hop at a time: a Vorbis window over the
previous hop and the new one, a real FFT scaled by ``2 * hop / fft_size**2``
(the normalisation sits in the analysis only), and it synthesises by an
unscaled inverse FFT, the same window and overlap-add.  This module does
exactly that for whole signals at once, shaped ``[batch, samples]`` so that
a batch is many independent streams.  A signal of ``n`` hops gives ``n``
frames; frame ``t`` covers hops ``t - 1`` and ``t`` (hop ``-1`` is silence),
which is what a fresh runtime state sees.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor


def vorbis_window(fft_size: int, dtype: torch.dtype = torch.float32) -> Tensor:
    """``sin(pi/2 * sin^2(pi * (n + 0.5) / N))``, computed in float64 as the runtime does."""
    half = fft_size // 2
    n = torch.arange(fft_size, dtype=torch.float64)
    inner = torch.sin(0.5 * math.pi * (n + 0.5) / half)
    return torch.sin(0.5 * math.pi * inner * inner).to(dtype)


class Stft:
    """Analysis and synthesis with DeepFilterNet's framing and scaling."""

    def __init__(self, fft_size: int = 960, hop_size: int = 480) -> None:
        if fft_size != 2 * hop_size:
            raise ValueError("only 50 % overlap (fft_size == 2 * hop_size) is supported")
        self.fft_size = fft_size
        self.hop_size = hop_size
        self.window = vorbis_window(fft_size)
        self.wnorm = 1.0 / (fft_size**2 / (2 * hop_size))

    def _window_on(self, like: Tensor) -> Tensor:
        if self.window.device != like.device:
            self.window = self.window.to(like.device)
        return self.window.to(like.dtype)

    def analysis(self, audio: Tensor, previous_hop: Tensor | None = None) -> Tensor:
        """
        ``[B, n * hop]`` samples to a complex spectrogram ``[B, n, F]``.

        ``previous_hop`` (``[B, hop]``) is the overlap carried from an earlier
        chunk of the same streams; silence when absent.
        """
        batch, samples = audio.shape
        hop = self.hop_size
        if samples % hop:
            raise ValueError("audio length must be a multiple of the hop size")
        if previous_hop is None:
            previous_hop = audio.new_zeros(batch, hop)
        padded = torch.cat([previous_hop, audio], dim=1)
        frames = padded.unfold(1, self.fft_size, hop)  # [B, n, fft]
        spec = torch.fft.rfft(frames * self._window_on(audio), dim=-1)
        return spec * self.wnorm

    def synthesis(self, spec: Tensor, overlap: Tensor | None = None) -> Tensor:
        """
        Complex ``[B, n, F]`` to ``[B, n * hop]`` samples by windowed
        overlap-add; output hop ``t`` is the first half of frame ``t`` plus the
        second half of frame ``t - 1`` (``overlap`` for the first frame).
        """
        batch, frames, _ = spec.shape
        hop = self.hop_size
        time = torch.fft.irfft(spec, n=self.fft_size, dim=-1) * self.fft_size
        time = time * self._window_on(time)
        first, second = time[..., :hop], time[..., hop:]
        if overlap is None:
            overlap = time.new_zeros(batch, hop)
        tail = torch.cat([overlap.unsqueeze(1), second[:, :-1]], dim=1)
        return (first + tail).reshape(batch, frames * hop)
