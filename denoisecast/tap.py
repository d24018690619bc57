"""
``twistd denoisecast``: command-line options and the service tree.
"""

from __future__ import annotations

import os
from typing import Any

from twisted.application.service import IService
from twisted.python import usage

from denoisecast.config import OPTIONS, Config, ConfigError


class Options(usage.Options):
    synopsis = "[options]"
    longdesc = (
        "Run a DenoiseCast server: accounts, friends, live denoised audio "
        "broadcasts and recordings. Every option can also be set with the "
        "environment variable shown in its description; the command line wins."
    )
    optParameters = [
        [name, None, None, f"{text} [env: {variable}]"] for name, variable, text in OPTIONS
    ]

    config: Config

    def postOptions(self) -> None:
        try:
            self.config = Config.resolve(
                {name: self[name] for name, _, _ in OPTIONS}, os.environ
            )
        except ConfigError as error:
            raise usage.UsageError(str(error)) from None


def makeService(options: Options) -> IService:
    from denoisecast.reactor import install_asyncio_reactor

    install_asyncio_reactor()

    from twisted.internet import reactor

    from denoisecast import logs
    from denoisecast.server import DenoiseCastServer
    from denoisecast.service import make_service
    from denoisecast.startup import data_directory_problem

    config = options.config
    logs.set_level(config.log_level)
    problem = data_directory_problem(config.data_dir)
    if problem is not None:
        # Before the reactor and the log exist: one line on stderr, exit status 1.
        raise SystemExit(f"denoisecast: {problem}")
    server: Any = DenoiseCastServer(config, reactor)
    return make_service(server)
