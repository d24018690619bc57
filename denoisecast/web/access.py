"""
The access log: one structured event per request, with the real client.

Twisted's own access log writes a combined-log text line with the
connection's peer, which behind a reverse proxy is the proxy for everyone;
this one names the client address of L{denoisecast.web.forwarded} and
carries each part as an event field, so the JSON log format keeps them
apart instead of one pre-formatted string.
"""

from __future__ import annotations

from twisted.web.http import Request
from twisted.web.server import Site

from denoisecast.runtime.logs import logger
from denoisecast.web.forwarded import client_view

_log = logger("denoisecast.access")


class AccessLoggingSite(Site):
    """A Site whose access log is a structured event per request."""

    def log(self, request: Request) -> None:
        view = client_view(request)
        _log.info(
            '{client} "{method} {path}" {status} {length}',
            client=view.address,
            scheme=view.scheme,
            host=view.host,
            method=request.method.decode("latin-1"),
            # The path only: a query string may carry a token.
            path=request.path.decode("latin-1")[:512],
            status=request.code,
            length=request.sentLength,
            user_agent=(request.getHeader(b"user-agent") or b"").decode("latin-1")[:256],
        )
