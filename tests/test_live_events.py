"""
The server's own WebSocket events that keep the pages current without
polling: friend requests, the user's own state (every tab), recordings
appearing and disappearing for exactly the people allowed to see them,
levels for the broadcaster, and a publisher that comes back within the
grace period re-attaching to its running broadcast.
"""

from __future__ import annotations

from twisted.trial.unittest import TestCase

from denoisecast.live.rtc.seam import aio
from tests.rtc_support import answer, listener, noisy_speech_file, publisher
from tests.support import Client, RunningServer
from tests.test_live_manager import start_live, wait_for
from tests.test_presence import befriend, people
from tests.test_recordings import record
from tests.ws_support import WsClient, connect_ws


async def sockets(test: TestCase, running: RunningServer, clients: dict[str, Client]) -> dict[str, WsClient]:
    opened = {}
    for name, client in clients.items():
        opened[name] = await connect_ws(test, running.base, client)
        await opened[name].expect("presence")
        await opened[name].expect("me")
    return opened


class FriendRequestEventTests(TestCase):
    timeout = 30

    async def test_requests_reach_both_sides_only(self) -> None:
        """
        Sending, cancelling, sending again, rejecting and accepting a
        request each reach the pages of both people at once, and nobody
        else's.
        """
        running, c = await people(self)
        ws = await sockets(self, running, c)
        await c["carol"].post("/api/friends/requests", {"username": "alice"})
        self.assertEqual(
            await ws["alice"].expect("friend_request"), {"v": 1, "type": "friend_request", "username": "carol", "direction": "incoming", "state": "pending"},
        )
        outgoing = await ws["carol"].expect("friend_request")
        self.assertEqual((outgoing["username"], outgoing["direction"], outgoing["state"]), ("alice", "outgoing", "pending"))
        await c["carol"].delete("/api/friends/requests/alice")
        self.assertEqual((await ws["alice"].expect("friend_request"))["state"], "cancelled")
        await c["carol"].post("/api/friends/requests", {"username": "alice"})
        await ws["alice"].expect("friend_request", state="pending")
        await c["alice"].post("/api/friends/requests/carol/reject")
        rejected = await ws["carol"].expect("friend_request", state="rejected")
        self.assertEqual((rejected["username"], rejected["direction"]), ("alice", "outgoing"))
        await c["carol"].post("/api/friends/requests", {"username": "alice"})
        await c["alice"].post("/api/friends/requests/carol/accept")
        accepted = await ws["carol"].expect("friend_request", state="accepted")
        self.assertEqual(accepted["username"], "alice")
        self.assertTrue((await ws["carol"].expect("friend"))["friend"]["online"])
        self.assertEqual([m for m in await ws["bob"].silent(0.3) if m["type"] == "friend_request"], [])


class RecordingEventTests(TestCase):
    timeout = 30

    async def test_recordings_appear_and_disappear_for_the_allowed(self) -> None:
        """
        A finished recording is pushed to its owner's pages and the
        owner's friends', never to anyone else; deleting it is pushed the
        same way.
        """
        running, c = await people(self)
        ws = await sockets(self, running, c)
        recording = await record(running, "alice", 1.0)
        for name in ("alice", "bob"):
            ready = await ws[name].expect("recording_ready")
            self.assertEqual((ready["recording"]["id"], ready["recording"]["owner"]), (recording.public_id, "alice"))
            self.assertLess(abs(ready["recording"]["duration_seconds"] - 1.0), 0.05)
        self.assertEqual(await ws["carol"].silent(0.3), [])
        await c["alice"].delete(f"/api/recordings/{recording.public_id}")
        for name in ("alice", "bob"):
            removed = await ws[name].expect("recording_removed")
            self.assertEqual(removed["id"], recording.public_id)
        self.assertEqual(await ws["carol"].silent(0.3), [])


