"""
Audio without torch or Twisted: the ring buffers (a compiled module beside
its plain-Python twin and the selector that picks one), resampling, Opus
encoding and audio-file I/O.  Used by ``denoise/``, ``live/`` and
``recordings/``; imports nothing above it.
"""
