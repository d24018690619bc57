"""
The request class of DenoiseCast's site: body size limit, metrics, and the
client's own view of the request behind a trusted reverse proxy.

Twisted reads a request body completely before dispatching it.  This class
stops keeping the body once it passes the limit (judged from
Content-Length when there is one, otherwise as chunks arrive), so an
oversized body costs no memory and is answered with 413 before anything
tries to parse it.
"""

from __future__ import annotations

import json
import time

from twisted.web.server import Request

from denoisecast.web.forwarded import (
    X_FORWARDED,
    ClientView,
    TrustedProxies,
    request_headers,
    resolve_client,
)
from denoisecast.web.metrics import HttpMetrics

#: HSTS on every response the client received over TLS: browsers then use
#: https only for a year, so a later plain-http link cannot leak a cookie.
#: Not includeSubDomains: other services of the domain are not ours to bind.
HSTS = b"max-age=31536000"

KNOWN_METHODS = {b"GET", b"HEAD", b"POST", b"PUT", b"PATCH", b"DELETE", b"OPTIONS"}


class DenoiseCastRequest(Request):
    #: Set on the class by L{denoisecast.web.tree.build_site}.
    max_body_bytes: int = 64 * 1024
    metrics: HttpMetrics | None = None
    trusted_proxies: TrustedProxies = TrustedProxies()
    proxy_header: str = X_FORWARDED

    #: The route template that served this request, for metric labels.
    route: str = "other"

    _body_bytes = 0
    _too_large = False
    _started: float = 0.0
    _client_view: ClientView | None = None

    def getHeader(self, key):  # Twisted overloads it: str -> str, bytes -> bytes
        """
        As Twisted's, except that a header asked for by a str name is
        decoded leniently: Twisted decodes it as strict UTF-8, so a client
        sending other bytes (in Origin, X-CSRF-Token, Content-Type, Range)
        made the request a 500.  Bytes that are not UTF-8 become U+FFFD,
        which no check accepts, so the answer is the ordinary 4xx.
        """
        if isinstance(key, str):
            raw = super().getHeader(key.encode("ascii"))
            return None if raw is None else raw.decode("utf-8", "replace")
        return super().getHeader(key)

    def client_view(self) -> ClientView:
        """
        Scheme, host and address as the client used them (see
        L{denoisecast.web.forwarded}); computed once per request.
        """
        if self._client_view is None:
            peer = super().getClientAddress()
            self._client_view = resolve_client(
                getattr(peer, "host", "unknown"),
                super().isSecure(),
                (self.getHeader(b"host") or b"").decode("latin-1"),
                request_headers(self),
                self.trusted_proxies,
                self.proxy_header,
            )
        return self._client_view

    def isSecure(self) -> bool:
        """
        Whether the client connected over TLS: directly, or to a trusted
        proxy that says so.  Cookies get their C{Secure} flag from this.
        """
        return self.client_view().scheme == "https"

    def gotLength(self, length: int | None) -> None:
        if length is not None and length > self.max_body_bytes:
            self._too_large = True
        super().gotLength(length)

    def handleContentChunk(self, data: bytes) -> None:
        if self._too_large:
            return
        self._body_bytes += len(data)
        if self._body_bytes > self.max_body_bytes:
            self._too_large = True
            assert self.content is not None  # gotLength made it
            self.content.seek(0)
            self.content.truncate()
            return
        super().handleContentChunk(data)

    def process(self) -> None:
        self._started = time.monotonic()
        if self.isSecure():
            self.setHeader(b"strict-transport-security", HSTS)
        self.notifyFinish().addBoth(self._record)
        if self._too_large:
            self.route = "too_large"
            self.setResponseCode(413)
            self.setHeader(b"content-type", b"application/json")
            self.setHeader(b"connection", b"close")
            self.write(
                json.dumps(
                    {
                        "error": {
                            "code": "body_too_large",
                            "message": f"Request bodies are limited to {self.max_body_bytes} bytes.",
                        }
                    }
                ).encode()
            )
            self.finish()
            return
        super().process()

    def _record(self, _: object) -> None:
        if self.metrics is None:
            return
        method = self.method if self.method in KNOWN_METHODS else b"OTHER"
        self.metrics.observe(
            method.decode(), self.route, self.code, time.monotonic() - self._started
        )
