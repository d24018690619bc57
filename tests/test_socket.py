"""
The WebSocket's handshake and hostile inputs: no session, wrong Origin,
garbage, oversized and binary frames, bad offers, requests that are not
allowed; none of it crashes anything or reaches another user.
"""

from __future__ import annotations

from twisted.internet import reactor
from twisted.internet.task import deferLater
from twisted.internet.threads import deferToThread
from twisted.trial.unittest import TestCase

from tests.rtc_support import answer, publisher
from tests.test_live_manager import start_live
from tests.test_presence import people
from tests.ws_support import connect_ws


class HandshakeTests(TestCase):
    timeout = 30

    async def test_refused_before_a_protocol_exists(self) -> None:
        """
        No cookie, a forged cookie, a foreign Origin or no Origin: the
        handshake is refused (401/403) and nothing is registered.
        """
        running, c = await people(self)
        for kwargs in (
            {"client": None},
            {"client": None, "cookie": "dc_session=forged"},
            {"client": c["alice"], "origin": "http://evil.example"},
            {"client": c["alice"], "origin": None},
        ):
            with self.assertRaises(ConnectionError):
                await connect_ws(self, running.base, **kwargs)  # type: ignore[arg-type]
        self.assertEqual(running.server.signaling.connections, set())
        self.assertFalse(running.server.presence.is_online(1))


class SessionEndTests(TestCase):
    timeout = 60

    async def test_logout_closes_that_sessions_sockets(self) -> None:
        """
        Logging out closes the WebSockets opened with that session (close
        code 4001), at once; the same user's other sessions keep theirs.
        """
        running, c = await people(self)
        phone = running.client()
        self.assertEqual((await phone.login("alice")).status, 200)
        laptop_ws = await connect_ws(self, running.base, c["alice"])
        second_tab = await connect_ws(self, running.base, c["alice"])
        phone_ws = await connect_ws(self, running.base, phone)
        await phone_ws.expect("presence")
        self.assertEqual((await c["alice"].post("/api/auth/logout")).status, 204)
        closed = await laptop_ws.factory.closed.addTimeout(5, reactor)
        self.assertEqual(closed, 4001)
        self.assertEqual(await second_tab.factory.closed.addTimeout(5, reactor), 4001)
        self.assertEqual((await phone_ws.request({"v": 1, "type": "ping"}))["type"], "pong")
        self.assertEqual(len(running.server.signaling.connections), 1)

    async def test_logout_during_the_handshake(self) -> None:
        """
        A socket whose handshake is still looking the session up when the
        session ends is refused (401) instead of opening with it.
        """
        from twisted.internet.defer import Deferred

        running, c = await people(self)
        factory = running.server.signaling
        real = factory.authenticate
        held: Deferred[None] = Deferred()
        asked: Deferred[None] = Deferred()

        async def slow(token: str) -> object:
            user = await real(token)  # found: the session is still there
            asked.callback(None)
            await held
            return user

        factory.authenticate = slow
        self.addCleanup(setattr, factory, "authenticate", real)
        connecting = Deferred.fromCoroutine(connect_ws(self, running.base, c["alice"]))
        await asked
        self.assertEqual((await c["alice"].post("/api/auth/logout")).status, 204)
        held.callback(None)
        with self.assertRaises(ConnectionError) as refused:
            await connecting
        self.assertIn("401", str(refused.exception))
        self.assertEqual(factory.connections, set())

    async def test_password_change_closes_other_sessions_sockets(self) -> None:
        """
        A password change closes the sockets of every other session of the
        user (4001); the socket of the session that changed it stays open,
        and nobody else's is touched.
        """
        running, c = await people(self)
        phone = running.client()
        self.assertEqual((await phone.login("alice")).status, 200)
        laptop_ws = await connect_ws(self, running.base, c["alice"])
        phone_ws = await connect_ws(self, running.base, phone)
        bob_ws = await connect_ws(self, running.base, c["bob"])
        await bob_ws.expect("presence")
        changed = await c["alice"].post(
            "/api/auth/password",
            {"current_password": "correct horse", "new_password": "new horse!"},
        )
        self.assertEqual(changed.status, 204)
        self.assertEqual(await phone_ws.factory.closed.addTimeout(5, reactor), 4001)
        self.assertEqual((await laptop_ws.request({"v": 1, "type": "ping"}))["type"], "pong")
        self.assertEqual((await bob_ws.request({"v": 1, "type": "ping"}))["type"], "pong")
        # The new session works for a new socket too.
        again = await connect_ws(self, running.base, c["alice"])
        self.assertEqual((await again.request({"v": 1, "type": "ping"}))["type"], "pong")


