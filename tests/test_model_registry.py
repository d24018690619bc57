"""Tests for denoisecast.model.weights.registry: offline resolution and the pinned fetch."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

from twisted.trial.unittest import SynchronousTestCase

from denoisecast.model.weights import registry as models


def make_release(base: Path, folder: str, model: str) -> Path:
    directory = base / folder
    (directory / "checkpoints").mkdir(parents=True)
    (directory / "config.ini").write_text(f"[train]\nmodel = {model}\n")
    (directory / "checkpoints" / "model_96.ckpt.best").write_bytes(b"x")
    return directory


class ResolveTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.model_dir = Path(self.mktemp())
        self.cache_dir = Path(self.mktemp())
        self.model_dir.mkdir()
        self.cache_dir.mkdir()

    def test_auto_without_dfn2_uses_bundled_dfn3(self) -> None:
        """With no release weights anywhere, auto is the bundled DeepFilterNet3 ONNX export."""
        source = models.resolve("auto", self.model_dir, self.cache_dir)
        self.assertEqual((source.name, source.kind), ("deepfilternet3", "onnx"))
        self.assertTrue(source.path.is_file())

    def test_auto_prefers_dfn2_in_model_dir(self) -> None:
        """DeepFilterNet2 weights in the model directory win under auto."""
        expected = make_release(self.model_dir, "DeepFilterNet2", "deepfilternet2")
        source = models.resolve("auto", self.model_dir, self.cache_dir)
        self.assertEqual((source.name, source.kind, source.path), ("deepfilternet2", "checkpoint", expected))

    def test_auto_finds_dfn2_in_cache(self) -> None:
        """DeepFilterNet2 weights in the cache (where fetch puts them) are found as well."""
        make_release(self.cache_dir, "DeepFilterNet2", "deepfilternet2")
        self.assertEqual(models.resolve("auto", self.model_dir, self.cache_dir).name, "deepfilternet2")

    def test_explicit_dfn2_missing_explains(self) -> None:
        """Asking for DeepFilterNet2 without its weights names the places searched and the fetch command."""
        with self.assertRaises(models.ModelNotFound) as caught:
            models.resolve("deepfilternet2", self.model_dir, self.cache_dir)
        message = str(caught.exception)
        self.assertIn(str(self.cache_dir), message)
        self.assertIn("denoisecast-models fetch deepfilternet2", message)

    def test_explicit_dfn3_prefers_release_checkpoint(self) -> None:
        """deepfilternet3 uses a DeepFilterNet3 release directory when present, else the bundled export."""
        self.assertEqual(models.resolve("deepfilternet3", self.model_dir, self.cache_dir).kind, "onnx")
        make_release(self.cache_dir, "DeepFilterNet3", "deepfilternet3")
        self.assertEqual(models.resolve("deepfilternet3", self.model_dir, self.cache_dir).kind, "checkpoint")

    def test_path_choices(self) -> None:
        """A release directory or an ONNX tar.gz may be given as a path; anything else is explained."""
        release = make_release(self.model_dir, "mine", "deepfilternet2")
        self.assertEqual(models.resolve(str(release)).name, "deepfilternet2")
        bundled = models.bundled_onnx()
        self.assertEqual(models.resolve(str(bundled)).kind, "onnx")
        with self.assertRaises(models.ModelNotFound):
            models.resolve(str(self.model_dir / "nothing"))


class FetchTests(SynchronousTestCase):
    def _archive(self, folder: str) -> Path:
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w") as zf:
            zf.writestr(f"{folder}/config.ini", "[train]\nmodel = deepfilternet2\n")
            zf.writestr(f"{folder}/checkpoints/model_96.ckpt.best", b"weights")
        path = Path(self.mktemp()).absolute()
        path.write_bytes(buf.getvalue())
        return path

    def test_bundled_export_has_upstream_blob_hash(self) -> None:
        """The pin scheme is the upstream blob hash: the bundled export carries the one upstream lists."""
        data = models.bundled_onnx().read_bytes()
        self.assertEqual(models.git_blob_sha1(data), "1c4f4ffe1015fbb4541433cf291234ca32338871")

    def test_checksum_mismatch_installs_nothing(self) -> None:
        """A download whose hash differs from the pin is refused and leaves the cache empty."""
        archive = self._archive("DeepFilterNet2")
        cache = Path(self.mktemp())
        with self.assertRaises(ValueError) as caught:
            models.fetch("deepfilternet2", cache, url=archive.as_uri())
        self.assertIn("does not match the pinned", str(caught.exception))
        self.assertFalse((cache / "DeepFilterNet2").exists())

    def test_fetch_unpacks_verified_archive(self) -> None:
        """A download matching the pin is unpacked into the cache, where resolve finds it; fetching again replaces it."""
        archive = self._archive("DeepFilterNet2")
        cache = Path(self.mktemp())
        self.patch(models, "RELEASES", {"deepfilternet2": ("DeepFilterNet2", models.git_blob_sha1(archive.read_bytes()))})
        installed = models.fetch("deepfilternet2", cache, url=archive.as_uri())
        self.assertTrue((installed / "config.ini").is_file())
        again = models.fetch("deepfilternet2", cache, url=archive.as_uri())
        self.assertEqual(again, installed)
        self.assertEqual(sorted(p.name for p in cache.iterdir()), ["DeepFilterNet2"])
        self.assertEqual(models.resolve("auto", None, cache).path, installed)
