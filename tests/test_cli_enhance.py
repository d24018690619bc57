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


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


class EnhanceValidationTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.dir = Path(self.mktemp())
        self.dir.mkdir()
        self.stderr = io.StringIO()
        self.patch(enhance.sys, "stderr", self.stderr)
        self.source = self.dir / "in.wav"
        rng = np.random.default_rng(0)
        write_audio(self.source, (rng.standard_normal((1, 4800)) * 0.05).astype(np.float32), 48000)

    def refuse_model(self) -> None:
        """Make loading the model fail the test: validation must come first."""
        from denoisecast.model import engine

        def load(*args: object, **kwargs: object) -> None:
            raise AssertionError("the model was loaded")

        self.patch(engine.DenoiseEngine, "load", load)

    def test_invalid_values_refused(self) -> None:
        """
        A negative or non-numeric attenuation limit, a batch size of 0 and
        similar are refused with exit status 2 and a message naming the option.
        """
        self.refuse_model()
        for option, value in (
            ("--atten-lim-db", "-5"), ("--atten-lim-db", "nan"), ("--atten-lim-db", "101"), ("--atten-lim-db", "loud"),
            ("--batch-size", "0"), ("--batch-size", "-3"), ("--batch-size", "2.5"), ("--batch-size", "99999"),
        ):
            self.stderr.truncate(0)
            with self.assertRaises(SystemExit) as caught:
                enhance.main([str(self.source), str(self.dir / "out.wav"), option, value])
            self.assertEqual(caught.exception.code, 2, (option, value))
            self.assertIn(f"argument {option}", self.stderr.getvalue())
            self.assertFalse((self.dir / "out.wav").exists())

    def test_missing_input_before_model(self) -> None:
        """A missing input stops the command with status 2 before the model loads."""
        self.refuse_model()
        code = enhance.main([str(self.source), str(self.dir / "gone.wav"), str(self.dir / "out") + "/"])
        self.assertEqual(code, 2)
        self.assertEqual(self.stderr.getvalue().strip(), f"denoisecast-enhance: {self.dir / 'gone.wav'}: no such file")

    def test_progress_bar_only_on_terminal(self) -> None:
        """
        Into a pipe or file no bar (no carriage returns); on a terminal the
        bar is drawn.
        """
        self.patch(enhance, "BAR_AFTER_S", 0.0)
        self.assertEqual(enhance.main([str(self.source), str(self.dir / "a.wav")]), 0)
        self.assertNotIn("\r", self.stderr.getvalue())
        self.assertIn("1 file(s)", self.stderr.getvalue())
        terminal = _Terminal()
        self.patch(enhance.sys, "stderr", terminal)
        self.assertEqual(enhance.main([str(self.source), str(self.dir / "b.wav")]), 0)
        self.assertIn("\rbatch 1/1 [", terminal.getvalue())