class OwnStateTests(TestCase):
    timeout = 90

    async def test_every_tab_sees_live_denoise_and_levels(self) -> None:
        """
        A second tab of the broadcaster learns the broadcast is live, every
        denoise change and its end; the publishing tab gets level reports
        of both signals; a tab opened while live is told at once.
        """
        running = await start_live(self)
        c = {"alice": running.client(), "bob": running.client()}
        await c["alice"].register("alice")
        await c["bob"].register("bob")
        await befriend(c["alice"], c["bob"], "bob", "alice")
        ws = await sockets(self, running, c)
        other_tab = await connect_ws(self, running.base, c["alice"])
        first = await other_tab.expect("me")
        self.assertEqual((first["live"], first["denoise"], first["atten_lim_db"]), (None, True, 100.0))
        pc, offer = await publisher(self, noisy_speech_file(self))
        reply = await ws["alice"].request({"v": 1, "type": "publish", "sdp": offer})
        await answer(pc, reply["sdp"])
        live = await other_tab.expect("me")
        while live["live"] is None:
            live = await other_tab.expect("me")
        self.assertEqual((live["live"]["user"], live["live"]["detached"]), ("alice", False))
        level = await ws["alice"].expect("level", timeout=10.0)
        self.assertLessEqual(level["denoised_db"], 0.0)
        self.assertGreater(level["raw_db"], -100.0)
        reply = await ws["alice"].request({"v": 1, "type": "denoise", "enabled": False, "atten_lim_db": 20})
        self.assertEqual((reply["enabled"], reply["atten_lim_db"]), (False, 20.0))
        changed = await other_tab.expect("me")
        while changed["denoise"]:
            changed = await other_tab.expect("me")
        self.assertEqual((changed["denoise"], changed["atten_lim_db"]), (False, 20.0))
        third_tab = await connect_ws(self, running.base, c["alice"])
        told = await third_tab.expect("me")
        self.assertEqual((told["live"]["user"], told["denoise"]), ("alice", False))
        await ws["alice"].request({"v": 1, "type": "stop"})
        ended = await other_tab.expect("me")
        while ended["live"] is not None:
            ended = await other_tab.expect("me")
        self.assertEqual([m for m in await ws["bob"].silent(0.2) if m["type"] in ("me", "level")], [])


class ReattachTests(TestCase):
    timeout = 90

    async def test_publisher_comes_back_within_the_grace(self) -> None:
        """
        The page that published goes away (its WebSocket closes, as on a
        reload): the broadcast waits, its listener stays; the same person
        publishing again from a new page re-attaches to the same broadcast
        (same start, same recording), and audio flows again.  A broadcast
        whose publisher does not come back ends when the grace runs out,
        and its listeners are told the broadcaster went offline (`offline`).
        """
        running = await start_live(self, reconnect_grace=3.0)
        c = {"alice": running.client(), "bob": running.client()}
        await c["alice"].register("alice")
        await c["bob"].register("bob")
        await befriend(c["alice"], c["bob"], "bob", "alice")
        ws = await sockets(self, running, c)
        noisy = noisy_speech_file(self)
        pc, offer = await publisher(self, noisy)
        reply = await ws["alice"].request({"v": 1, "type": "publish", "sdp": offer})
        await answer(pc, reply["sdp"])
        broadcast = running.server.live.broadcasts[next(iter(running.server.live.broadcasts))]
        await wait_for(lambda: broadcast.frames_in > 20)
        await ws["alice"].close()
        await wait_for(lambda: broadcast.detached is not None)
        await aio(pc.close())
        reloaded = await connect_ws(self, running.base, c["alice"])
        told = await reloaded.expect("me")
        self.assertTrue(told["live"]["detached"])
        pc2, offer2 = await publisher(self, noisy)
        again = await reloaded.request({"v": 1, "type": "publish", "sdp": offer2})
        self.assertEqual((again["type"], again.get("resumed")), ("answer", True), again)
        self.assertEqual(again["stream"]["live_since"], reply["stream"]["live_since"])
        await answer(pc2, again["sdp"])
        self.assertIs(running.server.live.broadcasts[broadcast.user["id"]], broadcast)
        frames = broadcast.frames_in
        await wait_for(lambda: broadcast.frames_in > frames + 20)
        self.assertIsNone(broadcast.detached)
        self.assertEqual((await c["bob"].get("/api/streams/alice")).body["live"], True)
        # A second publish while attached is still refused.
        pc3, offer3 = await publisher(self, noisy)
        refused = await reloaded.request({"v": 1, "type": "publish", "sdp": offer3})
        self.assertEqual(refused["code"], "already_live")
        # bob listens; when alice's page goes for good he is told she went offline.
        lpc, loffer, _ = await listener(self)
        listening = await ws["bob"].request({"v": 1, "type": "listen", "user": "alice", "sdp": loffer})
        self.assertEqual(listening["type"], "answer", listening)
        await answer(lpc, listening["sdp"])
        await reloaded.close()
        gone = await ws["bob"].expect("ended", timeout=10.0)
        self.assertEqual((gone["role"], gone["user"], gone["reason"]), ("listen", "alice", "offline"))
        ended = await ws["bob"].expect("friend", timeout=10.0)
        while ended["friend"]["live"]:
            ended = await ws["bob"].expect("friend", timeout=10.0)
        self.assertEqual(running.server.live.broadcasts, {})
