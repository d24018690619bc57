"""
Conversion of live input (8–48 kHz, mono or stereo, int16 or float) to the
48 kHz mono float32 the engine runs on.

Live audio arrives in small blocks, so the resampler keeps its filter
history between calls: resampling a signal block by block gives exactly the
samples resampling it in one piece gives, with no seam at block edges.  It
is a windowed-sinc polyphase interpolator for the rational ratio
``out / in`` (48 kHz over any integer input rate), cut off a little below
the input's Nyquist frequency so the spectral images of upsampling are
removed.  It delays the signal by ``half_taps`` input samples (2 ms at
8 kHz, none at 48 kHz where it only mixes channels down).
"""

from __future__ import annotations

from math import gcd

import numpy as np
import numpy.typing as npt

from denoisecast.audio import SAMPLE_RATE

MIN_RATE = 8000


def _kaiser_sinc_table(up: int, half_taps: int, cutoff: float, beta: float) -> npt.NDArray[np.float32]:
    """Filter coefficients ``[up, 2 * half_taps]``: one row per output phase, each summing to 1."""
    offsets = np.arange(-half_taps + 1, half_taps + 1, dtype=np.float64)
    phases = np.arange(up, dtype=np.float64)[:, None] / up
    t = offsets[None, :] - phases  # input sample position relative to the output instant
    window = np.kaiser(4 * half_taps + 1, beta)
    # Sample the window continuously by interpolating its table.
    w = np.interp(t, np.linspace(-half_taps, half_taps, len(window)), window, left=0.0, right=0.0)
    h = cutoff * np.sinc(cutoff * t) * w
    h /= h.sum(axis=1, keepdims=True)
    return h.astype(np.float32)


class StreamResampler:
    """
    Stateful converter of one stream's blocks to 48 kHz mono float32.

    ``process(block)`` takes int16 (full scale 32768) or float samples,
    interleaved when ``channels`` is 2, and returns the 48 kHz samples that
    are complete so far; the rest waits in the history for the next block.
    """

    def __init__(self, input_rate: int, channels: int = 1, half_taps: int = 16) -> None:
        if not MIN_RATE <= input_rate <= SAMPLE_RATE:
            raise ValueError(f"input rate {input_rate} Hz is outside {MIN_RATE}–{SAMPLE_RATE} Hz")
        if channels not in (1, 2):
            raise ValueError(f"{channels} channels: only mono and stereo input is accepted")
        self.input_rate = input_rate
        self.channels = channels
        g = gcd(SAMPLE_RATE, input_rate)
        self.up = SAMPLE_RATE // g
        self.down = input_rate // g
        self.half_taps = half_taps if self.up != self.down else 0
        self._offsets = np.arange(-self.half_taps + 1, self.half_taps + 1)
        if self.half_taps:
            self._table = _kaiser_sinc_table(self.up, self.half_taps, 0.92, 8.0)
        # Input history; ``_next`` is the next output instant times ``up``, relative to its start.
        self._history = np.zeros(self.half_taps, dtype=np.float32)
        self._next = self.half_taps * self.up

    @property
    def delay_seconds(self) -> float:
        """How far the output lags the input."""
        return self.half_taps / self.input_rate

    def to_mono_float(self, block: np.ndarray) -> npt.NDArray[np.float32]:
        """Interleaved int16 or float samples as mono float32 (stereo is averaged)."""
        data = np.asarray(block)
        if data.dtype == np.int16:
            mono = data.astype(np.float32) * np.float32(1.0 / 32768.0)
        else:
            mono = data.astype(np.float32, copy=False)
        if self.channels == 2:
            if mono.size % 2:
                raise ValueError("a stereo block must hold whole frames (an even number of samples)")
            mono = mono.reshape(-1, 2).mean(axis=1, dtype=np.float32)
        return mono.reshape(-1)

    def process(self, block: np.ndarray) -> npt.NDArray[np.float32]:
        mono = self.to_mono_float(block)
        if not self.half_taps:
            return mono.copy()
        history = np.concatenate([self._history, mono])
        # Output k at input position next/up needs inputs up to floor(next/up) + half_taps.
        last_center = len(history) - 1 - self.half_taps
        if last_center * self.up < self._next:
            self._history = history
            return np.zeros(0, dtype=np.float32)
        count = (last_center * self.up + self.up - 1 - self._next) // self.down + 1
        count = max(0, count)
        # Keep only instants whose centre is within reach.
        instants = self._next + self.down * np.arange(count, dtype=np.int64)
        instants = instants[instants // self.up <= last_center]
        centers = instants // self.up
        phases = instants % self.up
        taps = history[centers[:, None] + self._offsets[None, :]]
        out = np.einsum("ij,ij->i", taps, self._table[phases]).astype(np.float32)
        following = self._next + self.down * len(instants)
        drop = max(0, following // self.up - self.half_taps + 1)
        self._history = history[drop:]
        self._next = following - drop * self.up
        return out
