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



LIVE_FLAGS = CHROMIUM_FLAGS + [
    "--use-fake-ui-for-media-stream",  # grant the microphone without asking
    "--use-fake-device-for-media-stream",  # a generated tone as the microphone
    "--autoplay-policy=no-user-gesture-required",
]

RECEIVED = """() => {
    const listening = live.listens.get('alice');
    return listening.pc.getStats().then((stats) => {
        for (const r of stats.values())
            if (r.type === 'inbound-rtp' && r.kind === 'audio')
                return {packets: r.packetsReceived, samples: r.totalSamplesReceived || 0};
        return {packets: 0, samples: 0};
    });
}"""


def go_live_and_listen(base: str) -> dict[str, Any]:
    """
    alice goes live from her home page with the (fake) microphone, bob
    listens to her from his, switches to the raw signal, sees her turn
    denoise off, and sees her stop.  Runs in a thread, like ``browse``.
    """
    sync_playwright = need_browser()
    seen: dict[str, Any] = {}
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=LIVE_FLAGS)
        try:
            pages = {}
            for name in ("alice", "bob"):
                page = browser.new_context().new_page()
                page.goto(base + "/login")
                page.fill("input[name=username]", name)
                page.fill("input[name=password]", "correct horse")
                page.click("button[type=submit]")
                page.wait_for_url(base + "/")
                page.wait_for_selector("#live-status:has-text('Not live')")
                pages[name] = page
            alice, bob = pages["alice"], pages["bob"]
            bob.wait_for_selector("#live-friends li.muted")
            alice.click("#go-live")
            alice.wait_for_selector("#live-status:has-text('Live: 0 listeners')")
            bob.wait_for_selector("#live-friends li:has-text('alice (live')")
            bob.click("#live-friends li:has-text('alice') button:has-text('Listen')")
            bob.wait_for_selector("#live-friends li:has-text('alice') button:has-text('Stop listening')")
            alice.wait_for_selector("#live-status:has-text('Live: 1 listener')")
            bob.wait_for_timeout(3000)
            seen["received"] = bob.evaluate(RECEIVED)
            bob.click("#live-friends li:has-text('alice') button:has-text('Hear raw')")
            bob.wait_for_selector("#live-friends li:has-text('alice') button:has-text('Hear denoised')")
            alice.uncheck("#denoise")
            bob.wait_for_selector("#live-friends li:has-text('denoise off')")
            alice.click("#stop-live")
            alice.wait_for_selector("#live-status:has-text('Not live')")
            bob.wait_for_selector("#live-friends li.muted")
            seen["players_left"] = bob.evaluate("() => document.querySelectorAll('#players audio').length")
            seen["errors"] = [alice.inner_text("#error"), bob.inner_text("#error")]
        finally:
            browser.close()
    return seen


class BrowserLiveTests(TestCase):
    timeout = 180

    async def test_go_live_and_listen_from_the_pages(self) -> None:
        """
        The home page goes live with the microphone and listens to a live
        friend in Chromium, over the WebSocket and real WebRTC: audio
        arrives, the listener count, raw/denoised switch, denoise setting
        and stop all reach the other side.
        """
        need_browser()
        running = await start_server(self)
        alice, bob = running.client(), running.client()
        await alice.register("alice")
        await bob.register("bob")
        await alice.post("/api/friends/requests", {"username": "bob"})
        await bob.post("/api/friends/requests/alice/accept")
        base = running.base.replace("127.0.0.1", "localhost")
        seen = await deferToThread(go_live_and_listen, base)
        self.assertGreater(seen["received"]["packets"], 50, seen)
        self.assertGreater(seen["received"]["samples"], 48000, seen)
        self.assertEqual(seen["players_left"], 0)
        self.assertEqual(seen["errors"], ["", ""])
        status = (await bob.get("/api/streams/alice")).body
        self.assertEqual((status["live"], status["listeners"]), (False, 0))
        user = await running.server.store.get_user_by_name("alice")
        prefs = await running.server.store.get_denoise_prefs(user["id"])
        self.assertFalse(prefs["denoise"])  # the choice made on the page is remembered
