"""
The app's pages on the server side: every page URL gets the shell with the
right status (404 for unknown users and URLs, 403 for people who are not
friends, a redirect to the login page without a session), static files
without directory listings or server errors, and downloads with a file name.
"""

from __future__ import annotations

import json
import re
from typing import Any

from twisted.trial.unittest import TestCase

from tests.support import start_server
from tests.test_presence import people
from tests.test_recordings import record


def boot(body: bytes) -> dict[str, Any]:
    """The page description the shell carries for the app."""
    match = re.search(rb'<script type="application/json" id="boot">(.*?)</script>', body, re.S)
    assert match is not None, body[:200]
    return json.loads(match.group(1))


class PageStatusTests(TestCase):
    async def test_user_pages(self) -> None:
        """
        /u/<name> is your own page, a friend's page, the no-access page
        (403) for anyone else, and the not-found page (404) for a name
        nobody has; the shell tells the app which.
        """
        running, c = await people(self)
        alice = c["alice"]
        for path, status, page, relationship in [
            ("/u/alice", 200, "user", "self"),
            ("/u/bob", 200, "user", "friend"),
            ("/u/BOB", 200, "user", "friend"),
            ("/u/carol", 403, "no-access", "none"),
        ]:
            reply = await alice.get(path)
            self.assertEqual(reply.status, 200 if status == 200 else status, path)
            seen = boot(reply.body)
            self.assertEqual((seen["page"], seen["status"], seen["relationship"]), (page, status, relationship), path)
            self.assertEqual(reply.header("cache-control"), "no-store")
        for path in ("/u/nobody", "/u/%00", "/u/" + "x" * 300, "/u/a/b", "/nonsense", "/users/alice", "/alice"):
            reply = await alice.get(path)
            self.assertEqual(reply.status, 404, path)
            self.assertEqual(boot(reply.body)["page"], "missing", path)
            self.assertIn("default-src 'self'", reply.header("content-security-policy"))

    async def test_app_pages_need_a_session(self) -> None:
        """
        Without a session every page but login and register redirects to
        the login page, remembering where the person wanted to go; no
        shell is sent, so no script runs (and no WebSocket opens).
        """
        running = await start_server(self)
        nobody = running.client()
        for path in ("/", "/search", "/requests", "/settings", "/u/alice", "/r/abc"):
            response = await nobody._http.get(running.base + path, allow_redirects=False)
            body = await response.content()
            self.assertEqual(response.code, 302, path)
            self.assertEqual(response.headers.getRawHeaders("location"), ["/login?next=" + path], path)
            self.assertNotIn(b"app.js", body)
        for path in ("/login", "/register"):
            reply = await nobody.get(path)
            self.assertEqual((reply.status, boot(reply.body)["page"]), (200, path[1:]))

    async def test_pages_of_a_logged_in_person(self) -> None:
        """
        Home, search, requests and settings are 200 pages of their kind.
        """
        running, c = await people(self)
        for path, page in [("/", "home"), ("/search", "search"), ("/search?q=b", "search"),
                           ("/requests", "requests"), ("/settings", "settings")]:
            reply = await c["alice"].get(path)
            self.assertEqual((reply.status, boot(reply.body)["page"]), (200, page), path)

    async def test_recording_page(self) -> None:
        """
        /r/<id> is the recording's page for its owner and the owner's
        friends, and the 404 page for everyone else and for ids never made.
        """
        running, c = await people(self)
        recording = await record(running, "bob", 1.0)
        for name, status in [("bob", 200), ("alice", 200), ("carol", 404)]:
            reply = await c[name].get(f"/r/{recording.public_id}")
            self.assertEqual(reply.status, status, name)
            seen = boot(reply.body)
            self.assertEqual(seen["page"], "recording" if status == 200 else "missing")
        self.assertEqual((await c["alice"].get("/r/nothing-here")).status, 404)
        self.assertEqual((await c["alice"].get("/r/" + "%2e" * 40)).status, 404)

    async def test_boot_block_cannot_be_closed_by_a_name(self) -> None:
        """
        A name in the URL that looks like markup never ends the data block
        early: "<" is escaped inside it.
        """
        running, c = await people(self)
        reply = await c["alice"].get("/u/%3C%2Fscript%3E%3Cscript%3Ealert(1)%3C%2Fscript%3E")
        self.assertEqual(reply.status, 404)
        self.assertEqual(reply.body.count(b"</script>"), 2)  # the data block's and the module's own


class StaticFileTests(TestCase):
    async def test_no_listing_no_server_error(self) -> None:
        """
        /static/ and its folders are 404s, not listings of the files; a NUL
        byte in a static path is a 404, not a 500; real files are served.
        """
        running = await start_server(self)
        client = running.client()
        for path in ("/static/", "/static", "/static/%00", "/static/app.js%00.png", "/static/a%00b/c", "/static/nothing.js"):
            reply = await client.get(path)
            self.assertIn(reply.status, (404,) if path != "/static" else (301, 302, 404), path)
            self.assertNotIn(b"app.js", reply.body if isinstance(reply.body, bytes) else b"", path)
        for name in ("app.js", "pages.js", "live.js", "socket.js", "api.js", "ui.js", "recordings.js", "style.css"):
            self.assertEqual((await client.get(f"/static/{name}")).status, 200, name)


class DownloadTests(TestCase):
    async def test_content_disposition(self) -> None:
        """
        Downloads carry Content-Disposition: attachment with a file name
        saying whose broadcast, when and which version; the player's
        requests get inline with the same name.
        """
        running, c = await people(self)
        recording = await record(running, "bob", 1.0)
        base = f"/api/recordings/{recording.public_id}/audio"
        stamp = recording.started_at.strftime("%Y-%m-%d-%H%M")
        reply = await c["alice"].get(base + "?track=raw&download=1")
        self.assertEqual(reply.status, 200)
        self.assertEqual(reply.header("content-disposition"), f'attachment; filename="bob-{stamp}-raw.ogg"')
        reply = await c["alice"].get(base)
        self.assertEqual(reply.header("content-disposition"), f'inline; filename="bob-{stamp}-denoised.ogg"')
        self.assertEqual((await c["carol"].get(base + "?download=1")).status, 404)