class HostileInputTests(TestCase):
    timeout = 60

    async def test_bad_messages_get_errors(self) -> None:
        """
        Garbage, wrong versions, unknown types and fields, wrong types, and
        requests nobody may make are answered with error messages; the
        connection stays usable and a friend sees nothing.
        """
        running, c = await people(self)
        alice = await connect_ws(self, running.base, c["alice"])
        bob = await connect_ws(self, running.base, c["bob"])
        await alice.expect("presence")
        await bob.expect("presence")
        await bob.expect("me")
        await alice.expect("friend")
        cases = [
            (b"not json", "bad_json"),
            (b"[1, 2]", "bad_json"),
            ({"v": 2, "type": "ping"}, "bad_version"),
            ({"v": 1, "type": "explode"}, "unknown_type"),
            ({"v": 1, "type": "ping", "extra": 1}, "unknown_field"),
            ({"v": 1, "type": "listen", "user": "bob"}, "missing_field"),
            ({"v": 1, "type": "listen", "user": 5, "sdp": "x"}, "bad_field"),
            ({"v": 1, "type": "denoise", "enabled": "yes"}, "bad_field"),
            ({"v": 1, "type": "denoise", "atten_lim_db": 500}, "bad_field"),
            ({"v": 1, "type": "listen", "user": "bob", "sdp": "x", "signal": "loud"}, "bad_field"),
        ]
        for message, code in cases:
            alice.send(message)
            reply = await alice.expect("error")
            self.assertEqual(reply["code"], code, message)
        for message, status, code in [
            ({"v": 1, "type": "stop"}, 404, "not_live"),
            ({"v": 1, "type": "listen", "user": "bob", "sdp": "v=0"}, 404, "not_live"),
            ({"v": 1, "type": "listen", "user": "carol", "sdp": "v=0"}, 403, "not_friends"),
            ({"v": 1, "type": "listen", "user": "nobody", "sdp": "v=0"}, 403, "not_friends"),
            ({"v": 1, "type": "unlisten", "user": "bob"}, 404, "not_listening"),
            ({"v": 1, "type": "signal", "user": "bob", "signal": "raw"}, 404, "not_listening"),
        ]:
            reply = await alice.request(message)
            self.assertEqual((reply["type"], reply["status"], reply["code"]), ("error", status, code))
        self.assertEqual((await alice.request({"v": 1, "type": "ping"}))["type"], "pong")
        self.assertEqual(await bob.silent(0.2), [])

    async def test_errors_echo_the_request_id(self) -> None:
        """
        Validation errors and rate-limit errors carry the id of the message
        they answer (docs/live.md: every reply does), so a page can tell
        the person which of its requests failed instead of waiting forever.
        """
        running, c = await people(self)
        alice = await connect_ws(self, running.base, c["alice"])
        await alice.expect("presence")
        reply = await alice.request({"v": 1, "type": "denoise", "atten_lim_db": 150})
        self.assertEqual((reply["type"], reply["code"]), ("error", "bad_field"))
        reply = await alice.request({"v": 1, "type": "denoise", "atten_lim_db": -5})
        self.assertEqual((reply["type"], reply["code"]), ("error", "bad_field"))
        reply = await alice.request({"v": 1, "type": "explode"})
        self.assertEqual((reply["type"], reply["code"]), ("error", "unknown_type"))
        for n in range(40):  # more than a second's allowance at once
            alice.send({"v": 1, "type": "ping", "id": f"burst{n}"})
        limited = await alice.expect("error", code="rate_limited")
        self.assertEqual(limited["status"], 429)
        self.assertTrue(str(limited.get("id", "")).startswith("burst"), limited)

    async def test_oversized_and_binary_frames_close(self) -> None:
        """
        A message over 64 KiB closes with 1009, a binary frame with 4003,
        a text frame that is not UTF-8 with 1007; other users' connections
        are untouched.
        """
        running, c = await people(self)
        # Failing a connection arms a close-handshake timer that outlives
        # it; keep it short so the test can wait it out, but long enough
        # for a loaded machine's client to answer the close (else the
        # server drops it first and the client sees 1006).
        running.server.signaling.setProtocolOptions(closeHandshakeTimeout=2.0)
        bob = await connect_ws(self, running.base, c["bob"])
        await bob.expect("presence")
        big = await connect_ws(self, running.base, c["alice"])
        big.send(b'{"v":1,"type":"ping","id":"' + b"x" * 70000 + b'"}')
        self.assertEqual(await big.factory.closed, 1009)
        binary = await connect_ws(self, running.base, c["alice"])
        binary.protocol.sendMessage(b"\x00\x01", isBinary=True)
        self.assertEqual(await binary.factory.closed, 4003)
        bad_text = await connect_ws(self, running.base, c["alice"])
        bad_text.send(b"\xff\xfe")
        self.assertEqual(await bad_text.factory.closed, 1007)
        self.assertEqual((await bob.request({"v": 1, "type": "ping"}))["type"], "pong")
        await deferLater(reactor, 2.2)


