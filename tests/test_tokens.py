"""
Publish and listen tokens: the store on SQLite and PostgreSQL (only hashes
kept, limits held by the database transaction, cascades), the API (shown
once, listed without secrets, revoked at once, hostile names and ids,
other people's tokens) and the access rules (scopes, disabled accounts,
listen tokens only for current friends), and the settings page in
Chromium with axe-core.
"""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta, timezone
from typing import Any

from sqlalchemy import select, update
from twisted.internet import reactor
from twisted.internet.defer import gatherResults
from twisted.internet.task import Clock
from twisted.trial.unittest import TestCase

from denoisecast.handlers.access import Access
from denoisecast.handlers.tokens import (
    CREATIONS_PER_HOUR,
    MAX_TOKENS,
    NAME_MAX,
    Tokens,
    bearer_token,
    validate_name,
)
from denoisecast.errors import DenoiseCastError
from denoisecast.runtime.ratelimit import FailureLimiter
from denoisecast.storage.database import Database
from denoisecast.storage.migrations import thd_upgrade
from denoisecast.storage.store import Store, TooManyTokens
from denoisecast.storage.tables import access_tokens, users
from tests.support import Client, RunningServer, postgres_url, sqlite_url, start_server

NOW = datetime(2026, 12, 2, 12, 0, tzinfo=timezone.utc)


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


