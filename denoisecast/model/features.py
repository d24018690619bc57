"""
DeepFilterNet's input features and ERB band bookkeeping, batched in torch.

The network sees two views of each frame: the power in 32 ERB bands in dB,
minus an exponentially running mean (``feat_erb``), and the lowest
``nb_df`` complex bins divided by the square root of a running mean of their
magnitude (``feat_spec``).  Both running means start from the runtime's
fixed initial states and advance with ``alpha`` once per frame; their states
are explicit inputs and outputs so that a stream can be continued chunk by
chunk.  Arithmetic follows the runtime in float32, operation by operation,
because the features feed a recurrent network that amplifies tiny drifts.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

MEAN_NORM_INIT = (-60.0, -90.0)
UNIT_NORM_INIT = (0.001, 0.0001)


def erb_widths(sr: int, fft_size: int, nb_bands: int, min_nb_freqs: int) -> list[int]:
    """
    Number of FFT bins in each ERB band, as the runtime computes them (in
    float32, rounding half away from zero), so that masks line up with the
    official models' bands.
    """
    f32 = np.float32

    def freq2erb(freq: np.float32) -> np.float32:
        return f32(9.265) * f32(np.log1p(f32(freq / (f32(24.7) * f32(9.265)))))

    def erb2freq(n_erb: np.float32) -> np.float32:
        return f32(24.7) * f32(9.265) * f32(np.expm1(f32(n_erb / f32(9.265))))

    freq_width = f32(sr) / f32(fft_size)
    erb_low = freq2erb(f32(0.0))
    erb_high = freq2erb(f32(sr // 2))
    step = f32((erb_high - erb_low) / f32(nb_bands))
    widths = [0] * nb_bands
    prev_freq = 0
    freq_over = 0
    for i in range(1, nb_bands + 1):
        f = erb2freq(f32(erb_low + f32(i) * step))
        fb = int(np.floor(f32(f / freq_width) + 0.5))
        nb_freqs = fb - prev_freq - freq_over
        if nb_freqs < min_nb_freqs:
            freq_over = min_nb_freqs - nb_freqs
            nb_freqs = min_nb_freqs
        else:
            freq_over = 0
        widths[i - 1] = nb_freqs
        prev_freq = fb
    widths[-1] += 1
    too_large = sum(widths) - (fft_size // 2 + 1)
    if too_large > 0:
        widths[-1] -= too_large
    return widths


def erb_matrices(widths: list[int]) -> tuple[Tensor, Tensor]:
    """
    ``band_mean`` ``[F, E]`` averages bins into bands (each column sums to
    one); ``band_spread`` ``[E, F]`` copies a band's gain onto its bins.  The
    second one is the reference implementation's ``erb_inv_fb`` buffer.
    """
    n_freqs = sum(widths)
    mean = torch.zeros(n_freqs, len(widths))
    spread = torch.zeros(len(widths), n_freqs)
    start = 0
    for band, width in enumerate(widths):
        mean[start : start + width, band] = 1.0 / width
        spread[band, start : start + width] = 1.0
        start += width
    return mean, spread


def initial_mean_norm_state(nb_erb: int) -> Tensor:
    low, high = MEAN_NORM_INIT
    step = np.float32((high - low) / (nb_erb - 1))
    return torch.from_numpy(np.float32(low) + np.arange(nb_erb, dtype=np.float32) * step)


def initial_unit_norm_state(nb_df: int) -> Tensor:
    low, high = UNIT_NORM_INIT
    step = np.float32((np.float32(high) - np.float32(low)) / np.float32(nb_df - 1))
    return torch.from_numpy(np.float32(low) + np.arange(nb_df, dtype=np.float32) * step)


@dataclass
class NormState:
    """Running-normalisation state of a batch of streams."""

    mean: Tensor  # [B, nb_erb], dB
    unit: Tensor  # [B, nb_df], magnitude

    @classmethod
    def initial(cls, batch: int, nb_erb: int, nb_df: int, device: torch.device | str = "cpu") -> "NormState":
        mean = initial_mean_norm_state(nb_erb).to(device).expand(batch, nb_erb).clone()
        unit = initial_unit_norm_state(nb_df).to(device).expand(batch, nb_df).clone()
        return cls(mean=mean, unit=unit)


class FeatureExtractor:
    """Computes ``feat_erb`` ``[B, 1, T, E]`` and ``feat_spec`` ``[B, 2, T, Fdf]``."""

    def __init__(self, widths: list[int], nb_df: int, alpha: float) -> None:
        self.widths = widths
        self.nb_df = nb_df
        self.alpha = np.float32(alpha)
        self.one_minus_alpha = np.float32(1.0) - self.alpha
        self.band_mean, _ = erb_matrices(widths)

    def _on(self, like: Tensor) -> Tensor:
        if self.band_mean.device != like.device:
            self.band_mean = self.band_mean.to(like.device)
        return self.band_mean

    def __call__(self, spec: Tensor, state: NormState) -> tuple[Tensor, Tensor, NormState]:
        """``spec``: complex ``[B, T, F]``.  Returns both features and the advanced state."""
        alpha, beta = float(self.alpha), float(self.one_minus_alpha)
        power = spec.real.square() + spec.imag.square()
        band_db = torch.log10(power @ self._on(power) + 1e-10) * 10.0  # [B, T, E]
        low = spec[..., : self.nb_df]
        magnitude = low.abs()  # [B, T, Fdf]
        mean, unit = state.mean, state.unit
        means = []
        units = []
        for t in range(spec.shape[1]):
            mean = band_db[:, t] * beta + mean * alpha
            unit = magnitude[:, t] * beta + unit * alpha
            means.append(mean)
            units.append(unit)
        if means:
            mean_seq = torch.stack(means, dim=1)
            unit_seq = torch.stack(units, dim=1)
        else:
            mean_seq = band_db
            unit_seq = magnitude
        feat_erb = ((band_db - mean_seq) / 40.0).unsqueeze(1)
        normed = low / unit_seq.sqrt()
        feat_spec = torch.stack([normed.real, normed.imag], dim=1)
        return feat_erb, feat_spec, NormState(mean=mean, unit=unit)
