"""
Build script: the package metadata lives in pyproject.toml; this file adds
what pyproject.toml cannot say, the Twisted plugin module and the Cython
extensions of the audio path.
"""

from pathlib import Path

from setuptools import Extension, find_packages, setup

HERE = Path(__file__).parent


def cython_extensions() -> list[Extension]:
    """
    Every ``denoisecast/audio/*.pyx`` becomes a compiled module beside its
    plain-Python twin.  Without Cython the package still installs; the
    selector modules then warn loudly and fall back to the twins.
    """
    sources = sorted(HERE.glob("denoisecast/audio/*.pyx"))
    if not sources:
        return []
    try:
        from Cython.Build import cythonize
    except ImportError:
        return []
    extensions = [
        Extension(
            "denoisecast.audio." + source.stem,
            [str(source.relative_to(HERE))],
            # No fused multiply-add contraction: the compiled modules must
            # match their numpy twins bit for bit.
            extra_compile_args=["-O3", "-ffp-contract=off"],
        )
        for source in sources
    ]
    return cythonize(extensions, language_level=3, quiet=True)


setup(
    packages=find_packages(include=["denoisecast", "denoisecast.*"])
    + ["twisted.plugins"],
    ext_modules=cython_extensions(),
)
