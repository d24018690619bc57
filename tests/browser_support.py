"""
Chromium for the browser tests: Debian's own, driven by Playwright for
Python, launched once per test module on a thread of its own (Playwright's
synchronous API belongs to the thread that started it), with a fake
microphone playing a WAV file; axe-core checks and screenshots at desktop
and phone size.
"""

from __future__ import annotations

import atexit
import os
import queue
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.trial.unittest import SkipTest

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--use-fake-ui-for-media-stream",  # grant the microphone without asking
    "--use-fake-device-for-media-stream",
    "--autoplay-policy=no-user-gesture-required",
]
DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 360, "height": 740}

T = TypeVar("T")


def need_browser() -> None:
    if not os.path.exists(CHROMIUM):
        raise SkipTest(f"{CHROMIUM} is missing (scripts/setup.sh installs Debian's chromium)")
    try:
        import axe_playwright_python  # noqa: F401
        import playwright  # noqa: F401
    except ImportError:
        raise SkipTest("playwright / axe-playwright-python are missing (scripts/setup.sh installs them)") from None


class BrowserThread:
    """
    One thread that owns Playwright and one Chromium; test code is sent to
    it as functions of the browser and comes back as Deferreds.
    """

    def __init__(self, microphone: Path) -> None:
        self._jobs: queue.Queue[Callable[[], None] | None] = queue.Queue()
        self._microphone = microphone
        self.browser: Any = None
        self._thread = threading.Thread(target=self._run, name="chromium", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        from playwright.sync_api import sync_playwright

        with sync_playwright() as playwright:
            self.browser = playwright.chromium.launch(
                executable_path=CHROMIUM,
                args=CHROMIUM_FLAGS + [f"--use-file-for-fake-audio-capture={self._microphone}"],
            )
            try:
                while (job := self._jobs.get()) is not None:
                    job()
            finally:
                self.browser.close()

    def call(self, function: Callable[[Any], T]) -> "Deferred[T]":
        done: Deferred[T] = Deferred()

        def job() -> None:
            try:
                result = function(self.browser)
            except BaseException as error:  # handed to the test
                reactor.callFromThread(done.errback, error)
            else:
                reactor.callFromThread(done.callback, result)

        self._jobs.put(job)
        return done

    def stop(self) -> None:
        self._jobs.put(None)
        self._thread.join(30)


_shared: dict[str, BrowserThread] = {}


def shared_browser(microphone: Path) -> BrowserThread:
    """The module's one Chromium (the microphone file is fixed at launch)."""
    key = str(microphone)
    if key not in _shared:
        _shared[key] = BrowserThread(microphone)
        atexit.register(_shared[key].stop)
    return _shared[key]


def screenshot_folder() -> Path:
    """
    Where the screenshots go: $DENOISECAST_SCREENSHOTS, or a fresh folder
    under the system's temporary directory; printed so a person finds it.
    """
    chosen = os.environ.get("DENOISECAST_SCREENSHOTS")
    folder = Path(chosen) if chosen else Path(tempfile.mkdtemp(prefix="denoisecast-screenshots-"))
    folder.mkdir(parents=True, exist_ok=True)
    print(f"\nscreenshots: {folder}")
    return folder


class PageChecks:
    """
    Screenshots and axe-core at desktop and phone size; what axe found
    that is serious or critical is collected, keyed by page name.
    """

    def __init__(self, folder: Path) -> None:
        from axe_playwright_python.sync_playwright import Axe

        self.folder = folder
        self.axe = Axe()
        self.violations: dict[str, list[str]] = {}
        self.shots: list[str] = []

    def check(self, page: Any, name: str) -> None:
        page.wait_for_load_state("load")
        page.wait_for_timeout(150)  # let the page draw what the WebSocket just said
        for size_name, size in (("desktop", DESKTOP), ("phone", PHONE)):
            page.set_viewport_size(size)
            page.wait_for_timeout(100)
            result = self.axe.run(page)
            bad = [
                f"{v['id']} ({v['impact']}): {v['help']} at {[n['target'] for n in v['nodes']][:3]}"
                for v in result.response["violations"]
                if v.get("impact") in ("serious", "critical")
            ]
            if bad:
                self.violations[f"{name}@{size_name}"] = bad
            path = self.folder / f"{name}-{size_name}.png"
            page.screenshot(path=str(path), full_page=size_name == "phone")
            self.shots.append(path.name)
        page.set_viewport_size(DESKTOP)
