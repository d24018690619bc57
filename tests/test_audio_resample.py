"""Tests for denoisecast.audio.resample: no seams, accurate 48 kHz output, channels and formats."""

from __future__ import annotations

import numpy as np
from twisted.trial.unittest import SynchronousTestCase

from denoisecast.audio.resample import StreamResampler


def tone(rate: int, seconds: float, freq: float = 440.0) -> np.ndarray:
    t = np.arange(int(rate * seconds)) / rate
    return (0.5 * np.sin(2 * np.pi * freq * t)).astype(np.float32)


class ResamplerTests(SynchronousTestCase):
    def test_blocks_equal_one_piece(self) -> None:
        """Resampling in random-sized blocks gives exactly the samples of one piece: state is carried, no seams."""
        rng = np.random.default_rng(0)
        for rate in (8000, 11025, 16000, 22050, 32000, 44100, 48000):
            signal = rng.standard_normal(rate // 2).astype(np.float32) * 0.1
            whole = StreamResampler(rate).process(signal)
            resampler = StreamResampler(rate)
            parts, i = [], 0
            while i < len(signal):
                size = int(rng.integers(1, 700))
                parts.append(resampler.process(signal[i : i + size]))
                i += size
            np.testing.assert_array_equal(np.concatenate(parts), whole, err_msg=str(rate))

    def test_tone_is_accurate(self) -> None:
        """A 440 Hz tone at 8–44.1 kHz comes out as the same tone sampled at 48 kHz (error < 1e-3), output time-aligned."""
        for rate in (8000, 16000, 22050, 44100):
            out = StreamResampler(rate).process(tone(rate, 0.5))
            expected = tone(48000, 1.0)[: len(out)]
            self.assertLess(float(np.abs(out[100:] - expected[100:]).max()), 1e-3, rate)
            # All but the filter's half-length of input has come out.
            self.assertGreaterEqual(len(out), 24000 - 16 * 48000 // rate - 6)

    def test_high_frequencies_do_not_image(self) -> None:
        """Upsampling 8 kHz puts (almost) no energy above 4 kHz: the images are filtered out."""
        out = StreamResampler(8000).process(tone(8000, 1.0, freq=3000.0))[2000:]
        spectrum = np.abs(np.fft.rfft(out * np.hanning(len(out))))
        freqs = np.fft.rfftfreq(len(out), 1 / 48000)
        self.assertLess(spectrum[freqs > 4500].max() / spectrum.max(), 1e-2)

    def test_stereo_int16_to_mono(self) -> None:
        """Interleaved int16 stereo is averaged to mono float at full scale 32768; 48 kHz passes unchanged."""
        left = np.array([32767, -32768, 16384], np.int16)
        right = np.array([-32767, -32768, 0], np.int16)
        pcm = np.stack([left, right], axis=1).reshape(-1)
        out = StreamResampler(48000, channels=2).process(pcm)
        np.testing.assert_allclose(out, [0.0, -1.0, 0.25])
        self.assertEqual(StreamResampler(48000).delay_seconds, 0.0)

    def test_refuses_bad_input(self) -> None:
        """Rates outside 8–48 kHz, more than two channels and half stereo frames are refused."""
        for rate in (4000, 96000):
            with self.assertRaises(ValueError):
                StreamResampler(rate)
        with self.assertRaises(ValueError):
            StreamResampler(48000, channels=6)
        with self.assertRaises(ValueError):
            StreamResampler(48000, channels=2).process(np.zeros(3, np.float32))
