"""
Audio without torch or Twisted: the ring buffers (a compiled module beside
its plain-Python twin and the selector that picks one), resampling, Opus
encoding and audio-file I/O.  Used by ``denoise/``, ``live/`` and
``recordings/``; imports nothing above it.
"""

#: The one sample rate of the live path, the recordings and the model:
#: every stream is converted to it at the edge (``resample``).
SAMPLE_RATE = 48_000
#: One analysis hop of the denoiser: 10 ms.
HOP_SAMPLES = SAMPLE_RATE // 100
