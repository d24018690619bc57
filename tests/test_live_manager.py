"""
Going live and listening through the live manager, in-process, with real
aiortc peers, the real engine and the WebSocket: one stream per user,
friends only, bad offers refused, clean ends.
"""

from __future__ import annotations

import re

from twisted.internet import reactor
from twisted.internet.task import deferLater
from twisted.trial.unittest import TestCase

from tests.rtc_support import answer, listener, noisy_speech_file, publisher
from tests.support import RunningServer, start_server
from tests.test_presence import befriend
from tests.ws_support import WsClient, connect_ws


async def start_live(test: TestCase, **config: object) -> RunningServer:
    """An in-process server: start_server starts the whole tree, the model and the live manager included."""
    return await start_server(test, **config)


async def wait_for(predicate, timeout: float = 10.0) -> None:  # type: ignore[no-untyped-def]
    for _ in range(int(timeout / 0.05)):
        if predicate():
            return
        await deferLater(reactor, 0.05)
    raise AssertionError("condition not met in time")


class LiveManagerTests(TestCase):
    timeout = 60

    async def setup_people(self, **config: object) -> tuple[RunningServer, dict[str, WsClient]]:
        running = await start_live(self, **config)
        clients = {}
        for name in ("alice", "bob", "carol"):
            clients[name] = running.client()
            await clients[name].register(name)
        await befriend(clients["alice"], clients["bob"], "bob", "alice")
        sockets = {}
        for name, client in clients.items():
            sockets[name] = await connect_ws(self, running.base, client)
            await sockets[name].expect("presence")
            await sockets[name].expect("me")
        return running, sockets

    async def test_unfriend_ends_listening(self) -> None:
        """
        A listener who is unfriended is cut off at once (told "unfriended"),
        the broadcaster's listener count drops, and the broadcast goes on.
        """
        noisy = noisy_speech_file(self)
        running, ws = await self.setup_people()
        pc, offer = await publisher(self, noisy)
        reply = await ws["alice"].request({"v": 1, "type": "publish", "sdp": offer})
        await answer(pc, reply["sdp"])
        lpc, loffer, recorder = await listener(self)
        heard = await ws["bob"].request({"v": 1, "type": "listen", "user": "alice", "sdp": loffer})
        await answer(lpc, heard["sdp"])
        self.assertEqual((await ws["alice"].expect("listeners"))["count"], 1)
        alice_http = running.client()
        await alice_http.login("alice")
        self.assertEqual((await alice_http.delete("/api/friends/bob")).status, 204)
        ended = await ws["bob"].expect("ended", timeout=1.0)
        self.assertEqual((ended["role"], ended["reason"]), ("listen", "unfriended"))
        self.assertEqual((await ws["alice"].expect("listeners", timeout=1.0))["count"], 0)
        self.assertEqual(len(running.server.live.broadcasts), 1)
        metrics = (await alice_http.get("/metrics")).body.decode()
        self.assertIn("denoisecast_live_streams 1.0", metrics)
        self.assertIn("denoisecast_live_listeners 0.0", metrics)

    async def test_publish_listen_and_stop(self) -> None:
        """
        A publisher goes live, a friend listens and hears audio, a second
        publish is a 409, a non-friend gets 403; denoise off and a 12 dB
        limit are pushed to the friend within 1 s and remembered; the
        listener switches to the raw signal and keeps hearing; stop ends it
        for everyone.
        """
        noisy = noisy_speech_file(self)
        running, ws = await self.setup_people()
        pc, offer = await publisher(self, noisy)
        reply = await ws["alice"].request({"v": 1, "type": "publish", "sdp": offer})
        self.assertEqual(reply["type"], "answer", reply)
        self.assertTrue(reply["stream"]["live"])
        self.assertTrue(reply["stream"]["denoise"])
        await answer(pc, reply["sdp"])
        live = await ws["bob"].expect("friend", timeout=1.0)
        while not live["friend"]["live"]:
            live = await ws["bob"].expect("friend", timeout=1.0)
        self.assertIsNotNone(live["friend"]["live_since"])
        self.assertEqual(await ws["carol"].silent(0.1), [])

        pc2, offer2 = await publisher(self, noisy)
        again = await ws["alice"].request({"v": 1, "type": "publish", "sdp": offer2})
        self.assertEqual((again["type"], again["status"], again["code"]), ("error", 409, "already_live"))

        lpc, loffer, recorder = await listener(self)
        heard = await ws["bob"].request({"v": 1, "type": "listen", "user": "alice", "sdp": loffer})
        self.assertEqual(heard["type"], "answer", heard)
        await answer(lpc, heard["sdp"])
        self.assertEqual((await ws["alice"].expect("listeners"))["count"], 1)
        _, coffer, _ = await listener(self)
        refused = await ws["carol"].request({"v": 1, "type": "listen", "user": "alice", "sdp": coffer})
        self.assertEqual((refused["status"], refused["code"]), (403, "not_friends"))
        await wait_for(lambda: recorder.samples > 48000, 15)

        toggled = await ws["alice"].request({"v": 1, "type": "denoise", "enabled": False, "atten_lim_db": 12})
        self.assertEqual((toggled["type"], toggled["enabled"], toggled["atten_lim_db"]), ("denoise", False, 12.0))
        pushed = await ws["bob"].expect("friend", timeout=1.0)
        while pushed["friend"]["denoise"] is not False:
            pushed = await ws["bob"].expect("friend", timeout=1.0)
        self.assertEqual(pushed["friend"]["atten_lim_db"], 12.0)
        alice_id = (await running.server.store.get_user_by_name("alice"))["id"]
        self.assertEqual(
            await running.server.store.get_denoise_prefs(alice_id), {"denoise": False, "atten_lim_db": 12.0}
        )
        switched = await ws["bob"].request({"v": 1, "type": "signal", "user": "alice", "signal": "raw"})
        self.assertEqual(switched["signal"], "raw")
        before = recorder.samples
        await wait_for(lambda: recorder.samples > before + 24000, 10)
        status = await ws["carol"].request({"v": 1, "type": "denoise", "enabled": True})
        self.assertEqual(status["enabled"], True)

        stopped = await ws["alice"].request({"v": 1, "type": "stop"})
        self.assertEqual(stopped["type"], "stopped")
        ended = await ws["bob"].expect("ended")
        self.assertEqual((ended["role"], ended["user"], ended["reason"]), ("listen", "alice", "ended"))
        self.assertEqual(running.server.live.broadcasts, {})
        self.assertEqual(running.server.scheduler.stats.streams, 0)

    async def test_dtls_failure_ends_the_broadcast(self) -> None:
        """
        A publisher whose DTLS handshake fails (its offer names another
        certificate's fingerprint, so the server rejects the one it is
        shown) is ended once its connection fails and no new one comes
        within the grace period: the publisher is told why, friends see it
        go offline, the engine slot is freed.
        """
        noisy = noisy_speech_file(self)
        running, ws = await self.setup_people(reconnect_grace=0.5)
        pc, offer = await publisher(self, noisy)
        forged, count = re.subn(
            r"(a=fingerprint:[\w-]+ )([0-9A-Fa-f]{2})",
            lambda m: m.group(1) + ("00" if m.group(2) != "00" else "11"),
            offer,
        )
        self.assertGreater(count, 0)
        reply = await ws["alice"].request({"v": 1, "type": "publish", "sdp": forged})
        self.assertEqual(reply["type"], "answer", reply)
        await answer(pc, reply["sdp"])
        ended = await ws["alice"].expect("ended", timeout=10.0)
        self.assertEqual((ended["role"], ended["reason"]), ("publish", "connection_lost"))
        self.assertEqual(running.server.live.broadcasts, {})
        self.assertEqual(running.server.scheduler.stats.streams, 0)
        update = await ws["bob"].expect("friend", timeout=1.0)
        while update["friend"]["live"]:
            update = await ws["bob"].expect("friend", timeout=1.0)
        self.assertFalse(update["friend"]["live"])

    async def test_going_live_and_listening_over_http(self) -> None:
        """
        A client without the WebSocket goes live and listens with one POST
        each (offer in, answer out, as documented), hears audio, is refused
        like on the WebSocket (409, 403, 400), and stops both with DELETE.
        """
        from jsonschema import Draft202012Validator

        from denoisecast.web.openapi import DOCUMENT

        def conforms(schema: str, body: object) -> None:
            validator = Draft202012Validator({"$ref": f"#/components/schemas/{schema}", **DOCUMENT})
            self.assertEqual([e.message for e in validator.iter_errors(body)], [])

        noisy = noisy_speech_file(self)
        running, ws = await self.setup_people()
        alice, bob, carol = running.client(), running.client(), running.client()
        for name, client in (("alice", alice), ("bob", bob), ("carol", carol)):
            await client.login(name)
        pc, offer = await publisher(self, noisy)
        live = await alice.post("/api/streams/alice", {"sdp": offer})
        self.assertEqual(live.status, 201, live.body)
        conforms("PublishAnswer", live.body)
        await answer(pc, live.body["sdp"])
        update = await ws["bob"].expect("friend", timeout=1.0)
        while not update["friend"]["live"]:
            update = await ws["bob"].expect("friend", timeout=1.0)
        _, offer2 = await publisher(self, noisy)
        self.assertEqual((await alice.post("/api/streams/alice", {"sdp": offer2})).error_code, "already_live")
        self.assertEqual((await bob.post("/api/streams/alice", {"sdp": offer2})).error_code, "not_yours")

        lpc, loffer, recorder = await listener(self)
        heard = await bob.post("/api/streams/alice/listen", {"sdp": loffer, "signal": "raw"})
        self.assertEqual(heard.status, 201, heard.body)
        conforms("ListenAnswer", heard.body)
        await answer(lpc, heard.body["sdp"])
        await wait_for(lambda: recorder.samples > 24000, 15)
        self.assertEqual((await bob.get("/api/streams/alice")).body["listeners"], 1)
        _, coffer, _ = await listener(self)
        refused = await carol.post("/api/streams/alice/listen", {"sdp": coffer})
        self.assertEqual((refused.status, refused.error_code), (403, "not_friends"))
        garbage = await bob.post("/api/streams/alice/listen", {"sdp": "nonsense"})
        self.assertEqual((garbage.status, garbage.error_code), (400, "bad_sdp"))
        self.assertEqual(len(running.server.live.broadcasts[live_id(running, "alice")].listeners), 1)

        self.assertEqual((await bob.delete("/api/streams/alice/listen")).status, 204)
        self.assertEqual((await bob.get("/api/streams/alice")).body["listeners"], 0)
        self.assertEqual((await alice.delete("/api/streams/alice")).status, 204)
        self.assertEqual(running.server.live.broadcasts, {})
        self.assertFalse((await bob.get("/api/streams/alice")).body["live"])


def live_id(running: RunningServer, username: str) -> int:
    return next(uid for uid, b in running.server.live.broadcasts.items() if b.user["username"] == username)
