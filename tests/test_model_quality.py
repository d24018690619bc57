"""
Denoising quality of the default model on speech in noise, beside the
official runtime on the same inputs.

espeak-ng speaks three sentences; each is mixed with sox's white, pink and
brown noise at 0 dB and 5 dB SNR (18 files of four to five seconds).  SI-SDR is
measured against the clean speech after removing the processing delay (the
enhanced output is aligned with its input).
"""

from __future__ import annotations

import numpy as np
import torch
from twisted.trial.unittest import SynchronousTestCase

from tests.reference import official_enhance

from tests.dsp_helpers import bundled_path, have_espeak, have_sox, mix, si_sdr, sox_noise, speech

SENTENCES = (
    "Please call Stella and ask her to bring these things with her from the store.",
    "The birch canoe slid on the smooth planks, glue the sheet to the dark blue background.",
    "Four hours of steady work faced us, a large size in stockings is hard to sell.",
)
NOISES = ("white", "pink", "brown")
SNRS = (0.0, 5.0)


def quality_set() -> list[tuple[str, np.ndarray, np.ndarray]]:
    """(name, clean, noisy) for every sentence, noise colour and SNR."""
    items = []
    for i, text in enumerate(SENTENCES):
        clean = speech(text)
        for kind in NOISES:
            for snr in SNRS:
                noisy = mix(clean, sox_noise(kind, len(clean), offset_s=6.0 * i), snr)
                items.append((f"s{i}-{kind}-{snr:g}dB", clean, noisy))
    return items


class QualityTests(SynchronousTestCase):
    def setUp(self) -> None:
        if not (have_espeak() and have_sox()):
            raise self.skipTest("espeak-ng and sox are needed (scripts/setup.sh installs them)")
        self.items = quality_set()
        engine_path = bundled_path()
        longest = max(len(noisy) for _, _, noisy in self.items)
        batch = np.zeros((len(self.items), longest), dtype=np.float32)
        for row, (_, _, noisy) in zip(batch, self.items):
            row[: len(noisy)] = noisy
        ours = engine_path.enhance(torch.from_numpy(batch)).numpy()
        self.gains = []
        for (name, clean, noisy), padded in zip(self.items, ours):
            enhanced = padded[: len(noisy)]
            base = si_sdr(clean, noisy)
            official = official_enhance(noisy)
            self.gains.append((name, si_sdr(clean, enhanced) - base, si_sdr(clean, official) - base))

    def test_average_improvement(self) -> None:
        """The default model improves SI-SDR by at least 8 dB on average over the set."""
        mean = float(np.mean([ours for _, ours, _ in self.gains]))
        self.assertGreaterEqual(mean, 8.0, self.gains)

    def test_every_file_close_to_official_runtime(self) -> None:
        """On every file the improvement is within 0.5 dB of the official runtime's."""
        for name, ours, official in self.gains:
            self.assertLess(abs(ours - official), 0.5, name)
