"""Tests for the denoisecast-models command (denoisecast.cli.models)."""

from __future__ import annotations

import urllib.request
from pathlib import Path

from twisted.trial.unittest import SynchronousTestCase

from denoisecast.cli import models as command


class CommandTests(SynchronousTestCase):
    def setUp(self) -> None:
        import io

        self.out, self.err = io.StringIO(), io.StringIO()
        self.patch(command.sys, "stdout", self.out)
        self.patch(command.sys, "stderr", self.err)
        self.cache = Path(self.mktemp())

    def test_which(self) -> None:
        """'which' prints what a choice resolves to; a missing DeepFilterNet2 is one line and status 1."""
        self.assertEqual(command.main(["--cache-dir", str(self.cache), "which"]), 0)
        self.assertIn("deepfilternet3 (onnx)", self.out.getvalue())
        self.assertEqual(command.main(["--cache-dir", str(self.cache), "which", "deepfilternet2"]), 1)
        self.assertIn("denoisecast-models fetch deepfilternet2", self.err.getvalue())

    def test_fetch_without_network(self) -> None:
        """A failed download is one line saying the bundled model still works, status 1."""

        def offline(*args: object, **kwargs: object) -> object:
            raise OSError("network unreachable")

        self.patch(urllib.request, "urlopen", offline)
        self.assertEqual(command.main(["--cache-dir", str(self.cache), "fetch", "deepfilternet2"]), 1)
        self.assertIn("bundled DeepFilterNet3 still works offline", self.err.getvalue())