class TokenStoreMixin:
    """The token store and handler on a real database; subclasses choose which."""

    def database_url(self) -> str:
        raise NotImplementedError

    async def setUp(self) -> None:
        self.database = Database(self.database_url(), reactor)
        self.database.start()
        self.addCleanup(self.database.stop)
        await self.database.run(thd_upgrade, self.database.engine)
        self.store = Store(self.database)
        self.clock = Clock()
        self.tokens = Tokens(
            self.store, lambda: NOW, Access(self.store), FailureLimiter(self.clock, CREATIONS_PER_HOUR, 3600.0)
        )
        self.alice = await self.store.create_user("alice", "hash", NOW)
        self.bob = await self.store.create_user("bob", "hash", NOW)
        self.carol = await self.store.create_user("carol", "hash", NOW)

    async def stored_rows(self) -> list[Any]:
        return await self.database.read(lambda c: c.execute(select(access_tokens)).all())

    async def test_only_the_hash_is_stored(self) -> None:
        """
        The database holds the token's SHA-256 and never the token; the
        token finds its owner, scoped, and notes its last use.
        """
        listed, secret = await self.tokens.create(self.alice, "OBS", "publish")
        self.assertTrue(secret.startswith("dcp_"))
        (row,) = await self.stored_rows()
        self.assertEqual(row.token_hash, sha256(secret))
        self.assertNotIn(secret, repr(tuple(row)))
        self.assertEqual((await self.tokens.check(secret, "publish"))["username"], "alice")
        self.assertIsNone(await self.tokens.check(secret, "listen"))
        (shown,) = await self.tokens.list(self.alice)
        self.assertEqual(shown["id"], listed["id"])
        self.assertEqual(shown["last_used_at"], NOW)
        self.assertEqual(set(shown), {"id", "scope", "name", "created_at", "last_used_at"})

    async def test_checks_write_little(self) -> None:
        """
        Checking wrong tokens takes no write transaction (a flood of them
        cannot queue the database's writers); a good token notes its use
        once, not on every check within the minute.
        """
        _, secret = await self.tokens.create(self.alice, "OBS", "publish")
        writes = []
        original = self.database.write

        def counting(fn: Any, *args: Any) -> Any:
            writes.append(fn.__name__)
            return original(fn, *args)

        self.patch(self.database, "write", counting)
        for wrong in ("dcp_" + "B" * 43, secret[:-1] + "x", secret + "x"):
            self.assertIsNone(await self.tokens.check(wrong, "publish"))
        self.assertEqual(writes, [])
        for _ in range(3):
            self.assertIsNotNone(await self.tokens.check(secret, "publish"))
        self.assertEqual(writes, ["thd_touch_token"])

    async def test_revoked_and_cascaded(self) -> None:
        """
        A revoked token no longer works; another user cannot revoke it (the
        same 404 as an unknown id); deleting the account deletes its tokens.
        """
        listed, secret = await self.tokens.create(self.alice, "phone", "listen")
        for who, token_id in ((self.bob, listed["id"]), (self.alice, "0" * 32), (self.alice, "../x")):
            with self.assertRaises(DenoiseCastError) as caught:
                await self.tokens.revoke(who, token_id)
            self.assertEqual((caught.exception.status, caught.exception.code), (404, "no_such_token"))
        self.assertIsNotNone(await self.tokens.check(secret, "listen"))
        await self.tokens.revoke(self.alice, listed["id"])
        self.assertIsNone(await self.tokens.check(secret, "listen"))
        await self.tokens.create(self.bob, "OBS", "publish")
        await self.database.write(lambda c: c.execute(users.delete().where(users.c.id == self.bob["id"])))
        self.assertEqual(await self.stored_rows(), [])

    async def test_disabled_account(self) -> None:
        """An account an admin disabled cannot use its tokens."""
        _, secret = await self.tokens.create(self.alice, "OBS", "publish")
        await self.database.write(
            lambda c: c.execute(update(users).where(users.c.id == self.alice["id"]).values(disabled_at=NOW))
        )
        self.assertIsNone(await self.tokens.check(secret, "publish"))

    async def test_limit_held_under_concurrency(self) -> None:
        """
        At most MAX_TOKENS per user, even when many creations race (the
        count and the insert are one transaction with the user locked).
        """
        made = await gatherResults(
            [
                self.store.create_token(self.alice["id"], f"{i:032x}", "publish", "x", f"{i:064x}", NOW, MAX_TOKENS)
                .addErrback(lambda f: f.trap(TooManyTokens) and None)
                for i in range(MAX_TOKENS + 5)
            ]
        )
        self.assertEqual(sum(1 for m in made if m is not None), MAX_TOKENS)
        self.assertEqual(len(await self.stored_rows()), MAX_TOKENS)
        with self.assertRaises(DenoiseCastError) as caught:
            await self.tokens.create(self.alice, "one more", "publish")
        self.assertEqual(caught.exception.status, 409)

    async def test_creation_rate(self) -> None:
        """
        Making tokens is limited per hour even when each is revoked at
        once, and allowed again when the hour has passed.
        """
        for i in range(CREATIONS_PER_HOUR):
            listed, _ = await self.tokens.create(self.alice, f"t{i}", "listen")
            await self.tokens.revoke(self.alice, listed["id"])
        with self.assertRaises(DenoiseCastError) as caught:
            await self.tokens.create(self.alice, "again", "listen")
        self.assertEqual(caught.exception.status, 429)
        self.assertIn("Retry-After", caught.exception.headers)
        self.clock.advance(3601)
        await self.tokens.create(self.alice, "again", "listen")

    async def test_listen_token_follows_friendship(self) -> None:
        """
        A listen token lets its holder listen to each current friend and to
        no one else; when one friendship ends the token stops working for
        that broadcaster at once and keeps working for the others.
        """
        _, secret = await self.tokens.create(self.alice, "car", "listen")
        self.assertIsNone(await self.tokens.listener(secret, "bob"))
        await self.store.send_request(self.alice["id"], self.bob["id"], NOW)
        await self.store.accept_request(self.bob["id"], self.alice["id"], NOW)
        await self.store.send_request(self.alice["id"], self.carol["id"], NOW)
        await self.store.accept_request(self.carol["id"], self.alice["id"], NOW)
        holder, broadcaster = await self.tokens.listener(secret, "BOB")
        self.assertEqual((holder["username"], broadcaster["username"]), ("alice", "bob"))
        self.assertIsNone(await self.tokens.listener(secret, "alice"))  # not oneself
        self.assertIsNone(await self.tokens.listener(secret, "nobody"))
        _, publish = await self.tokens.create(self.alice, "OBS", "publish")
        self.assertIsNone(await self.tokens.listener(publish, "bob"))
        await self.store.unfriend(self.bob["id"], self.alice["id"])
        self.assertIsNone(await self.tokens.listener(secret, "bob"))
        self.assertIsNotNone(await self.tokens.listener(secret, "carol"))


class SQLiteTokenStoreTests(TokenStoreMixin, TestCase):
    def database_url(self) -> str:
        return sqlite_url(self)


class PostgresTokenStoreTests(TokenStoreMixin, TestCase):
    def database_url(self) -> str:
        return postgres_url(self)


