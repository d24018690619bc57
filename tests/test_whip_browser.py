"""
A WHIP broadcast heard in the browser app: a real ``twistd denoisecast``
process on loopback, the aiortc WHIP client of tests/whip_client.py
publishing noisy espeak-ng speech with alice's publish token (as OBS would),
and two friends, bob and dave, logged in to the app in Debian's Chromium on
alice's page.  They see her go live and end without reloading, and listen
with the page's own buttons: bob to the denoised signal, dave to the
original (the page's "Hear" switch).  What each page hears is measured by
the app's own analyser (``denoisecast.listening.level``), sampled in the
page over time.
"""

from __future__ import annotations

import math
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from twisted.internet import reactor
from twisted.internet.task import deferLater
from twisted.logger import Logger
from twisted.trial.unittest import TestCase

from denoisecast.live.rtc.seam import aio
from tests.browser_support import need_browser, shared_browser
from tests.rtc_support import RATE, noisy_speech
from tests.support import Client
from tests.test_pages_browser import PASSWORD, microphone
from tests.test_presence import befriend
from tests.test_twistd import TwistdProcess
from tests.whip_client import WhipClient, http, whip_cleanup

LOOPBACK_ICE = Path(__file__).resolve().parent / "loopback_ice"
#: The time step of the envelopes compared (the page samples its analyser
#: every 20 ms; its window is 2048 samples, about 43 ms).
STEP = 0.05
#: Steps the envelopes are averaged over before they are correlated (200 ms).
SMOOTH = 4
#: A step of the clean speech quieter than this is silence.
QUIET = 1e-4
LISTENERS = {"bob": "denoised", "dave": "raw"}

# Samples the app's level of C{user} every 20 ms, in the page, until told to
# stop: [milliseconds, RMS] pairs (0 while there is no analyser yet); and
# every 250 ms the browser's own counts of what arrived (inbound-rtp).
SAMPLE = """(user) => {
    const listening = window.denoisecast.listening;
    const levels = window.heardLevels = [];
    window.heardTimer = setInterval(() => {
        const rms = listening.level(user);
        levels.push([performance.timeOrigin + performance.now(), rms === null ? 0 : rms]);
    }, 20);
    const counts = window.heardCounts = [];
    window.countTimer = setInterval(async () => {
        const entry = listening.listens.get(user);
        if (!entry) return;
        for (const r of (await entry.pc.getStats()).values())
            if (r.type === 'inbound-rtp' && r.kind === 'audio')
                counts.push({at: Date.now(), packets: r.packetsReceived, lost: r.packetsLost,
                             concealed: r.concealedSamples, accelerated: r.removedSamplesForAcceleration,
                             decelerated: r.insertedSamplesForDeceleration});
    }, 250);
}"""

# True once no packet has arrived for two seconds (the jitter buffer has
# played what came before).
DRAINED = """() => {
    const counts = window.heardCounts;
    if (counts.length < 9) return false;
    const last = counts[counts.length - 1], before = counts[counts.length - 9];
    return last.packets > 0 && last.packets === before.packets && last.at - before.at >= 2000;
}"""

COLLECT = """() => {
    clearInterval(window.heardTimer);
    clearInterval(window.countTimer);
    return {levels: window.heardLevels, counts: window.heardCounts[window.heardCounts.length - 1]};
}"""

CONNECTED = """(user) => {
    const entry = window.denoisecast.listening.listens.get(user);
    return !!entry && entry.pc.connectionState === 'connected' && entry.analyser !== null;
}"""


