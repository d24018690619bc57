"""Tests for the denoisecast-enhance command (denoisecast.cli.enhance)."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from twisted.trial.unittest import SynchronousTestCase

from denoisecast.cli import enhance
from denoisecast.audio.audio_io import read_audio, write_audio


class EnhanceCommandTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.dir = Path(self.mktemp())
        self.dir.mkdir()
        self.stderr = io.StringIO()
        self.patch(enhance.sys, "stderr", self.stderr)
        rng = np.random.default_rng(0)
        self.noisy = (rng.standard_normal((1, 44100)) * 0.05).astype(np.float32)

    def test_single_file_resampled_to_48k(self) -> None:
        """A 44.1 kHz wav becomes a 48 kHz wav of the same duration, quieter than the noise."""
        src, dst = self.dir / "in.wav", self.dir / "out.wav"
        write_audio(src, self.noisy, 44100)
        self.assertEqual(enhance.main([str(src), str(dst), "--quiet"]), 0)
        out = read_audio(dst)
        self.assertEqual(out.shape, (1, 48000))
        self.assertLess(float(np.std(out)), float(np.std(self.noisy)))

    def test_many_files_into_directory(self) -> None:
        """Several inputs (mono and stereo, wav and flac) go into a directory under their own names."""
        write_audio(self.dir / "a.wav", self.noisy, 44100)
        write_audio(self.dir / "b.flac", np.concatenate([self.noisy, self.noisy]), 48000)
        out_dir = self.dir / "out"
        code = enhance.main([str(self.dir / "a.wav"), str(self.dir / "b.flac"), str(out_dir) + "/"])
        self.assertEqual(code, 0)
        self.assertEqual(read_audio(out_dir / "b.flac").shape[0], 2)
        self.assertTrue((out_dir / "a.wav").is_file())
        self.assertIn("2 file(s)", self.stderr.getvalue())

    def test_unreadable_input_is_one_line(self) -> None:
        """An unreadable input gives a one-line error and exit status 1, never a traceback."""
        bad = self.dir / "bad.wav"
        bad.write_bytes(b"this is not audio")
        code = enhance.main([str(bad), str(self.dir / "out.wav")])
        self.assertEqual(code, 1)
        text = self.stderr.getvalue()
        self.assertIn("bad.wav", text)
        self.assertNotIn("Traceback", text)

    def test_unknown_output_format(self) -> None:
        """An output extension without an encoder is refused before any work."""
        write_audio(self.dir / "a.wav", self.noisy, 44100)
        self.assertEqual(enhance.main([str(self.dir / "a.wav"), str(self.dir / "a.xyz")]), 2)
        self.assertIn("unsupported output extension", self.stderr.getvalue())

    def test_progress_bar(self) -> None:
        """The progress bar stays hidden for short work and draws itself once work is long."""
        out = io.StringIO()
        bar = enhance.ProgressBar(out, "batch", after_s=3600)
        bar(1, 10)
        self.assertEqual(out.getvalue(), "")
        bar = enhance.ProgressBar(out, "batch", after_s=0)
        bar(5, 10)
        bar.close()
        self.assertIn("50%", out.getvalue())
