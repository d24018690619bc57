"""
The server-served pages: login, register and home.

They are plain HTML files from the static directory that talk to the JSON
API with a little JavaScript, so the browser app can replace them without
touching the API.
"""

from __future__ import annotations

from pathlib import Path

from twisted.web.resource import Resource
from twisted.web.server import Request

from denoisecast.web.resource import csrf_token


class Page(Resource):
    isLeaf = True

    def __init__(self, path: Path) -> None:
        super().__init__()
        self._path = path

    def render_GET(self, request: Request) -> bytes:
        # The route label rides on the request for the HTTP metrics; Request does not declare it.
        request.route = "page:" + self._path.stem  # type: ignore[attr-defined]
        # The pages' scripts read this cookie to send X-CSRF-Token.
        csrf_token(request)
        request.setHeader(b"content-type", b"text/html; charset=utf-8")
        request.setHeader(b"cache-control", b"no-store")
        request.setHeader(
            b"content-security-policy",
            b"default-src 'self'; frame-ancestors 'none'",
        )
        request.setHeader(b"x-content-type-options", b"nosniff")
        return self._path.read_bytes()
