"""
The browser app's pages: one HTML shell for every page URL, with the right
HTTP status.

The app itself is a few ES modules in the static directory that draw each
page from the JSON API and keep it current over the WebSocket.  The server
decides what a URL is before the browser does, so a deep link, a reload or
the back button gets the same answer as a click inside the app, and a
program (or a person reading the status bar) sees 404 for a user who does
not exist and 403 for one who is not a friend.  What the shell tells the
app (which page, which status) travels as a JSON data block, which the
Content-Security-Policy lets through because it is never executed.

Pages that need a session redirect to ``/login?next=...`` without one, so a
logged-out browser never loads the app (nor opens its WebSocket) there.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote

from twisted.internet.defer import Deferred
from twisted.python.failure import Failure
from twisted.web.resource import NoResource, Resource
from twisted.web.server import NOT_DONE_YET, Request
from twisted.web.static import File

from denoisecast.handlers.access import can_see
from denoisecast.runtime.logs import logger
from denoisecast.storage.store import User
from denoisecast.web.resource import csrf_token, dump_json
from denoisecast.web.sameorigin import SESSION_COOKIE, session_token

#: User names as the accounts service allows them; anything else is a 404 at once.
USERNAME = re.compile(r"^[a-z0-9_.\-]{1,64}$")
RECORDING_ID = re.compile(r"^[A-Za-z0-9_\-]{1,32}$")
SECURITY_HEADERS = {
    b"content-security-policy": b"default-src 'self'; frame-ancestors 'none'",
    b"x-content-type-options": b"nosniff",
    b"referrer-policy": b"same-origin",
}


@dataclass(frozen=True)
class PageAccess:
    """
    What the pages ask of the services, as plain callables (so tests can
    give their own): who is logged in, whether a user exists, whether two
    users are friends, whether a viewer may see a recording.
    """

    user_for_token: Callable[[str], Awaitable[User | None]]
    user_by_name: Callable[[str], Awaitable[User | None]]
    are_friends: Callable[[int, int], Awaitable[bool]]
    recording_visible: Callable[[str, int], Awaitable[Any]]


@dataclass(frozen=True)
class PageAnswer:
    page: str
    status: int = 200
    redirect: str | None = None
    details: dict[str, Any] | None = None


#: Pages anyone may open, and pages that need a session (path -> page name).
PUBLIC_PAGES = {"login": "login", "register": "register"}
SESSION_PAGES = {"": "home", "search": "search", "requests": "requests", "settings": "settings"}


class AppPages(Resource):
    """
    Every page URL of the browser app (and, as the root's fallback, every
    unknown URL, which gets the app's 404 page).
    """

    isLeaf = True
    log = logger()

    def __init__(self, shell: Path, access: PageAccess) -> None:
        super().__init__()
        self._shell = shell
        self._access = access

    def render_GET(self, request: Request) -> Any:
        Deferred.fromCoroutine(self._answer(request)).addCallback(
            lambda answer: self._write(request, answer)
        ).addErrback(self._failed, request)
        return NOT_DONE_YET

    def render_HEAD(self, request: Request) -> Any:
        return self.render_GET(request)

    async def _viewer(self, request: Request) -> User | None:
        token = session_token(request.getCookie(SESSION_COOKIE))
        return None if token is None else await self._access.user_for_token(token)

    async def _answer(self, request: Request) -> PageAnswer:
        path = request.path.decode("latin-1")
        parts = [unquote(part) for part in path.strip("/").split("/")] if path.strip("/") else [""]
        if len(parts) == 1 and parts[0] in PUBLIC_PAGES:
            return PageAnswer(PUBLIC_PAGES[parts[0]])
        known = (len(parts) == 1 and parts[0] in SESSION_PAGES) or (len(parts) == 2 and parts[0] in ("u", "r"))
        if not known:
            return PageAnswer("missing", 404)
        viewer = await self._viewer(request)
        if viewer is None:
            return PageAnswer("login", 302, redirect="/login?next=" + quote(path, safe="/"))
        if len(parts) == 1:
            return PageAnswer(SESSION_PAGES[parts[0]])
        kind, name = parts
        if kind == "u":
            return await self._user_page(viewer, name)
        if not RECORDING_ID.match(name) or await self._access.recording_visible(name, viewer["id"]) is None:
            return PageAnswer("missing", 404)
        return PageAnswer("recording", details={"recording": name})

    async def _user_page(self, viewer: User, name: str) -> PageAnswer:
        other = await self._access.user_by_name(name.lower()) if USERNAME.match(name.lower()) else None
        if other is None:
            return PageAnswer("missing", 404, details={"username": name[:64]})
        details = {"username": other["username"]}
        if other["id"] == viewer["id"]:
            return PageAnswer("user", details={**details, "relationship": "self"})
        friends = await self._access.are_friends(viewer["id"], other["id"])
        if can_see(viewer["id"], other["id"], friends):
            return PageAnswer("user", details={**details, "relationship": "friend"})
        return PageAnswer("no-access", 403, details={**details, "relationship": "none"})

    def _write(self, request: Request, answer: PageAnswer) -> None:
        if request.finished or request._disconnected:
            return
        request.route = "page:" + answer.page  # type: ignore[attr-defined]
        for name, value in SECURITY_HEADERS.items():
            request.setHeader(name, value)
        request.setHeader(b"cache-control", b"no-store")
        if answer.redirect is not None:
            request.setResponseCode(302)
            request.setHeader(b"location", answer.redirect.encode("ascii"))
            request.finish()
            return
        # The app's scripts read this cookie to send X-CSRF-Token.
        csrf_token(request)
        request.setResponseCode(answer.status)
        request.setHeader(b"content-type", b"text/html; charset=utf-8")
        boot = dump_json({"page": answer.page, "status": answer.status, **(answer.details or {})})
        # "<" never appears raw inside the data block, so no text can close it.
        body = self._shell.read_bytes().replace(b"{{BOOT}}", boot.replace(b"<", b"\\u003c"))
        if request.method != b"HEAD":
            request.write(body)
        request.finish()

    def _failed(self, failure: Failure, request: Request) -> None:
        self.log.failure("Rendering page {path} failed", failure, path=request.path)
        if request.finished or request._disconnected:
            return
        request.setResponseCode(500)
        request.setHeader(b"content-type", b"text/plain; charset=utf-8")
        request.write(b"Something went wrong on the server.")
        request.finish()


class StaticFiles(File):
    """
    The app's static files: no directory listings (a folder is a 404), and
    names that no file can have (a NUL byte) are a 404, not a server error.
    """

    def directoryListing(self) -> Resource:
        return _not_found()

    def getChild(self, path: bytes, request: Request) -> Resource:
        if b"\x00" in path or b"\x00" in b"".join(request.postpath or []):
            return _not_found()
        return super().getChild(path, request)


def _not_found() -> Resource:
    return NoResource("No such file.")


class AppRoot(Resource):
    """
    The root of the resource tree: the table's children first, the app's
    404 page for everything else.
    """

    def __init__(self, fallback: Resource) -> None:
        super().__init__()
        self._fallback = fallback

    def getChild(self, path: bytes, request: Request) -> Resource:
        return self._fallback