class NameAndHeaderTests(TestCase):
    def test_names(self) -> None:
        """
        Names are NFC-normalised and trimmed; any script and emoji are
        fine; control, bidirectional-control, private-use, unassigned and
        line-separator characters, empty and over-long names are refused.
        """
        self.assertEqual(validate_name("  Cafe\u0301 🎙️ OBS  "), "Café 🎙️ OBS")
        self.assertEqual(validate_name("ラジオ 👩‍👩‍👧"), "ラジオ 👩‍👩‍👧")
        self.assertEqual(validate_name("x" * NAME_MAX), "x" * NAME_MAX)
        for bad in ("", "   ", "x" * (NAME_MAX + 1), "a\x00b", "a\nb", "evil\u202etxt.exe", "a\u2028b",
                    "\ue000", "a\u0378"):
            with self.assertRaises(DenoiseCastError, msg=repr(bad)) as caught:
                validate_name(bad)
            self.assertEqual(caught.exception.code, "invalid_name")

    def test_bearer(self) -> None:
        """Only a well-formed C{Bearer} credential is looked up at all."""
        token = "dcp_" + "A" * 43
        self.assertEqual(bearer_token(f"Bearer {token}"), token)
        self.assertEqual(bearer_token(f"bearer  {token} "), token)
        for bad in (None, "", token, f"Basic {token}", "Bearer ", "Bearer a b", "Bearer " + "A" * 500, "Bearer ä" * 10):
            self.assertIsNone(bearer_token(bad), bad)


async def friends(a: Client, b: Client, b_name: str, a_name: str) -> None:
    await a.post("/api/friends/requests", {"username": b_name})
    reply = await b.post(f"/api/friends/requests/{a_name}/accept")
    assert reply.status == 200, reply


class TokenApiTests(TestCase):
    async def setUp(self) -> None:
        self.running: RunningServer = await start_server(self)
        self.alice, self.bob = self.running.client(), self.running.client()
        await self.alice.register("alice")
        await self.bob.register("bob")

    async def test_shown_once_listed_and_revoked(self) -> None:
        """
        POST answers the secret once; GET lists names, scopes and dates but
        no secret or hash; DELETE revokes and the token stops working.
        """
        made = await self.alice.post("/api/tokens", {"name": "OBS 🎙", "scope": "publish"})
        self.assertEqual(made.status, 201)
        secret = made.body["secret"]
        listed = await self.alice.get("/api/tokens")
        self.assertEqual(listed.status, 200)
        self.assertEqual([t["name"] for t in listed.body["tokens"]], ["OBS 🎙"])
        self.assertEqual(listed.body["limit"], MAX_TOKENS)
        self.assertNotIn(secret[4:], repr(listed.body))
        self.assertNotIn(sha256(secret), repr(listed.body))
        self.assertEqual((await self.running.server.tokens.check(secret, "publish"))["username"], "alice")
        gone = await self.alice.delete(f"/api/tokens/{made.body['token']['id']}")
        self.assertEqual(gone.status, 204)
        self.assertIsNone(await self.running.server.tokens.check(secret, "publish"))
        self.assertEqual((await self.alice.get("/api/tokens")).body["tokens"], [])

    async def test_other_peoples_tokens(self) -> None:
        """
        bob neither sees nor revokes alice's tokens: her id gives him the
        same 404 as a guessed or malformed one, and her token still works.
        """
        made = await self.alice.post("/api/tokens", {"name": "phone", "scope": "listen"})
        token_id = made.body["token"]["id"]
        self.assertEqual((await self.bob.get("/api/tokens")).body["tokens"], [])
        for path in (token_id, "0" * 32, "%00", "..%2F..%2Fetc", "a" * 5000, "%F0%9F%8E%99"):
            reply = await self.bob.delete(f"/api/tokens/{path}")
            self.assertIn(reply.status, (404, 413, 414), path)
            if reply.status == 404:
                self.assertIn(reply.error_code, ("no_such_token", "not_found"), path)
        self.assertIsNotNone(await self.running.server.tokens.check(made.body["secret"], "listen"))

    async def test_hostile_bodies(self) -> None:
        """
        Bad scopes, names and types are 400s with a code, change nothing,
        and never answer 500.
        """
        cases = [
            ({"name": "x", "scope": "admin"}, "invalid_scope"),
            ({"name": "", "scope": "listen"}, "invalid_name"),
            ({"name": "x" * (NAME_MAX + 1), "scope": "listen"}, "invalid_name"),
            ({"name": "x" * 10_000, "scope": "listen"}, "invalid_field"),
            ({"name": "\u202egpj.exe", "scope": "listen"}, "invalid_name"),
            ({"name": "a\x07", "scope": "listen"}, "invalid_name"),
            ({"name": 5, "scope": "listen"}, "invalid_field"),
            ({"name": "x"}, "missing_field"),
            ({"name": "x", "scope": "listen", "user": "bob"}, "unknown_field"),
        ]
        for body, code in cases:
            reply = await self.alice.post("/api/tokens", body)
            self.assertEqual((reply.status, reply.error_code), (400, code), body)
        lone = await self.alice.post(
            "/api/tokens", raw=b'{"name": "\\ud800", "scope": "listen"}', headers={"Content-Type": "application/json"}
        )
        self.assertEqual(lone.status, 400)
        self.assertEqual((await self.alice.get("/api/tokens")).body["tokens"], [])

    async def test_needs_login_and_csrf(self) -> None:
        """
        The routes need a session, and making or revoking needs the CSRF
        header like every state-changing API call.
        """
        anon = self.running.client()
        self.assertEqual((await anon.get("/api/tokens")).status, 401)
        reply = await self.alice.post("/api/tokens", {"name": "x", "scope": "listen"}, csrf=False)
        self.assertEqual((reply.status, reply.error_code), (403, "csrf_failed"))
        self.assertEqual((await self.alice.get("/api/tokens")).body["tokens"], [])

    async def test_too_many(self) -> None:
        """The API refuses a token past MAX_TOKENS with a 409 saying why."""
        for i in range(MAX_TOKENS):
            self.assertEqual((await self.alice.post("/api/tokens", {"name": f"t{i}", "scope": "listen"})).status, 201)
        reply = await self.alice.post("/api/tokens", {"name": "more", "scope": "listen"})
        self.assertEqual((reply.status, reply.error_code), (409, "too_many_tokens"))


