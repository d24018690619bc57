"""
Hyper-parameters of a DeepFilterNet model, read from the ``config.ini`` that
ships with every official model (release zip or ONNX tar.gz).

Only the keys that shape the signal path and the networks are kept; the
training keys are ignored.  Defaults are those of the reference
implementation, so a sparse ``config.ini`` still describes the same model.
"""

from __future__ import annotations

import configparser
import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace


def _csv(value: str) -> tuple[int, ...]:
    return tuple(int(part) for part in value.split(",") if part.strip())


def _bool(value: str) -> bool:
    return value.strip().lower() in ("1", "true", "yes", "on")


#: What may run the network on the CPU (``DenoiseEngine``'s ``runtime``):
#: ONNX Runtime, the default, which took less CPU time per pass than traced
#: torch (docs/performance.md), or torch.  On a GPU it is always torch.
RUNTIMES = ("onnx", "torch")
DEFAULT_RUNTIME = "onnx"


@dataclass(frozen=True)
class ModelConfig:
    """Everything the signal path and a network need to know about a model."""

    model: str = "deepfilternet3"
    sr: int = 48000
    fft_size: int = 960
    hop_size: int = 480
    nb_erb: int = 32
    nb_df: int = 96
    norm_tau: float = 1.0
    lsnr_max: int = 35
    lsnr_min: int = -15
    min_nb_erb_freqs: int = 2
    df_order: int = 5
    df_lookahead: int = 2
    conv_lookahead: int = 2
    conv_ch: int = 64
    conv_kernel: tuple[int, ...] = (1, 3)
    convt_kernel: tuple[int, ...] = (1, 3)
    conv_kernel_inp: tuple[int, ...] = (3, 3)
    emb_hidden_dim: int = 256
    emb_num_layers: int = 3
    enc_linear_groups: int = 32
    linear_groups: int = 16
    df_hidden_dim: int = 256
    df_num_layers: int = 2
    df_gru_skip: str = "groupedlinear"
    df_pathway_kernel_size_t: int = 5
    emb_gru_skip: str = "none"
    emb_gru_skip_enc: str = "none"
    enc_concat: bool = False
    extra: dict[str, str] = field(default_factory=dict, compare=False)

    @property
    def n_freqs(self) -> int:
        return self.fft_size // 2 + 1

    @property
    def lookahead(self) -> int:
        """
        Frames the enhanced output lags the newest analysed frame.
        DeepFilterNet3 filters noisy frames, so its two lookaheads overlap;
        DeepFilterNet2 filters masked frames, whose gains need their own
        lookahead first, so they add up.
        """
        if self.model == "deepfilternet2":
            return self.conv_lookahead + self.df_lookahead
        return max(self.conv_lookahead, self.df_lookahead)

    @property
    def norm_alpha(self) -> float:
        """
        Smoothing factor of the running normalisations.  The runtime rounds
        ``exp(-hop / (sr * tau))`` to the fewest decimals that keep it below
        one (0.99 for the official models); the features depend on that.
        """
        alpha = math.exp(-(self.hop_size / self.sr) / self.norm_tau)
        precision = 3
        while True:
            rounded = round(alpha * 10**precision) / 10**precision
            if rounded < 1.0:
                return rounded
            precision += 1

    @classmethod
    def from_ini_text(cls, text: str) -> "ModelConfig":
        parser = configparser.ConfigParser()
        parser.read_string(text)
        values: dict[str, object] = {}
        sections = {name.lower(): parser[name] for name in parser.sections()}
        empty: dict[str, str] = {}
        df: Mapping[str, str] = sections.get("df", empty)
        net: Mapping[str, str] = sections.get("deepfilternet", empty)
        train: Mapping[str, str] = sections.get("train", empty)
        types = {f: type(getattr(cls(), f)) for f in cls.__dataclass_fields__ if f != "extra"}
        for source in (net, df):
            for key, raw in source.items():
                if key == "linear_groups":
                    values["linear_groups"] = int(raw)
                    continue
                if key not in types:
                    continue
                kind = types[key]
                if kind is bool:
                    values[key] = _bool(raw)
                elif kind is tuple:
                    values[key] = _csv(raw)
                elif kind is int:
                    values[key] = int(float(raw))
                elif kind is float:
                    values[key] = float(raw)
                else:
                    values[key] = raw.strip().lower()
        if "model" in train:
            values["model"] = train["model"].strip().lower()
        extra = {f"{s}.{k}": v for s, sec in sections.items() for k, v in sec.items()}
        # values holds each field's parsed type, which a dict[str, object] cannot say per key.
        return replace(cls(), **values, extra=extra)  # type: ignore[arg-type]
