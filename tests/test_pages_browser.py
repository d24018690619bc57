"""
The browser app in a real browser: Debian's Chromium, driven by Playwright,
with a fake microphone playing noisy speech.  One test tells the whole story
(two people register, befriend, one goes live, the other listens, denoise
is switched, the broadcast is reloaded and stopped, the recording appears
and plays); another covers a stranger, a name nobody has and a logged-out
visit.  Every page is checked with axe-core and photographed at desktop
and phone size along the way (the folder is printed).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from twisted.internet.defer import Deferred
from twisted.trial.unittest import TestCase

from tests.browser_support import DESKTOP, PHONE, PageChecks, need_browser, screenshot_folder, shared_browser
from tests.rtc_support import noisy_speech
from tests.support import RunningServer
from tests.test_live_manager import start_live

PASSWORD = "correct horse"
_microphone: dict[str, Path] = {}


def microphone(test: TestCase) -> Path:
    """Noisy speech with long pauses (noise only), made once per module."""
    if "wav" not in _microphone:
        directory = Path(test.mktemp())
        directory.mkdir(parents=True)
        _microphone["wav"], _, _ = noisy_speech(directory, seconds_pause=2.0, noise_db=-30.0)
    return _microphone["wav"]


INBOUND = """async (user) => {
    const entry = window.denoisecast.listening.listens.get(user);
    if (!entry) return {packets: 0};
    const stats = await entry.pc.getStats();
    for (const r of stats.values())
        if (r.type === 'inbound-rtp' && r.kind === 'audio') return {packets: r.packetsReceived};
    return {packets: 0};
}"""

LEVELS = """async ([user, seconds]) => {
    const levels = [];
    const end = Date.now() + seconds * 1000;
    while (Date.now() < end) {
        const rms = window.denoisecast.listening.level(user);
        levels.push(rms === null ? 0 : rms);
        await new Promise(ok => setTimeout(ok, 40));
    }
    return levels;
}"""

PLAYER = """async () => {
    const button = document.querySelector('#recordings li.recording button.play');
    button.click();
    const audio = await new Promise((ok, fail) => {
        const t0 = Date.now();
        const look = () => {
            const a = document.querySelector('#recordings li.recording audio');
            if (a && a.readyState >= 1) return ok(a);
            if (Date.now() - t0 > 10000) return fail('no player');
            setTimeout(look, 50);
        };
        look();
    });
    const t0 = Date.now();
    while (audio.currentTime < 0.3 && Date.now() - t0 < 10000) await new Promise(ok => setTimeout(ok, 50));
    return {duration: audio.duration, at: audio.currentTime};
}"""


SWITCH = """async () => {
    const audio = document.querySelector('.player audio');
    await new Promise(ok => audio.readyState >= 1 ? ok() : audio.addEventListener('loadedmetadata', ok, {once: true}));
    audio.currentTime = 3;
    await new Promise(ok => audio.addEventListener('seeked', ok, {once: true}));
    const select = document.querySelector('.player select');
    select.value = 'raw';
    select.dispatchEvent(new Event('change'));
    await new Promise(ok => audio.addEventListener('seeked', ok, {once: true}));
    return {src: audio.currentSrc, at: audio.currentTime};
}"""


def noise_floor_db(levels: list[float]) -> float:
    """The quiet end of a run of levels (the 10th percentile), in dB."""
    import math

    quiet = sorted(levels)[max(0, len(levels) // 10)]
    return 20 * math.log10(max(quiet, 1e-6))


def register(page: Any, base: str, name: str) -> None:
    page.goto(base + "/register")
    page.fill("#username", name)
    page.fill("#password", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(base + "/")
    page.wait_for_selector(f"#nav-me:has-text('{name}')")


def packets_over(page: Any, count: int, seconds: float = 20.0) -> dict[str, int]:
    """bob's inbound packet count from alice, once it is over C{count}."""
    import time

    deadline = time.monotonic() + seconds
    while True:
        stats = page.evaluate(INBOUND, "alice")
        if stats["packets"] > count or time.monotonic() > deadline:
            return stats
        page.wait_for_timeout(100)


def server_denoise(page: Any) -> Any:
    return page.evaluate("() => fetch('/api/streams/alice').then(r => r.json()).then(b => [b.denoise, b.atten_lim_db])")


