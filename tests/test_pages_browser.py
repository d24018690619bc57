"""
The server-served pages in a real browser: Debian's Chromium driven by
Playwright registers two people, finds one from the other, sends, accepts
and lists a friend request, and logs out.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from twisted.internet.threads import deferToThread
from twisted.trial.unittest import SkipTest, TestCase

from twisted.internet.defer import Deferred

from tests.support import start_server
from tests.test_recordings import record

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def need_browser() -> Any:
    if not os.path.exists(CHROMIUM):
        raise SkipTest(f"{CHROMIUM} is missing (scripts/setup.sh installs Debian's chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        raise SkipTest("playwright is not installed (scripts/setup.sh installs it)") from None
    return sync_playwright


def browse(base: str, screenshot: Path) -> dict[str, Any]:
    """
    Drive the pages as two people would; runs in a thread, since
    Playwright's synchronous API runs its own event loop.
    """
    sync_playwright = need_browser()
    seen: dict[str, Any] = {}
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        try:
            alice = browser.new_context().new_page()
            bob = browser.new_context().new_page()
            for page, name in [(alice, "alice"), (bob, "bob")]:
                page.goto(base + "/")
                page.wait_for_url(base + "/login")
                page.click("text=Register")
                page.fill("input[name=username]", name)
                page.fill("input[name=password]", "correct horse")
                page.click("button[type=submit]")
                page.wait_for_url(base + "/")
                page.wait_for_selector(f"#me:has-text('{name}')")
            alice.fill("input[name=q]", "B")
            alice.click("#search-form button")
            alice.wait_for_selector("#results li:has-text('bob (none)')")
            alice.click("#results li:has-text('bob') button:has-text('Add friend')")
            alice.wait_for_selector("#outgoing li:has-text('bob')")
            bob.reload()
            bob.wait_for_selector("#incoming li:has-text('alice')")
            bob.click("#incoming li:has-text('alice') button:has-text('Accept')")
            bob.wait_for_selector("#friends li:has-text('alice')")
            alice.reload()
            alice.wait_for_selector("#friends li:has-text('bob')")
            seen["alice_friends"] = alice.inner_text("#friends")
            alice.wait_for_selector("#recordings li.recording:has-text('bob')")
            seen["recordings"] = alice.inner_text("#recordings")
            playable = alice.evaluate(
                """async () => {
                    const audio = document.querySelector('#recordings audio');
                    audio.preload = 'auto';
                    audio.load();
                    await new Promise((ok, fail) => {
                        audio.addEventListener('loadedmetadata', ok, {once: true});
                        audio.addEventListener('error', () => fail(audio.error && audio.error.message), {once: true});
                        setTimeout(() => fail('timeout'), 10000);
                    });
                    audio.currentTime = 0.5;
                    await new Promise(ok => audio.addEventListener('seeked', ok, {once: true}));
                    return {duration: audio.duration, at: audio.currentTime};
                }"""
            )
            seen["playable"] = playable
            alice.screenshot(path=str(screenshot))
            alice.click("#logout")
            alice.wait_for_url(base + "/login")
            alice.fill("input[name=username]", "alice")
            alice.fill("input[name=password]", "wrong password")
            alice.click("button[type=submit]")
            alice.wait_for_selector("#error:has-text('Wrong username or password')")
            seen["login_error"] = alice.inner_text("#error")
        finally:
            browser.close()
    return seen


class BrowserPageTests(TestCase):
    timeout = 180

    async def test_register_befriend_logout(self) -> None:
        """
        A person can register, search, send and accept a friend request,
        see the friend listed, log out, and is told about a wrong password,
        all through the pages in Chromium.
        """
        need_browser()
        running = await start_server(self)
        base = running.base.replace("127.0.0.1", "localhost")
        screenshot = Path(self.mktemp() + ".png")
        await self.browse_ready(running)
        seen = await deferToThread(browse, base, screenshot)
        self.assertIn("bob", seen["alice_friends"])
        self.assertIn("Wrong username or password", seen["login_error"])
        self.assertTrue(screenshot.exists())
        self.assertIn("bob", seen["recordings"])
        self.assertGreater(seen["playable"]["duration"], 1.0)
        self.assertGreaterEqual(seen["playable"]["at"], 0.4)

    async def browse_ready(self, running) -> None:  # type: ignore[no-untyped-def]
        """
        Give bob a recording once he exists, so alice's page can list and
        play it after they become friends.
        """
        from twisted.internet import reactor
        from twisted.internet.task import deferLater

        async def when_bob_exists() -> None:
            for _ in range(600):
                if await running.server.store.get_user_by_name("bob") is not None:
                    await record(running, "bob", 2.0)
                    return
                await deferLater(reactor, 0.05)

        self._recording = Deferred.fromCoroutine(when_bob_exists())

