"""
Private files: the database and the recordings are readable by the server's
own user (and its group, for backups), never by other users of the machine.

The server sets a umask at start, so every file it creates (the SQLite
database and its journal, recordings, logs) leaves out the world bits, and
the data directory itself is closed to others, which also covers files an
older version created with looser modes.  Recording files are additionally
created with an explicit mode, so they stay private even in a process that
did not set the umask (the tests' in-process servers).
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from denoisecast.runtime.logs import logger

_log = logger()

#: Files: owner read/write, group read.  Directories: owner all, group enter/list.
PRIVATE_FILE_MODE = 0o640
PRIVATE_DIR_MODE = 0o750
PRIVATE_UMASK = 0o027


def make_data_dir_private(data_dir: Path) -> None:
    """
    Set the process umask, create C{data_dir} if needed, and take the world
    bits off it (others can then reach nothing inside it, whatever the
    files' own modes).
    """
    os.umask(PRIVATE_UMASK)
    data_dir.mkdir(parents=True, exist_ok=True, mode=PRIVATE_DIR_MODE)
    mode = stat.S_IMODE(data_dir.stat().st_mode)
    if mode & 0o007:
        try:
            data_dir.chmod(mode & ~0o007)
        except OSError as error:
            # Not ours to change (another owner, a read-only mount): say so
            # and go on; the files created from now on are private anyway.
            _log.warn(
                "Cannot close the data directory {path} to other users: {error}",
                path=str(data_dir),
                error=error.strerror,
            )