class Pages:
    """bob's and dave's pages (used only on the browser's thread)."""

    def __init__(self) -> None:
        self.contexts: list[Any] = []
        self.pages: dict[str, Any] = {}

    def open(self, browser: Any, base: str) -> dict[str, Any]:
        """Each friend logs in and opens alice's page; she is not live yet."""
        seen: dict[str, Any] = {}
        for name in LISTENERS:
            context = browser.new_context(viewport={"width": 1280, "height": 800})
            self.contexts.append(context)
            page = self.pages[name] = context.new_page()
            page.set_default_timeout(60000)  # a loaded two-core machine
            page.goto(base + "/login?next=/u/alice")
            page.fill("#username", name)
            page.fill("#password", PASSWORD)
            page.click("button[type=submit]")
            page.wait_for_url(base + "/u/alice")
            page.wait_for_selector("#listen-panel")
            page.wait_for_selector("#friend-offline:not(:empty)")
            seen[name] = {"live_shown": page.is_visible("#friend-live"), "offline": page.inner_text("#friend-offline")}
        return seen

    def listen(self) -> dict[str, Any]:
        """
        The broadcast shows up without a reload; each friend picks what to
        hear and presses Listen; the pages start measuring once connected.
        """
        seen: dict[str, Any] = {}
        for name, signal in LISTENERS.items():
            page = self.pages[name]
            page.wait_for_selector("#friend-live", state="visible")
            page.wait_for_selector("#friend-list li[data-user=alice].live >> text=LIVE")
            page.check(f"input[name=hear][value={signal}]")
            page.click("#listen")
            page.wait_for_selector("#stop-listening", state="visible")
        for name in LISTENERS:
            page = self.pages[name]
            page.wait_for_function(f"() => ({CONNECTED})('alice')")
            seen[name] = {
                "signal": page.evaluate("() => window.denoisecast.listening.listens.get('alice').signal"),
                "count": page.inner_text("#friend-listeners"),
            }
            page.evaluate(SAMPLE, "alice")
        return seen

    def collect(self) -> dict[str, Any]:
        """Once the audio has stopped arriving: each page's levels and the browser's last counts."""
        for page in self.pages.values():
            page.wait_for_function(DRAINED, polling=250, timeout=120000)
        return {name: page.evaluate(COLLECT) for name, page in self.pages.items()}

    def ended(self) -> dict[str, Any]:
        """After the WHIP client's DELETE: each page says so, without a reload."""
        seen: dict[str, Any] = {}
        for name, page in self.pages.items():
            page.wait_for_selector("#listen-notice:has-text('alice ended the broadcast')")
            page.wait_for_selector("#friend-live", state="hidden")
            page.wait_for_selector("#stop-listening", state="hidden")
            seen[name] = {"notice": page.inner_text("#listen-notice"), "listening": page.is_visible("#stop-listening")}
        return seen

    def close(self) -> None:
        for context in self.contexts:
            context.close()
        self.contexts.clear()


def page_envelope(samples: list[list[float]]) -> np.ndarray:
    """
    The page's levels on a regular grid of STEP seconds: the mean of the
    samples in each step (a busy page samples late, so by time, not by
    count), steps without a sample filled in from their neighbours.
    """
    times = np.array([s[0] for s in samples]) / 1000.0
    levels = np.array([s[1] for s in samples])
    bins = ((times - times[0]) / STEP).astype(int)
    count = int(bins[-1]) + 1
    sums = np.bincount(bins, weights=levels, minlength=count)
    counts = np.bincount(bins, minlength=count)
    filled = counts > 0
    steps = np.arange(count)
    return np.interp(steps, steps[filled], sums[filled] / counts[filled])


def clean_envelope(clean: np.ndarray) -> np.ndarray:
    """RMS of the clean speech per STEP."""
    window = int(STEP * RATE)
    n = len(clean) // window
    return np.sqrt(np.mean(clean[: n * window].reshape(n, window) ** 2, axis=1) + 1e-12)


def smoothed(envelope: np.ndarray) -> np.ndarray:
    """C{envelope} averaged over SMOOTH steps (syllables, not the analyser's phase)."""
    return np.convolve(envelope, np.ones(SMOOTH) / SMOOTH, mode="same")


