"""
Shared material of the DSP tests: the bundled model loaded once, short test
signals made on the spot (speech from espeak-ng, coloured noise from numpy),
and SI-SDR.
"""

from __future__ import annotations

import functools
import shutil
import subprocess
import tempfile
import wave
from pathlib import Path

import numpy as np
import torch

from denoisecast.model.config import ModelConfig
from denoisecast.model.dfnet3 import DfNet3
from denoisecast.model.weights.onnx_export import load_onnx_dfnet3
from denoisecast.model.pipeline import SignalPath
from tests.reference import bundled_model_path

SR = 48000


@functools.lru_cache(maxsize=1)
def bundled_dfnet3() -> tuple[DfNet3, ModelConfig, str]:
    torch.set_num_threads(2)
    return load_onnx_dfnet3(bundled_model_path())


def bundled_path() -> SignalPath:
    net, config, _ = bundled_dfnet3()
    return SignalPath(net, config)


def si_sdr(reference: np.ndarray, estimate: np.ndarray) -> float:
    """Scale-invariant signal-to-distortion ratio in dB."""
    ref = reference.astype(np.float64)
    est = estimate.astype(np.float64)
    scale = np.dot(est, ref) / np.dot(ref, ref)
    target = scale * ref
    return float(10 * np.log10(np.sum(target**2) / np.sum((est - target) ** 2)))


def noise(kind: str, n: int, seed: int) -> np.ndarray:
    """White, pink (1/f power) or brown (1/f^2 power) noise with unit RMS."""
    rng = np.random.default_rng(seed)
    white = rng.standard_normal(n)
    if kind == "white":
        shaped = white
    else:
        spectrum = np.fft.rfft(white)
        f = np.arange(len(spectrum), dtype=np.float64)
        f[0] = 1.0
        exponent = {"pink": 0.5, "brown": 1.0}[kind]
        shaped = np.fft.irfft(spectrum / f**exponent, n)
    return (shaped / np.sqrt(np.mean(shaped**2))).astype(np.float32)


def mix(speech: np.ndarray, noise_: np.ndarray, snr_db: float) -> np.ndarray:
    p_s = np.mean(speech.astype(np.float64) ** 2)
    p_n = np.mean(noise_.astype(np.float64) ** 2)
    return (speech + noise_ * np.sqrt(p_s / (p_n * 10 ** (snr_db / 10)))).astype(np.float32)


def have_espeak() -> bool:
    return shutil.which("espeak-ng") is not None


@functools.lru_cache(maxsize=8)
def speech(text: str, voice: str = "en-us") -> np.ndarray:
    """espeak-ng speech at 48 kHz, peak 0.5, as float32."""
    with tempfile.TemporaryDirectory() as tmp:
        raw = Path(tmp) / "s.wav"
        subprocess.run(["espeak-ng", "-v", voice, "-w", str(raw), text], check=True, capture_output=True)
        with wave.open(str(raw)) as w:
            rate = w.getframerate()
            data = np.frombuffer(w.readframes(w.getnframes()), dtype=np.int16).astype(np.float32) / 32768.0
    # Band-limited resampling to 48 kHz by FFT (espeak-ng speaks at 22.05 kHz).
    n_out = int(round(len(data) * SR / rate))
    spectrum = np.fft.rfft(data)
    out_spec = np.zeros(n_out // 2 + 1, dtype=complex)
    m = min(len(spectrum), len(out_spec))
    out_spec[:m] = spectrum[:m]
    out = np.fft.irfft(out_spec, n_out) * (n_out / len(data))
    return (0.5 * out / np.max(np.abs(out))).astype(np.float32)


def have_sox() -> bool:
    return shutil.which("sox") is not None


@functools.lru_cache(maxsize=4)
def _sox_noise(kind: str, seconds: int) -> np.ndarray:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "n.raw"
        subprocess.run(
            ["sox", "-R", "-n", "-r", str(SR), "-b", "32", "-e", "floating-point", "-c", "1", str(out),
             "synth", str(seconds), f"{kind}noise"],
            check=True,
            capture_output=True,
        )
        return np.fromfile(out, dtype=np.float32)


def sox_noise(kind: str, n: int, offset_s: float = 0.0) -> np.ndarray:
    """White, pink or brown noise from sox's generators (repeatable), ``n`` samples from ``offset_s``."""
    start = int(offset_s * SR)
    seconds = -(-(start + n) // SR)
    data = _sox_noise(kind, max(seconds, 30))
    return data[start : start + n].copy()
