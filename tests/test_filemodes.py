"""
The data directory is closed to other users, and a directory that cannot be
changed is reported instead of stopping the server.
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

from twisted.internet.testing import EventLoggingObserver
from twisted.logger import globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase

from denoisecast.runtime.filemodes import PRIVATE_UMASK, make_data_dir_private


class DataDirTests(SynchronousTestCase):
    def setUp(self) -> None:
        old = os.umask(0o022)
        self.addCleanup(os.umask, old)

    def test_new_directory(self) -> None:
        """A new data directory is 0750 and the umask becomes 027."""
        path = Path(self.mktemp()) / "data"
        make_data_dir_private(path)
        self.assertEqual(stat.S_IMODE(path.stat().st_mode), 0o750)
        self.assertEqual(os.umask(PRIVATE_UMASK), PRIVATE_UMASK)

    def test_open_directory_closed(self) -> None:
        """An existing directory loses its world bits, keeps the others."""
        path = Path(self.mktemp())
        path.mkdir()
        path.chmod(0o775)
        make_data_dir_private(path)
        self.assertEqual(stat.S_IMODE(path.stat().st_mode), 0o770)

    def test_unchangeable_directory_reported(self) -> None:
        """When chmod is refused, a warning names the directory and start-up goes on."""
        path = Path(self.mktemp())
        path.mkdir()
        path.chmod(0o777)
        events = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)

        def refuse(self: Path, mode: int) -> None:
            raise PermissionError(errno.EPERM, "Operation not permitted")

        self.patch(Path, "chmod", refuse)
        make_data_dir_private(path)
        warnings = [e for e in events if "Cannot close the data directory" in e.get("log_format", "")]
        self.assertEqual(len(warnings), 1)
        self.assertEqual(warnings[0]["path"], str(path))
