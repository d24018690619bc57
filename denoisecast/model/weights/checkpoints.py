"""
Loads an official DeepFilterNet release directory (``config.ini`` +
``checkpoints/model_<epoch>.ckpt.best``) strictly into the project's
modules, with the hyper-parameters from its ``config.ini``.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from denoisecast.model.config import ModelConfig

if TYPE_CHECKING:
    from denoisecast.model.dfnet2 import DfNet2
    from denoisecast.model.dfnet3 import DfNet3


class CheckpointError(ValueError):
    """A release directory whose checkpoint does not fit the network."""


def pick_checkpoint(directory: Path) -> Path:
    """The best checkpoint of the highest epoch (``.ckpt.best`` before ``.ckpt``)."""
    found: list[tuple[int, int, Path]] = []
    for path in (directory / "checkpoints").glob("model_*.ckpt*"):
        match = re.fullmatch(r"model_(\d+)\.ckpt(\.best)?", path.name)
        if match:
            found.append((1 if match.group(2) else 0, int(match.group(1)), path))
    if not found:
        raise CheckpointError(f"{directory}: no checkpoints/model_*.ckpt[.best]")
    return max(found)[2]


def build_network(config: ModelConfig) -> "DfNet2 | DfNet3":
    if config.model == "deepfilternet3":
        from denoisecast.model.dfnet3 import DfNet3

        return DfNet3(config)
    if config.model == "deepfilternet2":
        from denoisecast.model.dfnet2 import DfNet2

        return DfNet2(config)
    raise CheckpointError(f"unsupported model type {config.model!r}")


def load_release_dir(directory: Path) -> tuple["DfNet2 | DfNet3", ModelConfig, Path, str]:
    """Returns the network in eval mode, its configuration, the checkpoint file and its SHA-256."""
    config = ModelConfig.from_ini_text((directory / "config.ini").read_text())
    checkpoint = pick_checkpoint(directory)
    data = checkpoint.read_bytes()
    state = torch.load(checkpoint, map_location="cpu", weights_only=True)
    if isinstance(state, dict) and "model" in state and isinstance(state["model"], dict):
        state = state["model"]
    net = build_network(config)
    try:
        net.load_state_dict(state, strict=True)
    except RuntimeError as e:
        raise CheckpointError(f"{checkpoint}: does not fit {config.model}: {e}") from e
    return net.eval(), config, checkpoint, hashlib.sha256(data).hexdigest()
