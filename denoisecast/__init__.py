"""
DenoiseCast: a self-hosted server for live, AI-denoised audio broadcasting
among friends.
"""

from denoisecast._version import __version__

__all__ = ["__version__"]
