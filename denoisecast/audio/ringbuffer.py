"""
The ring buffer, conversion, mixing and crossfade of the live audio path:
the compiled module when it is built, otherwise its plain-Python twin.

The twin is correct but several times slower per call, so running on it is a
deployment problem worth a loud warning (a Python warning and a logged event)
rather than a silent fallback; :data:`COMPILED` lets the engine report which
one runs.  ``DENOISECAST_PURE_PYTHON=1`` selects the twin on purpose, quietly.
"""

from __future__ import annotations

import os
import warnings

from denoisecast.audio import SAMPLE_RATE
from denoisecast.audio._ringbuffer_common import (
    DROP_NEWEST,
    DROP_OLDEST,
    FRAME_SAMPLES,
    HOP_SAMPLES,
    OVERFLOW_POLICIES,
    RAISE,
    RingBufferOverflow,
)
from denoisecast.runtime.logs import logger

log = logger()

#: Whether the compiled module runs (``False``: the plain-Python twin does).
COMPILED: bool
#: Why the twin runs, or ``None`` when the compiled module does.
FALLBACK_REASON: str | None = None

if os.environ.get("DENOISECAST_PURE_PYTHON"):
    from denoisecast.audio._ringbuffer_py import (
        Crossfader,
        RingBuffer,
        crossfade,
        float32_to_int16,
        int16_to_float32,
        mix_into,
    )

    COMPILED = False
    FALLBACK_REASON = "DENOISECAST_PURE_PYTHON is set"
    log.info(
        "Ring buffer: plain-Python twin selected ({reason})",
        reason=FALLBACK_REASON,
        log_id="dsp.ringbuffer.python",
    )
else:
    try:
        # The compiled names replace the twin's, imported above for mypy's sake, with the same API (_ringbuffer.pyi).
        from denoisecast.audio._ringbuffer import (  # type: ignore[assignment]
            Crossfader,
            RingBuffer,
            crossfade,
            float32_to_int16,
            int16_to_float32,
            mix_into,
        )

        COMPILED = True
    except ImportError as error:
        from denoisecast.audio._ringbuffer_py import (
            Crossfader,
            RingBuffer,
            crossfade,
            float32_to_int16,
            int16_to_float32,
            mix_into,
        )

        COMPILED = False
        FALLBACK_REASON = f"compiled module missing: {error}"
        warnings.warn(
            "DenoiseCast's compiled ring buffer (denoisecast.audio._ringbuffer) "
            f"is missing ({error}); using the much slower plain-Python twin. "
            "Rebuild the package (bash scripts/setup.sh) to fix this.",
            RuntimeWarning,
            stacklevel=2,
        )
        log.warn(
            "Ring buffer: compiled module missing ({error}), "
            "using the slow plain-Python twin",
            error=str(error),
            log_id="dsp.ringbuffer.fallback",
        )

__all__ = [
    "COMPILED",
    "DROP_NEWEST",
    "DROP_OLDEST",
    "FALLBACK_REASON",
    "FRAME_SAMPLES",
    "HOP_SAMPLES",
    "OVERFLOW_POLICIES",
    "RAISE",
    "SAMPLE_RATE",
    "Crossfader",
    "RingBuffer",
    "RingBufferOverflow",
    "crossfade",
    "float32_to_int16",
    "int16_to_float32",
    "mix_into",
]
