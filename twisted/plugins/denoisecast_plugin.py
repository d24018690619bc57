"""
The ``twistd denoisecast`` plugin.  It names the real module lazily so that
scanning plugins imports nothing heavy (no reactor, no torch, no aiortc).
"""

from twisted.application.service import ServiceMaker

denoisecast = ServiceMaker(
    "DenoiseCast",
    "denoisecast.app.tap",
    "Live, AI-denoised audio broadcasting among friends.",
    "denoisecast",
)