def correlation(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson's correlation of two envelopes of one length."""
    return float(np.corrcoef(a, b)[0, 1])


def best_lag(heard: np.ndarray, clean: np.ndarray, lags: range) -> tuple[float, int]:
    """The highest correlation of C{clean} with the stretch of C{heard} C{lag} steps on, and that lag."""
    best, found = -1.0, lags.start
    for lag in lags:
        if lag + len(clean) > len(heard):
            break
        corr = correlation(heard[lag : lag + len(clean)], clean)
        if corr > best:
            best, found = corr, lag
    return best, found


def sentences(clean_env: np.ndarray) -> list[tuple[int, int]]:
    """The clean speech's sentences: runs of sound with no silence longer than 0.5 s, as steps [start, end)."""
    sound = np.flatnonzero(clean_env >= QUIET)
    runs = np.split(sound, np.flatnonzero(np.diff(sound) > int(0.5 / STEP)) + 1)
    return [(int(run[0]), int(run[-1]) + 1) for run in runs]


@dataclass
class Sentence:
    start: int
    end: int
    correlation: float
    lag: int


def align(heard: np.ndarray, clean_env: np.ndarray) -> list[Sentence]:
    """
    Where each sentence of the clean speech is in what the page heard, and
    how well its envelope (with 0.5 s of pause either side, smoothed) is
    followed there.  Each sentence has a lag of its own, within 1 s of the
    one that fits the whole: the page measures in real time, and a loaded
    machine's jitter buffer does not keep one delay from start to end.
    """
    heard_s, clean_s = smoothed(heard), smoothed(clean_env)
    _, overall = best_lag(heard_s, clean_s, range(0, len(heard)))
    pad, reach = int(0.5 / STEP), int(1.0 / STEP)
    found = []
    for start, end in sentences(clean_env):
        low, high = max(0, start - pad), min(len(clean_env), end + pad)
        corr, lag = best_lag(heard_s[low:], clean_s[low:high], range(max(0, overall - reach), overall + reach + 1))
        found.append(Sentence(start, end, corr, lag))
    return found


def levels_where(heard: np.ndarray, steps: np.ndarray, found: list[Sentence]) -> np.ndarray:
    """C{heard} at C{steps} of the clean speech, each through the lag of the sentence nearest to it."""

    def lag(step: int) -> int:
        return min(found, key=lambda s: max(s.start - step, step - (s.end - 1), 0)).lag

    return np.array([heard[i + lag(i)] for i in steps if i + lag(i) < len(heard)])


def pause_steps(clean_env: np.ndarray) -> np.ndarray:
    """The steps where the clean speech is silent, at least 200 ms from speech."""
    quiet = clean_env < QUIET
    inside = quiet.copy()
    for shift in range(1, int(round(0.2 / STEP)) + 1):
        inside[shift:] &= quiet[:-shift]
        inside[:-shift] &= quiet[shift:]
    return np.flatnonzero(inside)


def speech_steps(clean_env: np.ndarray) -> np.ndarray:
    """The steps where the clean speech is within 20 dB of its loudest."""
    return np.flatnonzero(clean_env > clean_env.max() / 10)


def db(level: float) -> float:
    return 20 * math.log10(max(level, 1e-6))


async def fallback_chunks(base: str) -> float:
    """The server's count of chunks passed through undenoised (its engine was behind), from /metrics."""
    reply = await http("GET", base + "/metrics")
    for line in reply.body.decode().splitlines():
        if line.startswith("denoisecast_engine_fallback_chunks_total "):
            return float(line.split()[1])
    raise AssertionError("/metrics has no denoisecast_engine_fallback_chunks_total")


class WhipBrowserTests(TestCase):
    timeout = 420

    async def test_whip_broadcast_heard_in_chromium(self) -> None:
        """
        alice publishes noisy speech over WHIP to a real twistd process;
        bob and dave, logged in to the browser app in Chromium on her page,
        see LIVE (and noise removal on) appear without a reload and press
        Listen, bob hearing the denoised signal and dave the original.
        Each browser receives nine tenths of the packets sent or more; the
        level each page's analyser measures follows the clean speech
        (envelope correlation above 0.6 for each sentence); bob's noise
        floor in the pauses is at least 20 dB below dave's and his speech
        30 dB above it.  The noise floor is the 10th percentile of the
        levels in the pauses, as in test_pages_browser: a server whose
        engine falls behind passes chunks through undenoised (counted in
        /metrics, and reported here), which a median would measure on a
        loaded machine.  When the WHIP client sends DELETE, both pages say
        that alice ended the broadcast, again without a reload.
        """
        need_browser()
        import aioice.ice

        self.patch(aioice.ice, "get_host_addresses", lambda use_ipv4, use_ipv6: ["127.0.0.1"] if use_ipv4 else [])
        workdir = Path(tempfile.mkdtemp(prefix="denoisecast-whip-browser-"))
        self.addCleanup(shutil.rmtree, workdir, True)
        noisy, clean, _ = noisy_speech(workdir, seconds_pause=2.0)
        # Live from the WHIP POST, audio from the answer: the pages join in
        # between, slowly on a busy machine.
        server = TwistdProcess(
            self, workdir, "--silence-timeout", "60", "--ice-allow-networks", "127.0.0.0/8",
            env={"PYTHONPATH": os.pathsep.join(filter(None, [str(LOOPBACK_ICE), os.environ.get("PYTHONPATH")]))},
        )
        await server.ready(timeout=120.0)
        browser = shared_browser(microphone(self))
        warm = browser.call(lambda b: None)  # Chromium starts while the accounts are made
        clients = {name: Client(server.base) for name in ("alice", *LISTENERS)}
        for name, client in clients.items():
            await client.register(name, PASSWORD)
        for name in LISTENERS:
            await befriend(clients["alice"], clients[name], name, "alice")
        made = await clients["alice"].post("/api/tokens", {"name": "OBS", "scope": "publish"})
        self.assertEqual(made.status, 201, made)
        await warm

        pages = Pages()
        self.addCleanup(lambda: browser.call(lambda b: pages.close()))
        base = server.base.replace("127.0.0.1", "localhost")  # a secure context
        before = await browser.call(lambda b: pages.open(b, base))
        for name in LISTENERS:
            self.assertFalse(before[name]["live_shown"], before)
            self.assertIn("alice is offline", before[name]["offline"], before)

        whip = WhipClient(server.base + "/whip/alice", made.body["secret"])
        whip_cleanup(self, whip)
        passed_before = await fallback_chunks(server.base)
        await whip.offer(noisy)  # live now; media flows once the answer is applied
        joined = await browser.call(lambda b: pages.listen())
        for name, signal in LISTENERS.items():
            self.assertEqual(joined[name]["signal"], signal, joined)
            self.assertIn("noise removal on", joined[name]["count"], joined)
        await whip.connect()
        for _ in range(1200):
            if whip.pc is not None and whip.pc.connectionState == "connected":
                break
            await deferLater(reactor, 0.05)
        self.assertEqual(whip.pc.connectionState if whip.pc else None, "connected")
        # The file plays once; the pages have heard it all when packets stop coming.
        assert whip.pc is not None
        sender = whip.pc.getSenders()[0]
        for _ in range(2400):
            if sender.track is None or sender.track.readyState == "ended":
                break
            await deferLater(reactor, 0.05)
        self.assertEqual(sender.track.readyState if sender.track else "ended", "ended")
        sent = sum(r.packetsSent for r in (await aio(whip.pc.getStats())).values() if r.type == "outbound-rtp")
        heard = await browser.call(lambda b: pages.collect())
        passed = await fallback_chunks(server.base) - passed_before
        await whip.stop()
        after = await browser.call(lambda b: pages.ended())
        for name in LISTENERS:
            self.assertIn("alice ended the broadcast", after[name]["notice"], after)
            self.assertFalse(after[name]["listening"], after)
        self.assertFalse((await clients["bob"].get("/api/streams/alice")).body["live"])

        figures: dict[str, dict[str, Any]] = {}
        clean_env = clean_envelope(clean)
        pauses, speech = pause_steps(clean_env), speech_steps(clean_env)
        for name in LISTENERS:
            envelope = page_envelope(heard[name]["levels"])
            self.assertGreater(len(envelope), len(clean_env), f"{name}: measured for too short a time")
            found = align(envelope, clean_env)
            in_pauses, in_speech = levels_where(envelope, pauses, found), levels_where(envelope, speech, found)
            self.assertGreater(len(in_pauses), 40, f"{name}: only {len(in_pauses)} steps in pauses")
            self.assertGreater(len(in_speech), 20, f"{name}: only {len(in_speech)} steps of speech")
            counts = heard[name]["counts"]
            figures[name] = {
                "correlation": [round(s.correlation, 2) for s in found],
                "lag_s": [round(s.lag * STEP, 2) for s in found],
                "floor_db": round(db(float(np.percentile(in_pauses, 10))), 1),
                "pause_median_db": round(db(float(np.median(in_pauses))), 1),
                "speech_db": round(db(float(np.median(in_speech))), 1),
                "packets": counts["packets"],
                "lost": counts["lost"],
                "accelerated_s": round(counts["accelerated"] / RATE, 2),
                "decelerated_s": round(counts["decelerated"] / RATE, 2),
            }
            Logger().info("WHIP -> Chromium ({name}): {figures}", name=name, figures=figures[name])
        print(f"\nWHIP -> Chromium (publisher sent {sent} packets, {passed:.0f} chunks passed undenoised): {figures}")
        for name in LISTENERS:
            self.assertEqual(len(figures[name]["correlation"]), 2, figures)  # the fixture's two sentences
            self.assertGreater(min(figures[name]["correlation"]), 0.6, figures)
            self.assertGreater(figures[name]["packets"], 0.9 * sent, figures)
        self.assertGreater(figures["bob"]["speech_db"] - figures["bob"]["floor_db"], 30.0, figures)
        self.assertGreaterEqual(figures["dave"]["floor_db"] - figures["bob"]["floor_db"], 20.0, figures)