def token_page_story(browser: Any, base: str, checks: Any) -> dict[str, Any]:
    """alice makes a publish token on the settings page, copies it, revokes it."""
    seen: dict[str, Any] = {}
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    context.grant_permissions(["clipboard-read", "clipboard-write"], origin=base)
    try:
        page = context.new_page()
        page.on("dialog", lambda dialog: dialog.accept())
        page.goto(base + "/login")
        page.fill("#username", "alice")
        page.fill("#password", "correct horse")
        page.click("button[type=submit]")
        page.wait_for_url(base + "/")
        page.goto(base + "/settings")
        page.wait_for_selector("#token-list li.empty")
        checks.check(page, "settings-no-tokens")
        page.click("#tokens button[type=submit]")
        seen["empty_error"] = page.text_content("#tokens-error")
        page.fill("#token-name", "OBS on the laptop")
        page.select_option("#token-scope", "publish")
        page.click("#tokens button[type=submit]")
        page.wait_for_selector("#new-token")
        seen["secret"] = page.input_value("#new-token")
        seen["readonly"] = page.get_attribute("#new-token", "readonly") is not None
        seen["label"] = page.text_content("label[for=new-token]")
        seen["focused"] = page.evaluate("document.activeElement.id")
        seen["listed"] = page.locator("#token-list li.token").all_text_contents()
        checks.check(page, "settings-tokens")
        page.click("#copy-token")
        page.wait_for_selector("#new-token-copied:not(:empty)")
        seen["copied"] = page.evaluate("navigator.clipboard.readText()")
        page.click("#token-list li.token button")
        page.wait_for_selector("#token-list li.empty")
        seen["after_revoke_shown"] = page.locator("#new-token").count()
    finally:
        context.close()
    return seen


class TokenPageTests(TestCase):
    timeout = 240

    async def test_settings_section(self) -> None:
        """
        In Chromium: the settings page makes a named publish token, shows it
        once in a labelled, focused, read-only field whose copy button puts
        it on the clipboard, lists it without the secret, revokes it (the
        shown token goes too), refuses an empty name in words, and axe-core
        finds nothing serious at desktop or phone size.
        """
        from tests.browser_support import PageChecks, need_browser, screenshot_folder, shared_browser
        from tests.test_pages_browser import BrowserAppTests, microphone, shots_saved

        need_browser()
        running = await start_server(self)
        # Chromium keeps idle connections open; close the server's side when the test ends.
        BrowserAppTests.close_browser_connections(self, running)  # type: ignore[arg-type]
        await running.client().register("alice")
        base = running.base.replace("127.0.0.1", "localhost")
        checks = PageChecks(screenshot_folder())
        seen = await shared_browser(microphone(self)).call(lambda b: token_page_story(b, base, checks))
        self.assertIn("name", seen["empty_error"])
        self.assertTrue(seen["secret"].startswith("dcp_"), seen)
        self.assertTrue(seen["readonly"])
        self.assertIn("OBS on the laptop", seen["label"])
        self.assertEqual(seen["focused"], "new-token")
        self.assertEqual(len(seen["listed"]), 1)
        self.assertNotIn(seen["secret"], seen["listed"][0])
        self.assertEqual(seen["copied"], seen["secret"])
        self.assertEqual(seen["after_revoke_shown"], 0)
        self.assertEqual(checks.violations, {})
        shots_saved(self, checks)  # nothing wider than a phone's 360 px
        user = await running.server.tokens.check(seen["secret"], "publish")
        self.assertIsNone(user)