def whole_story(browser: Any, base: str, checks: PageChecks) -> dict[str, Any]:
    """
    What two people do, start to end; returns what was seen, for the test
    to judge.  Waits are on conditions, each with Playwright's timeout.
    """
    seen: dict[str, Any] = {"dialogs": [], "console": []}
    contexts = [browser.new_context(viewport={"width": 1280, "height": 800}) for _ in range(2)]
    alice, bob = (context.new_page() for context in contexts)
    answers: list[bool] = []

    def dialog(d: Any) -> None:
        seen["dialogs"].append(d.message)
        if answers.pop(0) if answers else False:
            d.accept()
        else:
            d.dismiss()

    for page in (alice, bob):
        page.set_default_timeout(20000)
        page.on("dialog", dialog)
        page.on("console", lambda m: seen["console"].append(m.text) if m.type == "error" else None)
    try:
        alice.goto(base + "/login")
        checks.check(alice, "login")
        alice.goto(base + "/register")
        checks.check(alice, "register")
        register(alice, base, "alice")
        register(bob, base, "bob")
        checks.check(alice, "home-empty")

        # Befriend through the pages; nobody reloads from here on.
        alice.click("header >> text=Find people")
        alice.wait_for_url(base + "/search")
        alice.fill("#q", "bo")
        alice.click("form[role=search] button")
        alice.click("#results li[data-user=bob] >> text=Add friend")
        alice.wait_for_selector("#results li[data-user=bob] >> text=Request sent")
        checks.check(alice, "search")
        bob.wait_for_selector("#nav-requests:has-text('Requests (1)')")
        bob.click("#nav-requests")
        bob.wait_for_selector("#incoming li[data-user=alice]")
        checks.check(bob, "requests")
        bob.click("#incoming li[data-user=alice] >> text=Accept")
        alice.wait_for_selector("#friend-list li[data-user=bob]")
        bob.wait_for_selector("#friend-list li[data-user=alice].online")
        seen["request_badge_after"] = bob.inner_text("#nav-requests")

        # alice goes live with noise removal on.
        alice.click("#nav-me")
        alice.wait_for_url(base + "/u/alice")
        alice.wait_for_selector("#go-live:not([hidden])")
        seen["denoise_before"] = alice.is_checked("#denoise")
        alice.click("#go-live")
        alice.wait_for_selector("#live-badge:not([hidden])")
        alice.wait_for_function("() => /^00:0[1-9]$/.test(document.querySelector('[role=timer]').textContent)")
        seen["timer"] = alice.inner_text("[role=timer]")
        seen["listeners0"] = alice.inner_text("#listener-count")

        # bob sees it without reloading, from his requests page, and listens in one click.
        bob.wait_for_selector("#friend-list li[data-user=alice].live >> text=LIVE")
        bob.wait_for_selector("#notices >> text=alice is LIVE now.")
        # On a phone the friends list is folded: its button says who is live.
        bob.set_viewport_size(PHONE)
        seen["phone_toggle"] = (bob.is_visible("#friend-list"), bob.inner_text("#friends-toggle"))
        bob.set_viewport_size(DESKTOP)
        bob.click("#friend-list li[data-user=alice] button")
        bob.wait_for_url(base + "/u/alice")
        bob.wait_for_selector("#stop-listening:not([hidden])")
        alice.wait_for_selector("#listener-count:has-text('1 listening')")
        bob.wait_for_selector("#notices >> text=alice is LIVE now.", state="detached", timeout=5000)
        bob.wait_for_function(
            "() => window.denoisecast.listening.level('alice') > 0.001", timeout=20000
        )
        seen["inbound"] = packets_over(bob, 50)
        alice.wait_for_function("() => document.querySelector('#heard-meter').value > 0")
        alice.wait_for_function("() => document.querySelector('#mic-meter').value > 0")
        checks.check(alice, "broadcast-live")
        checks.check(bob, "listening")

        # The listener's controls: elapsed time, volume, original / noise removed.
        bob.wait_for_function("() => /^\\d\\d:\\d\\d$/.test(document.querySelector('#listen-timer').textContent)")
        seen["listen_timer"] = bob.inner_text("#listen-timer")
        bob.fill("#volume", "0.3")
        seen["volume"] = bob.evaluate("() => document.querySelector('#players audio[data-user=alice]').volume")
        bob.check("input[name=hear][value=raw]")
        bob.wait_for_function("() => window.denoisecast.listening.listens.get('alice').signal === 'raw'")
        bob.check("input[name=hear][value=denoised]")
        bob.wait_for_function("() => window.denoisecast.listening.listens.get('alice').signal === 'denoised'")
        bob.fill("#volume", "1")

        # Noise removal off and on: the switch, the server and the listener's page agree each time.
        agreement = []
        for enabled in (False, True):
            if enabled:
                alice.check("#denoise")
            else:
                alice.uncheck("#denoise")
            word = "on" if enabled else "off"
            bob.wait_for_selector(f"#friend-listeners:has-text('noise removal {word}')")
            alice.wait_for_timeout(200)
            agreement.append((alice.is_checked("#denoise"), server_denoise(bob)[0], enabled))
            # Listen long enough to cover a pause of the looping file (noise only).
            seen[f"floor_{word}"] = noise_floor_db(bob.evaluate(LEVELS, ["alice", 7]))
        seen["agreement"] = agreement

        # A strength change keeps noise removal on (the old page unticked it).
        alice.fill("#strength-number", "24")
        alice.dispatch_event("#strength-number", "change")
        alice.wait_for_selector("#strength-text:has-text('at most 24 dB')")
        seen["after_strength"] = (alice.is_checked("#denoise"), server_denoise(bob))
        alice.fill("#strength-number", "150")
        alice.dispatch_event("#strength-number", "change")
        alice.wait_for_selector("#broadcast-error:has-text('atten_lim_db')")
        seen["strength_error"] = alice.inner_text("#broadcast-error")
        seen["strength_shown"] = alice.input_value("#strength-number")

        # Leaving asks first; a reload re-attaches; a second tab shows LIVE.
        seen["beforeunload_asks"] = alice.evaluate(
            "() => { const e = new Event('beforeunload', {cancelable: true}); window.dispatchEvent(e); return e.defaultPrevented; }"
        )
        since = alice.evaluate("() => window.denoisecast.broadcaster.live.live_since")
        packets = bob.evaluate(INBOUND, "alice")["packets"]
        answers.append(True)
        alice.reload()
        alice.wait_for_selector("#live-badge:not([hidden])")
        alice.wait_for_function("() => window.denoisecast.broadcaster.mine && !window.denoisecast.broadcaster.live.detached")
        seen["same_broadcast"] = alice.evaluate("() => window.denoisecast.broadcaster.live.live_since") == since
        seen["packets_after_reload"] = packets_over(bob, packets + 100)["packets"] - packets
        seen["bob_still_listening"] = bob.is_visible("#stop-listening")
        second = contexts[0].new_page()
        second.goto(base + "/u/alice")
        second.wait_for_selector("#live-badge:not([hidden])")
        seen["second_tab"] = second.inner_text("#broadcast .live-line")
        second.close()

        # Short network drops: each page's WebSocket closes; the banner says
        # so, and both come back by themselves (alice re-attaches, bob listens again).
        alice.evaluate("() => window.denoisecast.socket.ws.close()")
        alice.wait_for_selector("#banner:has-text('reconnecting')")
        alice.wait_for_selector("#banner", state="hidden")
        alice.wait_for_function("() => window.denoisecast.broadcaster.mine && !window.denoisecast.broadcaster.live.detached")
        seen["same_after_drop"] = alice.evaluate("() => window.denoisecast.broadcaster.live.live_since") == since
        bob.evaluate("() => window.denoisecast.socket.ws.close()")
        bob.wait_for_selector("#banner:has-text('reconnecting')")
        bob.wait_for_selector("#banner", state="hidden")
        bob.wait_for_selector("#stop-listening:not([hidden])")
        seen["packets_after_drop"] = packets_over(bob, 100)["packets"]

        # Stop: bob is told, and the recording appears in both lists without reload.
        bob.click("header >> text=Home")
        bob.wait_for_selector("#live-now li.live-friend")
        checks.check(bob, "home-live")
        bob.click("#friend-list li[data-user=alice] a")
        bob.wait_for_url(base + "/u/alice")
        alice.click("#stop-live")
        alice.wait_for_selector("#go-live:not([hidden])")
        bob.wait_for_selector("#listen-notice:has-text('alice ended the broadcast')")
        seen["ended_notice"] = bob.inner_text("#listen-notice")
        for page in (alice, bob):
            page.wait_for_selector("#recordings li.recording", timeout=30000)
        seen["list_alice"] = alice.inner_text("#recordings li.recording .duration")
        seen["recording"] = alice.evaluate(
            "() => fetch('/api/recordings').then(r => r.json()).then(b => b.recordings[0])"
        )
        seen["player"] = bob.evaluate(PLAYER)
        seen["list_bob"] = bob.inner_text("#recordings li.recording .duration")
        checks.check(bob, "friend-page")
        checks.check(alice, "own-page")

        # The recording's own page.
        alice.click("#recordings li.recording a.when")
        alice.wait_for_selector("canvas.wave.big")
        alice.wait_for_selector(".timeline li")
        seen["timeline"] = alice.inner_text(".timeline")
        seen["switch"] = alice.evaluate(SWITCH)
        checks.check(alice, "recording")
        alice.go_back()
        alice.wait_for_url(base + "/u/alice")
        alice.wait_for_selector("#recordings li.recording")

        # Delete and unfriend ask first; saying no changes nothing.
        before = len(seen["dialogs"])
        answers.append(False)
        alice.click("#recordings li.recording button.delete")
        alice.wait_for_timeout(300)
        seen["delete_asked"] = len(seen["dialogs"]) > before
        seen["still_there"] = alice.locator("#recordings li.recording").count()
        answers.append(False)
        bob.click("#unfriend")
        bob.wait_for_timeout(300)
        seen["unfriend_asked"] = len(seen["dialogs"]) > before + 1
        seen["still_friends"] = alice.locator("#friend-list li[data-user=bob]").count()
        # Yes this time: bob's page turns into the no-access page, alice's recordings leave his lists.
        bob.click("header >> text=Home")
        bob.wait_for_selector("#recordings li.recording")
        answers.append(True)
        alice.click("#friend-list li[data-user=bob] a")
        alice.wait_for_url(base + "/u/bob")
        checks.check(alice, "friend-offline-page")
        alice.click("#unfriend")
        alice.wait_for_selector("#send-request")
        bob.wait_for_selector("#recordings li.empty")
        seen["bob_recordings_after"] = bob.locator("#recordings li.recording").count()
        checks.check(alice, "no-access-after-unfriend")
        alice.click("header >> text=Settings")
        alice.wait_for_selector("#default-denoise")
        checks.check(alice, "settings")
        alice.fill("#current", PASSWORD)
        alice.fill("#new", "a longer horse battery")
        alice.fill("#again", "a longer horse battery")
        alice.click("text=Change password >> nth=-1")
        alice.wait_for_selector("#password-done:has-text('Your password is changed')")
        alice.uncheck("#default-denoise")
        alice.wait_for_function("() => window.denoisecast.broadcaster.denoise === false")
        seen["default_denoise"] = alice.is_checked("#default-denoise")
    finally:
        for context in contexts:
            context.close()
    return seen


