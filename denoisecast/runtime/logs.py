"""
DenoiseCast's own log events pass through one level filter.

twistd owns the log observers and starts them after the plugin has built
its services, so the configured level cannot be applied to twistd's
observers.  Instead every DenoiseCast logger publishes through
L{observer}, which drops events below the configured level before they
reach the global publisher.
"""

from __future__ import annotations

import sys

from twisted.logger import (
    FilteringLogObserver,
    Logger,
    LogLevel,
    LogLevelFilterPredicate,
    globalLogPublisher,
)

_predicate = LogLevelFilterPredicate(defaultLogLevel=LogLevel.info)
observer = FilteringLogObserver(globalLogPublisher, [_predicate])


def set_level(level: LogLevel) -> None:
    _predicate.setLogLevelForNamespace("", level)  # the empty namespace is the default level


def logger(namespace: str | None = None) -> Logger:
    """
    A L{Logger} whose events go through DenoiseCast's level filter.

    Use it as a class attribute (C{log = logger()}) so the namespace is
    the class, as twisted.logger does by default; at module level the
    namespace is the calling module.
    """
    if namespace is None:
        namespace = sys._getframe(1).f_globals.get("__name__", "denoisecast")
    return Logger(namespace=namespace, observer=observer)
