"""
Where twistd writes the log, and in which format: text or JSON lines.

twistd builds its log observer after the plugin has made its services, from
its own options (``--logfile``, ``-n``), and always as text, rotating a file
every megabyte and keeping every old one.  It first asks the application for
an C{ILogObserver} component, though, and the plugin's top service sees the
application when twistd parents it; so the tree's top
(L{denoisecast.app.service.ServerTree}) sets that component to an observer made
here from DenoiseCast's options: the same target
twistd would choose (the ``--logfile`` file, or stdout under ``-n``), the
chosen format, and rotation by size with a bounded number of old files.
SIGUSR1 rotates at once, as with twistd.  twistd's ``--logger`` and
``--syslog`` still win: then DenoiseCast leaves the log alone.
"""

from __future__ import annotations

import json
import signal
import sys
from collections.abc import Mapping
from typing import IO, Any, cast

from twisted.internet.interfaces import IReactorFromThreads
from twisted.logger import (
    FileLogObserver,
    ILogObserver,
    LogEvent,
    eventAsJSON,
    formatEvent,
    formatEventAsClassicLogText,
    textFileLogObserver,
)
from twisted.python.logfile import LogFile


def json_line(event: LogEvent) -> str:
    """
    One event as one line of JSON: every field of the event (as twisted's
    C{eventAsJSON} keeps them), plus C{message} (the formatted text) and
    C{level} (its name), which log shippers index without knowing Twisted.
    """
    level = event.get("log_level")
    extra = {"message": formatEvent(event), "level": getattr(level, "name", None)}
    try:
        return eventAsJSON({**event, **extra}) + "\n"
    except Exception as error:  # a log line must never be lost
        # eventAsJSON flattens the format string first and fails on a
        # malformed one; keep what can be kept, as the text format does.
        fallback: dict[str, Any] = {
            key: event.get(key) for key in ("log_namespace", "log_time", "log_format") if key in event
        }
        fallback.update(extra)
        fallback["log_json_error"] = repr(error)
        return json.dumps(fallback, default=repr) + "\n"


def observer_for(log_format: str, stream: IO[str], worker: int = 0) -> ILogObserver:
    """
    The observer writing C{stream} in C{log_format}; a worker of
    ``--workers`` (C{worker} > 0) says so on every line: a C{worker} field
    in JSON, C{[worker N]} after the time in text.
    """
    if log_format == "json":
        if worker:
            return FileLogObserver(stream, lambda event: json_line({**event, "worker": worker}))
        return FileLogObserver(stream, json_line)
    if not worker:
        return textFileLogObserver(stream)
    label = f"[worker {worker}]"

    def text(event: LogEvent) -> str | None:
        line = formatEventAsClassicLogText(event)
        if line is None:
            return None
        stamp, _, rest = line.partition(" ")
        return f"{stamp} {label} {rest}"

    return FileLogObserver(stream, text)


def open_target(twistd: Mapping[str, Any], rotate_bytes: int, keep: int) -> IO[str] | None:
    """
    The stream twistd would log to, given its options; C{None} when twistd's
    own C{--logger} or C{--syslog} is in charge.
    """
    if twistd.get("logger") or twistd.get("syslog"):
        return None
    name = twistd.get("logfile") or ""
    if name == "-" or (twistd.get("nodaemon") and not name):
        return sys.stdout
    log_file = LogFile.fromFullPath(name or "twistd.log", rotateLength=rotate_bytes, maxRotatedFiles=keep)
    if not signal.getsignal(signal.SIGUSR1):

        def rotate(signum: int, frame: object) -> None:
            from twisted.internet import reactor

            cast(IReactorFromThreads, reactor).callFromThread(log_file.rotate)

        signal.signal(signal.SIGUSR1, rotate)
    # LogFile is a file-like object with write() and flush(), all a FileLogObserver uses.
    return cast(IO[str], log_file)