def stranger_and_missing(browser: Any, base: str, checks: PageChecks) -> dict[str, Any]:
    """carol is nobody's friend; a logged-out visit; a name nobody has."""
    seen: dict[str, Any] = {}
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    page = context.new_page()
    page.set_default_timeout(20000)
    sockets: list[str] = []
    page.on("websocket", lambda ws: sockets.append(ws.url))
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    try:
        page.goto(base + "/")
        page.wait_for_url(base + "/login?next=/")
        page.wait_for_selector("#username")
        seen["sockets_logged_out"] = list(sockets)
        seen["errors_logged_out"] = list(errors)
        page.fill("#username", "alice")
        page.fill("#password", "not her password")
        page.click("button[type=submit]")
        page.wait_for_selector("#error:not(:empty)")
        seen["wrong_password"] = page.inner_text("#error")
        page.goto(base + "/register")
        page.fill("#username", "alice")
        page.fill("#password", PASSWORD)
        page.click("button[type=submit]")
        page.wait_for_selector("#error:not(:empty)")
        seen["name_taken"] = page.inner_text("#error")
        register(page, base, "carol")
        # A browser that refuses the microphone: the page says what to do.
        page.goto(base + "/u/carol")
        page.evaluate(
            "() => { navigator.mediaDevices.getUserMedia = () => "
            "Promise.reject(new DOMException('denied', 'NotAllowedError')); }"
        )
        page.click("#go-live")
        page.wait_for_selector("#broadcast-error:not(:empty)")
        seen["mic_refused"] = page.inner_text("#broadcast-error")
        seen["live_after_refusal"] = page.is_visible("#live-badge")
        response = page.goto(base + "/u/alice")
        seen["no_access_status"] = response.status
        page.wait_for_selector("#send-request")
        seen["no_access_text"] = page.inner_text("main")
        seen["audio_elements"] = page.locator("audio").count()
        checks.check(page, "no-access")
        response = page.goto(base + "/u/nobody-here")
        seen["missing_status"] = response.status
        page.wait_for_selector("h1:has-text('Not found')")
        seen["missing_text"] = page.inner_text("main")
        checks.check(page, "not-found")
        page.goto(base + "/u/alice")
        page.click("#send-request")
        page.wait_for_selector("text=Cancel request")
        seen["request_sent"] = page.inner_text("#relationship")
        # The session ends elsewhere (here: a logout the page did not make):
        # the server closes the WebSocket and the page goes to the login page.
        seen["logout_status"] = page.evaluate(
            """() => fetch('/api/auth/logout', {method: 'POST', headers: {'X-CSRF-Token':
                decodeURIComponent(document.cookie.match(/dc_csrf=([^;]+)/)[1])}}).then(r => r.status)"""
        )
        page.wait_for_url(base + "/login?next=/u/alice")
        seen["after_session_ended"] = page.url
    finally:
        context.close()
    return seen