class HostileOfferTests(TestCase):
    timeout = 60

    async def test_bad_offers_and_vanishing_publisher(self) -> None:
        """
        Invalid SDP and an offer with no audio are 400s and leave nothing
        behind; a publisher whose media stops without a goodbye is ended by
        the silence timeout, and its friends are told it is no longer live.
        """
        running = await start_live(self, silence_timeout=1.0)
        from tests.support import Client
        from tests.test_presence import befriend

        alice, bob = running.client(), running.client()
        await alice.register("alice")
        await bob.register("bob")
        await befriend(alice, bob, "bob", "alice")
        ws = await connect_ws(self, running.base, alice)
        watcher = await connect_ws(self, running.base, bob)
        await watcher.expect("presence")
        reply = await ws.request({"v": 1, "type": "publish", "sdp": "this is not sdp"})
        self.assertEqual((reply["status"], reply["code"]), (400, "bad_sdp"))
        _, no_audio = await publisher(self, None)
        reply = await ws.request({"v": 1, "type": "publish", "sdp": no_audio})
        self.assertEqual((reply["status"], reply["code"]), (400, "no_audio"))
        self.assertEqual(running.server.live.broadcasts, {})
        self.assertEqual(running.server.scheduler.stats.streams, 0)

        # An offer whose sender never connects: no audio ever arrives.
        from tests.rtc_support import noisy_speech_file

        noisy = noisy_speech_file(self)
        _, offer = await publisher(self, noisy)
        reply = await ws.request({"v": 1, "type": "publish", "sdp": offer})
        self.assertEqual(reply["type"], "answer")
        live = await watcher.expect("friend")
        while not live["friend"]["live"]:
            live = await watcher.expect("friend")
        ended = await ws.expect("ended", timeout=5.0)
        self.assertEqual(ended["reason"], "silence")
        gone = await watcher.expect("friend", timeout=1.0)
        self.assertFalse(gone["friend"]["live"])
        self.assertEqual(running.server.scheduler.stats.streams, 0)
        del Client


def split_sdp(sdp: str) -> tuple[str, list[str]]:
    """The session part of an SDP and its media sections, each as text."""
    head, *media = sdp.split("\r\nm=")
    return head + "\r\n", ["m=" + section.rstrip("\r\n") + "\r\n" for section in media]


async def recording_rows(running: object) -> int:
    from sqlalchemy import func, select

    from denoisecast.storage.tables import recordings

    return await running.server.database.read(  # type: ignore[attr-defined]
        lambda c: c.execute(select(func.count()).select_from(recordings)).scalar_one()
    )


class OfferValidationTests(TestCase):
    timeout = 60

    async def test_unusable_offers_refused_before_answering(self) -> None:
        """
        An offer with its audio section repeated twelve times, and one
        without a DTLS fingerprint, are 400 bad_sdp before any answer: no
        broadcast starts, nothing is recorded, nothing is logged as a bug,
        and a good offer still works afterwards.
        """
        from tests.rtc_support import noisy_speech_file

        running = await start_live(self)
        alice = running.client()
        await alice.register("alice")
        ws = await connect_ws(self, running.base, alice)
        noisy = noisy_speech_file(self)
        _, offer = await publisher(self, noisy)
        head, media = split_sdp(offer)
        self.assertEqual(len(media), 1)
        repeated = head + media[0] * 12
        no_fingerprint = "".join(
            line + "\r\n" for line in offer.split("\r\n") if line and not line.startswith("a=fingerprint")
        )
        for sdp, words in [(repeated, "12 media sections"), (head + media[0] * 2, "2 audio sections"), (no_fingerprint, "fingerprint")]:
            reply = await ws.request({"v": 1, "type": "publish", "sdp": sdp})
            self.assertEqual((reply["type"], reply["status"], reply["code"]), ("error", 400, "bad_sdp"), reply)
            self.assertIn(words, reply["message"])
            self.assertEqual(running.server.live.broadcasts, {})
            self.assertEqual(running.server.scheduler.stats.streams, 0)
        self.assertEqual(await recording_rows(running), 0)
        self.assertEqual(self.flushLoggedErrors(), [])
        reply = await ws.request({"v": 1, "type": "publish", "sdp": offer})
        self.assertEqual(reply["type"], "answer", reply)

    async def test_broadcast_without_audio_leaves_no_recording(self) -> None:
        """
        A broadcast whose publisher never sends audio (its peer never takes
        the answer) ends on silence and leaves no recording row or file.
        """
        from tests.rtc_support import noisy_speech_file

        running = await start_live(self, silence_timeout=1.0)
        alice = running.client()
        await alice.register("alice")
        ws = await connect_ws(self, running.base, alice)
        _, offer = await publisher(self, noisy_speech_file(self))
        reply = await ws.request({"v": 1, "type": "publish", "sdp": offer})
        self.assertEqual(reply["type"], "answer")
        ended = await ws.expect("ended", timeout=10.0)
        self.assertEqual(ended["reason"], "silence")
        from tests.test_live_manager import wait_for

        await wait_for(lambda: not running.server.recorder.active)
        self.assertEqual(await recording_rows(running), 0)
        self.assertEqual((await alice.get("/api/recordings")).body["recordings"], [])
        folder = running.server.recorder.data_dir / "recordings"
        self.assertEqual([p for p in folder.rglob("*") if p.is_file()] if folder.exists() else [], [])


