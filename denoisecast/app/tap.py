"""
``twistd denoisecast``: command-line options and the service tree.
"""

from __future__ import annotations

import os
from typing import Any

from twisted.application.service import IService
from twisted.python import usage

from denoisecast.app.config import FLAG_OPTIONS, OPTIONS, REPEATABLE_OPTIONS, Config, ConfigError


class Options(usage.Options):
    synopsis = "[options]"
    longdesc = (
        "Run a DenoiseCast server: accounts, friends, live denoised audio "
        "broadcasts and recordings. Every option can also be set with the "
        "environment variable shown in its description; the command line wins."
    )
    optParameters = [
        [name, None, None, f"{text} [env: {variable}]"]
        for name, variable, text in OPTIONS
        if name not in FLAG_OPTIONS | REPEATABLE_OPTIONS
    ]
    optFlags = [[name, None, f"{text} [env: {variable}]"] for name, variable, text in OPTIONS if name in FLAG_OPTIONS]

    config: Config
    #: The options given on the command line (flags as "on"), for the workers of ``--workers``.
    given: dict[str, str | None]

    def __init__(self) -> None:
        super().__init__()
        for name in REPEATABLE_OPTIONS:
            self[name] = None

    def postOptions(self) -> None:
        given = {name: self[name] for name, _, _ in OPTIONS}
        for name in FLAG_OPTIONS:
            given[name] = "on" if self[name] else None
        self.given = given
        try:
            self.config = Config.resolve(given, os.environ)
        except ConfigError as error:
            raise usage.UsageError(str(error)) from None


def _repeatable(name: str, variable: str, text: str) -> Any:
    """An C{opt_} method that joins every value given for C{name} with commas."""

    def option(self: Options, value: str) -> None:
        self[name] = f"{self[name]},{value}" if self[name] else value

    option.__doc__ = f"{text} [env: {variable}]"
    return option


for _name, _variable, _text in OPTIONS:
    if _name in REPEATABLE_OPTIONS:
        setattr(Options, "opt_" + _name.replace("-", "_"), _repeatable(_name, _variable, _text))


def makeService(options: Options) -> IService:
    from denoisecast.app.reactor import install_asyncio_reactor

    install_asyncio_reactor()

    from twisted.internet import reactor

    from denoisecast.app.server import DenoiseCastServer
    from denoisecast.app.service import make_service
    from denoisecast.app.startup import data_directory_problem
    from denoisecast.live.mediaports import media_address_problem
    from denoisecast.runtime import logs
    from denoisecast.runtime.filemodes import make_data_dir_private
    from denoisecast.runtime.logoutput import observer_for, open_target

    config = options.config
    logs.set_level(config.log_level)
    problem = data_directory_problem(config.data_dir) or media_address_problem(config.media_addresses)
    if problem is not None:
        # Before the reactor and the log exist: one line on stderr, exit status 1.
        raise SystemExit(f"denoisecast: {problem}")
    # The directory exists and takes writes: now close it to other users.
    make_data_dir_private(config.data_dir)
    # twistd's own options, when twistd parsed ours as its subcommand (a .tac
    # file calling makeService has none: then twistd's log is left alone).
    twistd_options = getattr(options, "parent", None)
    stream = None
    if twistd_options is not None:
        stream = open_target(twistd_options, config.log_rotate_bytes, config.log_keep)
    top: Any
    if config.workers > 1:
        from denoisecast.app.workers import supervisor_tree

        try:
            top = supervisor_tree(config, options.given, reactor, stream)
        except ConfigError as error:
            raise SystemExit(f"denoisecast: {error}") from None
    else:
        if config.worker:
            from denoisecast.app.workers import end_with_parent

            end_with_parent()
        top = make_service(DenoiseCastServer(config, reactor))
    if stream is not None:
        top.log_observer = observer_for(config.log_format, stream, config.worker)
    return top
