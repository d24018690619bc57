"""
Small real filesystems for the tests of full and read-only storage: a tmpfs
of a given size mounted on a scratch directory (the tests run as root),
unmounted when the test ends.  Where mounting is not allowed the test is
skipped, saying why.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from twisted.trial.unittest import SkipTest, TestCase


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(args), capture_output=True, text=True, timeout=30)


def small_filesystem(test: TestCase, size_kib: int = 512) -> Path:
    """
    An empty tmpfs of C{size_kib} KiB, mounted for the length of C{test}.
    """
    point = Path(test.mktemp()).absolute()
    point.mkdir(parents=True)
    mounted = _run("mount", "-t", "tmpfs", "-o", f"size={size_kib}k,mode=0755", "tmpfs", str(point))
    if mounted.returncode != 0:
        raise SkipTest(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")

    def unmount() -> None:
        if _run("umount", str(point)).returncode != 0:
            _run("umount", "-l", str(point))

    test.addCleanup(unmount)
    return point


def make_read_only(point: Path) -> None:
    """Remount the filesystem at C{point} read-only."""
    result = _run("mount", "-o", "remount,ro", str(point))
    if result.returncode != 0:
        raise SkipTest(f"cannot remount read-only: {result.stderr.strip()}")


def make_writable(point: Path) -> None:
    """Remount the filesystem at C{point} read-write again."""
    result = _run("mount", "-o", "remount,rw", str(point))
    assert result.returncode == 0, result.stderr


def fill(point: Path, leave_bytes: int = 0) -> Path:
    """
    Fill the filesystem at C{point} with one file until at most
    C{leave_bytes} are free; returns the file (delete it to free the space).
    """
    import os

    filler = point / "filler"
    chunk = b"\0" * 4096
    with open(filler, "wb") as handle:
        try:
            while os.statvfs(point).f_bavail * os.statvfs(point).f_frsize > leave_bytes:
                handle.write(chunk)
                handle.flush()
        except OSError:
            pass
    return filler