class VanishingPublisherTests(TestCase):
    timeout = 90

    async def test_publisher_frozen_mid_broadcast(self) -> None:
        """
        A publisher whose process freezes mid-broadcast (SIGSTOP: its media,
        its pings and its TCP connection all go quiet, nothing is closed) is
        ended by the silence timeout: its listener is told, its friends see
        it is no longer live, its engine slot is freed, and its recording is
        finalised with the audio that came.  Killing it later changes nothing.
        """
        import os
        import signal
        import subprocess
        import sys
        from pathlib import Path

        from tests.rtc_support import listener, noisy_speech_file
        from tests.support import finalised_recordings
        from tests.test_presence import befriend

        running = await start_live(self, silence_timeout=1.5)
        alice, bob = running.client(), running.client()
        await alice.register("alice")
        await bob.register("bob")
        await befriend(alice, bob, "bob", "alice")
        watcher = await connect_ws(self, running.base, bob)
        await watcher.expect("presence")
        wav = noisy_speech_file(self)
        script = Path(__file__).with_name("publisher_process.py")
        process = subprocess.Popen(
            [sys.executable, str(script), running.base, alice.cookie("dc_session") or "", str(wav)],
            stdout=subprocess.PIPE,
            env={**os.environ, "PYTHONPATH": str(script.parent.parent)},
        )

        def kill() -> None:
            if process.poll() is None:
                process.kill()
                process.wait(10)
            process.stdout.close()  # type: ignore[union-attr]

        self.addCleanup(kill)
        line = await deferToThread(process.stdout.readline)  # type: ignore[union-attr]
        self.assertEqual(line.strip(), b"live")
        live = await watcher.expect("friend")
        while not live["friend"]["live"]:
            live = await watcher.expect("friend")

        pc, offer, heard = await listener(self)
        reply = await watcher.request({"v": 1, "type": "listen", "user": "alice", "sdp": offer})
        self.assertEqual(reply["type"], "answer", reply)
        await answer(pc, reply["sdp"])
        broadcast = next(iter(running.server.live.broadcasts.values()))
        for _ in range(100):  # media flows: the listener hears something
            if heard.samples > 48000 and broadcast.frames_in > 50:
                break
            await deferLater(reactor, 0.1)
        self.assertGreater(heard.samples, 48000)
        recording = broadcast.recording

        os.kill(process.pid, signal.SIGSTOP)
        frozen_at = reactor.seconds()
        ended = await watcher.expect("ended", timeout=10.0)
        self.assertEqual((ended["role"], ended["user"]), ("listen", "alice"))
        gone = await watcher.expect("friend", timeout=5.0)
        while gone["friend"]["live"]:
            gone = await watcher.expect("friend", timeout=5.0)
        self.assertLess(reactor.seconds() - frozen_at, 6.0)
        self.assertEqual(running.server.live.broadcasts, {})
        self.assertEqual(running.server.scheduler.stats.streams, 0)
        rows = await finalised_recordings(alice)  # once the peer connection is closed
        self.assertEqual([r["status"] for r in rows], ["complete"])
        self.assertFalse(recording.active)
        self.assertGreater(rows[0]["duration_seconds"], 0.5)

        os.kill(process.pid, signal.SIGKILL)
        process.wait(10)
        await deferLater(reactor, 0.5)
        self.assertEqual((await watcher.request({"v": 1, "type": "ping"}))["type"], "pong")
