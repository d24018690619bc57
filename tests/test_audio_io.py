"""Tests for denoisecast.audio.audio_io: PyAV reading, resampling and writing."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from twisted.trial.unittest import SynchronousTestCase

from denoisecast.audio.audio_io import AudioFileError, read_audio, write_audio


class AudioIoTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.dir = Path(self.mktemp())
        self.dir.mkdir()
        t = np.arange(48000) / 48000
        self.tone = (0.25 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)[None]

    def test_every_output_format_reads_back(self) -> None:
        """wav, flac, ogg, opus and mp3 written at 48 kHz read back with the tone's level and length."""
        for ext in (".wav", ".flac", ".ogg", ".opus", ".mp3"):
            path = self.dir / f"tone{ext}"
            write_audio(path, self.tone)
            back = read_audio(path)
            self.assertEqual(back.shape[0], 1, ext)
            self.assertLess(abs(back.shape[1] - 48000), 2000, ext)
            rms = float(np.sqrt(np.mean(back[:, 5000:40000] ** 2)))
            self.assertLess(abs(rms - 0.25 / np.sqrt(2)), 0.02, ext)

    def test_resampling(self) -> None:
        """A 16 kHz stereo file comes in at 48 kHz with both channels."""
        path = self.dir / "low.wav"
        write_audio(path, np.concatenate([self.tone[:, :16000]] * 2), rate=16000)
        self.assertEqual(read_audio(path).shape, (2, 48000))

    def test_unreadable(self) -> None:
        """Garbage is an AudioFileError naming the file, not an FFmpeg exception."""
        path = self.dir / "junk.mp3"
        path.write_bytes(b"\x00" * 100)
        with self.assertRaises(AudioFileError) as caught:
            read_audio(path)
        self.assertIn("junk.mp3", str(caught.exception))

    def test_unknown_output_extension(self) -> None:
        """Writing to an extension without an encoder is an AudioFileError listing the choices."""
        with self.assertRaises(AudioFileError) as caught:
            write_audio(self.dir / "x.aiff", self.tone)
        self.assertIn(".wav", str(caught.exception))