# The microphone fails as the test says (window.micFails: a DOMException's
# name, or nothing for the fake device).
MIC_TROUBLE = """(() => {
    const devices = navigator.mediaDevices;
    const real = devices.getUserMedia.bind(devices);
    devices.getUserMedia = (constraints) => window.micFails
        ? Promise.reject(new DOMException('test', window.micFails)) : real(constraints);
})();"""

# Notifications are recorded instead of shown; the tab counts as hidden
# (in the background) unless the test says otherwise, as a person's would.
NOTIFICATIONS = """(() => {
    const Real = window.Notification;
    window.notified = [];
    window.Notification = class {
        static get permission() { return Real.permission; }
        static requestPermission() { return Real.requestPermission(); }
        constructor(title, options) { window.notified.push([title, (options || {}).body || '']); }
    };
    window.tabHidden = true;
    Object.defineProperty(Document.prototype, 'hidden', {configurable: true, get: () => window.tabHidden});
})();"""


# The next listen's answer gets a wrong DTLS fingerprint, and 'ended' for
# listening is kept from the page, so only the page's own watch on its
# connection can notice; resolves once the page called reconnect, with what
# the server said meanwhile.
FAIL_ONCE = """async () => {
    const socket = window.denoisecast.socket, listening = window.denoisecast.listening;
    const request = socket.request.bind(socket), emit = socket.emit.bind(socket);
    let once = true;
    socket.request = async (message, ...rest) => {
        const reply = await request(message, ...rest);
        if (message.type === 'listen' && once) {
            once = false;
            reply.sdp = reply.sdp.replace(/(a=fingerprint:\\S+ )([0-9A-F]{2})/gi,
                (_, head, pair) => head + (pair === '00' ? '11' : '00'));
        }
        return reply;
    };
    const held = [];
    socket.emit = (type, message) => (type === 'ended' && message.role === 'listen')
        ? held.push(message.reason) : emit(type, message);
    const reconnect = listening.reconnect.bind(listening), reconnects = [];
    listening.reconnect = (user) => { reconnects.push(user); return reconnect(user); };
    window.restoreEmit = () => { socket.emit = emit; socket.request = request; listening.reconnect = reconnect; };
    await listening.listen('alice');
    window.failedPc = listening.listens.get('alice').pc;
    const t0 = Date.now();
    while (!reconnects.length && Date.now() - t0 < 30000) await new Promise(ok => setTimeout(ok, 50));
    return {reconnects, held, socket: socket.open, state: window.failedPc.connectionState};
}"""


