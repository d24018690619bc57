"""
Making sure the asyncio reactor is the one that runs.

aiortc's coroutines need an asyncio event loop that actually runs, and the
only way Twisted and aiortc can share one loop is the asyncio reactor built
on that loop.  twistd imports no reactor before it calls the plugin's
``makeService``, so the plugin installs it there; if another reactor was
already chosen (``twistd --reactor=epoll``), start-up fails with the fix.
"""

from __future__ import annotations

import asyncio
import sys

from twisted.python import usage

FIX = "run: twistd --reactor=asyncio denoisecast (or leave --reactor out)"


def install_asyncio_reactor() -> None:
    """
    Install the asyncio reactor on a new event loop, or check that it is
    already the installed one.

    @raise usage.UsageError: another reactor is installed.
    """
    if "twisted.internet.reactor" in sys.modules:
        from twisted.internet import reactor
        from twisted.internet.asyncioreactor import AsyncioSelectorReactor

        if not isinstance(reactor, AsyncioSelectorReactor):
            raise usage.UsageError(
                f"DenoiseCast needs the asyncio reactor, but "
                f"{type(reactor).__name__} is installed; {FIX}"
            )
        return
    from twisted.internet import asyncioreactor

    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    asyncioreactor.install(loop)