def log_in(page: Any, base: str, name: str) -> None:
    page.goto(base + "/login")
    page.fill("#username", name)
    page.fill("#password", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(base + "/")
    page.wait_for_selector(f"#nav-me:has-text('{name}')")


def download(page: Any, selector: str) -> tuple[str, bytes]:
    """Click a download link; the file name the browser chose and the file's first bytes."""
    with page.expect_download() as info:
        page.click(selector)
    done = info.value
    return done.suggested_filename, Path(done.path()).read_bytes()[:4]


def trouble(browser: Any, base: str, checks: PageChecks) -> dict[str, Any]:
    """
    alice's microphone is missing, then busy, then works; bob, in another
    tab, gets a browser notification; his media connection breaks and comes
    back; alice's page goes away for good; bob downloads the recording.
    """
    seen: dict[str, Any] = {}
    alice_context = browser.new_context(viewport={"width": 1280, "height": 800})
    alice_context.add_init_script(MIC_TROUBLE)
    bob_context = browser.new_context(viewport={"width": 1280, "height": 800})
    bob_context.grant_permissions(["notifications"], origin=base)
    bob_context.add_init_script(NOTIFICATIONS)
    alice, bob = alice_context.new_page(), bob_context.new_page()
    for page in (alice, bob):
        page.set_default_timeout(20000)
    try:
        log_in(alice, base, "alice")
        log_in(bob, base, "bob")
        # bob asks; alice's notice about it goes once she accepts.
        seen["request_status"] = bob.evaluate(
            """() => fetch('/api/friends/requests', {method: 'POST', body: JSON.stringify({username: 'alice'}),
                headers: {'Content-Type': 'application/json', 'X-CSRF-Token':
                decodeURIComponent(document.cookie.match(/dc_csrf=([^;]+)/)[1])}}).then(r => r.status)"""
        )
        alice.click("#notices >> text=See requests")
        alice.click("#incoming li[data-user=bob] >> text=Accept")
        alice.wait_for_selector("#friend-list li[data-user=bob]")
        alice.wait_for_selector("#notices >> text=bob wants to be your friend.", state="detached", timeout=5000)
        seen["permission"] = bob.evaluate("() => Notification.permission")
        bob.click("header >> text=Settings")
        bob.click("#notify")
        bob.wait_for_selector("#notify-state:has-text('Notifications are on')")
        bob.click("header >> text=Home")
        alice.goto(base + "/u/alice")
        for name in ("NotFoundError", "NotReadableError"):
            alice.evaluate("(name) => { window.micFails = name; }", name)
            alice.click("#go-live")
            alice.wait_for_function(
                "() => document.querySelector('#broadcast-error').textContent !== ''"
                " && !document.querySelector('#go-live').disabled"
            )
            seen[name] = alice.inner_text("#broadcast-error")
            seen[f"live_after_{name}"] = alice.is_visible("#live-badge")
            if name == "NotFoundError":
                checks.check(alice, "microphone-missing")
        alice.evaluate("() => { window.micFails = null; }")
        alice.click("#go-live")
        alice.wait_for_selector("#live-badge:not([hidden])")
        seen["error_after_success"] = alice.inner_text("#broadcast-error")

        # bob's tab is in the background: the browser notifies him, and the page shows a notice.
        bob.wait_for_function("() => window.notified.length > 0")
        seen["notified"] = bob.evaluate("() => window.notified")
        bob.wait_for_selector("#notices >> text=alice is LIVE now.")
        # On a phone the friends list is folded: its button says who is live.
        bob.set_viewport_size(PHONE)
        seen["phone_toggle"] = (bob.is_visible("#friend-list"), bob.inner_text("#friends-toggle"))
        bob.set_viewport_size(DESKTOP)

        bob.goto(base + "/u/alice")
        bob.click("#listen")
        bob.wait_for_selector("#stop-listening:not([hidden])")
        seen["inbound"] = packets_over(bob, 50)
        # Only the media connection breaks (the WebSocket stays): bob listens again by himself.
        bob.evaluate(
            "() => { const e = window.denoisecast.listening.listens.get('alice'); window.brokenPc = e.pc; e.pc.close(); }"
        )
        bob.wait_for_function(
            """() => { const e = window.denoisecast.listening.listens.get('alice');
                       return e && e.pc !== window.brokenPc && e.pc.connectionState === 'connected'; }""",
            timeout=40000,
        )
        seen["inbound_after_break"] = packets_over(bob, 50)
        # The browser's own side fails (DTLS: the answer's fingerprint is not
        # the server's, once) and the server's word about it is held back:
        # the page notices the failed connection by itself and listens again.
        seen["failed_seen"] = bob.evaluate(FAIL_ONCE)
        bob.wait_for_function(
            """() => { const e = window.denoisecast.listening.listens.get('alice');
                       return e && e.pc !== window.failedPc && e.pc.connectionState === 'connected'; }""",
            timeout=40000,
        )
        seen["inbound_after_failure"] = packets_over(bob, 50)
        bob.evaluate("() => window.restoreEmit()")
        seen["socket_kept"] = bob.evaluate("() => window.denoisecast.socket.open")

        # alice's page goes away and does not come back within the grace period.
        alice.close()
        bob.wait_for_selector("#listen-notice:has-text('went offline')", timeout=30000)
        seen["offline_notice"] = bob.inner_text("#listen-notice")
        seen["listening_after_offline"] = bob.is_visible("#stop-listening")
        checks.check(bob, "friend-went-offline")

        # The recording: its download buttons give files named after it.
        bob.wait_for_selector("#recordings li.recording", timeout=30000)
        seen["recording"] = bob.evaluate(
            "() => fetch('/api/recordings?owner=alice').then(r => r.json()).then(b => b.recordings[0])"
        )
        seen["list_download"] = download(bob, "#recordings li.recording a.button")
        bob.click("#recordings li.recording a.when")
        bob.wait_for_selector(".player audio")
        seen["page_downloads"] = [
            download(bob, "a.button:has-text('Download (noise removed)')"),
            download(bob, "a.button:has-text('Download (original)')"),
        ]
    finally:
        alice_context.close()
        bob_context.close()
    return seen


def shots_saved(test: TestCase, checks: PageChecks) -> None:
    """Every page photographed was saved, at desktop and phone width."""
    import struct

    test.assertTrue(checks.shots)
    for name in checks.shots:
        data = (checks.folder / name).read_bytes()
        test.assertEqual(data[:8], b"\x89PNG\r\n\x1a\n", name)
        width = struct.unpack(">I", data[16:20])[0]
        test.assertEqual(width, 360 if name.endswith("-phone.png") else 1280, name)


class BrowserAppTests(TestCase):
    timeout = 420

    async def start(self, **config: object) -> tuple[RunningServer, str, Any, PageChecks]:
        need_browser()
        running = await start_live(self, **config)
        self.close_browser_connections(running)
        base = running.base.replace("127.0.0.1", "localhost")  # a secure context for getUserMedia
        browser = shared_browser(microphone(self))
        return running, base, browser, PageChecks(screenshot_folder())

    def close_browser_connections(self, running: RunningServer) -> None:
        """
        Chromium keeps idle HTTP connections open after its pages close;
        the server's side of them is closed when the test ends, so the next
        test starts with a clean reactor.
        """
        from twisted.internet import reactor
        from twisted.internet.task import deferLater

        site = running.server.site
        built = site.buildProtocol
        channels: list[Any] = []

        def build(address: Any) -> Any:
            channel = built(address)
            channels.append(channel)
            return channel

        site.buildProtocol = build  # type: ignore[method-assign]

        async def close() -> None:
            for channel in channels:
                transport = getattr(channel, "transport", None)
                if transport is not None and transport.connected:
                    transport.abortConnection()
            await deferLater(reactor, 0.2)
            # The WebSocket's ping and handshake timers live in txaio's
            # batched buckets, which stay scheduled after their calls are
            # cancelled; wait for those buckets to pass (at most the ping
            # timeout) so the reactor is clean for the next test.
            deadline = reactor.seconds() + 30  # type: ignore[attr-defined]
            while reactor.seconds() < deadline and any(  # type: ignore[attr-defined]
                "_BatchedTimer" in getattr(call.func, "__qualname__", "")
                for call in reactor.getDelayedCalls()  # type: ignore[attr-defined]
            ):
                await deferLater(reactor, 0.1)

        self.addCleanup(lambda: Deferred.fromCoroutine(close()))

    async def test_whole_story(self) -> None:
        """
        Two people register, befriend through the pages, one goes live with
        noise removal on; the other sees LIVE without reloading, listens and
        receives audio; the switch, the server and the listener agree on
        every change and the noise floor drops with removal on; a strength
        of 150 is refused in words; leaving asks, a reload re-attaches, a
        second tab shows LIVE; stopping is seen; the recording appears in
        both lists and plays as long as the list says; deleting and
        unfriending ask first; after a short drop of either page's
        connection both come back by themselves; no page has serious
        accessibility problems.
        """
        running, base, browser, checks = await self.start()
        seen = await browser.call(lambda b: whole_story(b, base, checks))
        self.assertEqual(seen["request_badge_after"], "Requests")
        self.assertTrue(seen["denoise_before"])
        self.assertRegex(seen["timer"], r"^00:0[1-9]$")
        self.assertEqual(seen["listeners0"], "0 listening")
        self.assertGreater(seen["inbound"]["packets"], 50, seen)
        self.assertEqual(seen["agreement"], [(False, False, False), (True, True, True)])
        self.assertLess(seen["floor_on"], seen["floor_off"] - 6.0, seen)
        self.assertEqual(seen["after_strength"], (True, [True, 24.0]))
        self.assertIn("between 0 and 100", seen["strength_error"])
        self.assertEqual(seen["strength_shown"], "24")  # back to the server's state
        self.assertRegex(seen["listen_timer"], r"^00:\d\d$")
        self.assertAlmostEqual(seen["volume"], 0.3, places=3)
        self.assertTrue(seen["beforeunload_asks"])
        self.assertTrue(seen["same_broadcast"])
        self.assertTrue(seen["bob_still_listening"])
        self.assertGreater(seen["packets_after_reload"], 100)
        self.assertTrue(seen["same_after_drop"])
        self.assertGreater(seen["packets_after_drop"], 100)
        self.assertIn("LIVE", seen["second_tab"])
        self.assertIn("another tab", seen["second_tab"])
        self.assertIn("ended the broadcast", seen["ended_notice"])
        duration = seen["recording"]["duration_seconds"]
        self.assertLess(abs(seen["player"]["duration"] - duration), 0.5, seen)
        self.assertGreater(seen["player"]["at"], 0.2)
        shown = int(seen["list_bob"].split(":")[0]) * 60 + int(seen["list_bob"].split(":")[1])
        # The list shows whole seconds as the player does (rounded down);
        # the two measures differ by Opus's pre-skip (6.5 ms) at most.
        if int(duration) == int(seen["player"]["duration"]):
            self.assertEqual(shown, int(seen["player"]["duration"]), seen)
        self.assertEqual(shown, int(duration))
        self.assertEqual(seen["list_alice"], seen["list_bob"])
        self.assertIn("noise removal off", seen["timeline"])
        self.assertIn("track=raw", seen["switch"]["src"])  # the original, at the same position
        self.assertLess(abs(seen["switch"]["at"] - 3.0), 0.1, seen["switch"])
        self.assertTrue(seen["delete_asked"])
        self.assertEqual(seen["still_there"], 1)
        self.assertTrue(seen["unfriend_asked"])
        self.assertEqual(seen["still_friends"], 1)
        self.assertEqual(seen["bob_recordings_after"], 0)
        self.assertEqual(checks.violations, {})
        shots_saved(self, checks)
        self.assertEqual(len(running.server.live.broadcasts), 0)
        self.assertFalse(seen["default_denoise"])
        user = await running.server.store.get_user_by_name("alice")
        self.assertFalse((await running.server.store.get_denoise_prefs(user["id"]))["denoise"])
        self.assertEqual((await running.client().login("alice", "a longer horse battery")).status, 200)

    async def test_stranger_missing_and_logged_out(self) -> None:
        """
        A logged-out visit goes to the login page without opening the
        WebSocket; a wrong password, a taken name and a refused microphone
        are told in words; a stranger gets the no-access page (403) with a send
        request button and no audio; a name nobody has gets the 404 page.
        """
        running, base, browser, checks = await self.start()
        client = running.client()
        await client.register("alice")
        seen = await browser.call(lambda b: stranger_and_missing(b, base, checks))
        self.assertEqual(seen["sockets_logged_out"], [])
        self.assertEqual(seen["errors_logged_out"], [])
        self.assertIn("Wrong username or password", seen["wrong_password"])
        self.assertIn("taken", seen["name_taken"])
        self.assertIn("did not allow the microphone", seen["mic_refused"])
        self.assertFalse(seen["live_after_refusal"])
        self.assertEqual(seen["no_access_status"], 403)
        self.assertIn("not friends yet", seen["no_access_text"])
        self.assertEqual(seen["audio_elements"], 0)
        self.assertEqual(seen["missing_status"], 404)
        self.assertIn("nobody called nobody-here", seen["missing_text"])
        self.assertIn("You asked alice", seen["request_sent"])
        self.assertTrue(seen["after_session_ended"].endswith("/login?next=/u/alice"))
        self.assertEqual(checks.violations, {})
        shots_saved(self, checks)
        requests = (await client.get("/api/friends/requests")).body
        self.assertEqual([r["username"] for r in requests["incoming"]], ["carol"])


    async def test_trouble_notifications_and_downloads(self) -> None:
        """
        A missing and a busy microphone are told in words and nothing goes
        live; a friend in a background tab who allowed notifications gets
        one when alice goes live (and Settings says they are on); a notice
        about a friend request goes once it is accepted; a listener whose
        media connection breaks (his WebSocket does not) hears her again by
        himself, whether the server tells him (the connection closed) or
        only his browser knows (DTLS failed); when alice's page goes away
        for longer than the grace period, the listener reads that she went
        offline; the download buttons give the recording's files by their
        names.
        """
        from datetime import UTC, datetime

        running, base, browser, checks = await self.start(reconnect_grace=1.0)
        alice, bob = running.client(), running.client()
        await alice.register("alice", PASSWORD)
        await bob.register("bob", PASSWORD)
        seen = await browser.call(lambda b: trouble(b, base, checks))
        self.assertIn(seen["request_status"], (200, 201))
        self.assertEqual(seen["permission"], "granted")
        self.assertIn("No microphone was found", seen["NotFoundError"])
        self.assertIn("microphone is busy", seen["NotReadableError"])
        self.assertFalse(seen["live_after_NotFoundError"])
        self.assertFalse(seen["live_after_NotReadableError"])
        self.assertEqual(seen["error_after_success"], "")
        self.assertEqual(seen["phone_toggle"], (False, "Friends (1 LIVE)"))
        self.assertEqual(seen["notified"], [["alice is live on DenoiseCast", "Open DenoiseCast to listen."]])
        self.assertGreater(seen["inbound"]["packets"], 50)
        self.assertGreater(seen["inbound_after_break"]["packets"], 50)
        # Only the page's watch on the failed connection can have called reconnect.
        self.assertEqual(seen["failed_seen"]["reconnects"], ["alice"], seen["failed_seen"])
        self.assertTrue(seen["failed_seen"]["socket"])
        self.assertGreater(seen["inbound_after_failure"]["packets"], 50)
        self.assertTrue(seen["socket_kept"])
        self.assertIn("alice went offline", seen["offline_notice"])
        self.assertFalse(seen["listening_after_offline"])
        started = datetime.fromisoformat(seen["recording"]["started_at"]).astimezone(UTC)
        stem = f"alice-{started:%Y-%m-%d-%H%M}"
        self.assertEqual(seen["list_download"], (f"{stem}-denoised.ogg", b"OggS"))
        self.assertEqual(
            seen["page_downloads"], [(f"{stem}-denoised.ogg", b"OggS"), (f"{stem}-raw.ogg", b"OggS")]
        )
        self.assertEqual(checks.violations, {})
        shots_saved(self, checks)
