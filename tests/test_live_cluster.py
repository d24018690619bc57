"""
Two nodes in this process on one PostgreSQL database and one live bus,
the same tests on both buses (in-process broker, real Redis): presence,
friendships, ended sessions and login and token limits cross nodes (and,
on Redis, reach a node started later); a friend on one node listens to a
broadcast on the other (media straight from the owner), over the WebSocket
or plain HTTP; a page reloaded onto the other node re-attaches to its
broadcast; a node that dies is noticed within its time to live and its
rows are repaired once, but a node only cut off from the bus keeps its
recordings; a node that starts leaves the other's live rows alone.
"""

from __future__ import annotations

import time
from ipaddress import ip_network
from typing import Any

from twisted.internet import reactor
from twisted.internet.task import deferLater
from twisted.trial.unittest import TestCase

from denoisecast.handlers.accounts import utcnow
from denoisecast.live.rtc.seam import aio
from tests.bus_support import Nodes
from tests.test_bus_failures import eventually, stored_key
from tests.rtc_support import answer, listener, noisy_speech_file, publisher
from tests.support import Client, RunningServer, finalised_recordings, postgres_url, start_server
from tests.test_bus import wait_for
from tests.ws_support import connect_ws

TTL = 2.0


class ClusterTestsMixin:
    kind = ""
    timeout = 60

    async def two_nodes(self, **config: Any) -> tuple[Nodes, RunningServer, RunningServer]:
        test: Any = self
        nodes = Nodes(test, self.kind, ttl=TTL)
        database = postgres_url(test)
        a = await start_server(test, database, bus=nodes.bus("node-a"), **config)
        b = await start_server(test, database, bus=nodes.bus("node-b"), **config)
        await wait_for(lambda: a.server.bus.connected and b.server.bus.connected, 5.0)
        return nodes, a, b

    async def friends(self, a: RunningServer, b: RunningServer) -> dict[str, Client]:
        """alice registers on node A, bob on node B; they befriend across the nodes."""
        alice, bob = a.client(), b.client()
        await alice.register("alice")
        await bob.register("bob")
        await alice.post("/api/friends/requests", {"username": "bob"})
        reply = await bob.post("/api/friends/requests/alice/accept")
        assert reply.status == 200, reply
        return {"alice": alice, "bob": bob}

    async def test_presence_crosses_nodes_within_a_second(self) -> None:
        """
        alice's page on node A sees bob come online on node B within 1 s
        and go offline when his page closes; a second tab of bob's on node
        A keeps him online when his node B page closes.
        """
        test: Any = self
        _, a, b = await self.two_nodes()
        c = await self.friends(a, b)
        alice = await connect_ws(test, a.base, c["alice"])
        snapshot = await alice.expect("presence")
        test.assertFalse(snapshot["friends"][0]["online"])
        start = time.monotonic()
        bob = await connect_ws(test, b.base, c["bob"])
        update = await alice.expect("friend", timeout=1.0)
        test.assertLess(time.monotonic() - start, 1.0)
        test.assertEqual((update["friend"]["username"], update["friend"]["online"]), ("bob", True))
        # bob's page on B sees alice (on A) online in its snapshot.
        bob_snapshot = await bob.expect("presence")
        test.assertTrue(bob_snapshot["friends"][0]["online"])
        tab = await connect_ws(test, a.base, c["bob"])  # the same session, on the other node
        await tab.expect("presence")
        await bob.close()
        offline = [m for m in await alice.silent(0.5) if m["type"] == "friend" and not m["friend"]["online"]]
        test.assertEqual(offline, [])
        test.assertTrue(a.server.presence.is_online(await _id(a, "bob")))
        await tab.close()
        update = await alice.expect("friend", timeout=2.0)
        test.assertFalse(update["friend"]["online"])

    async def test_friendships_and_logouts_cross_nodes(self) -> None:
        """
        Unfriending on node B reaches alice's page on node A at once; a
        logout on node B closes that session's socket on node A (4001).
        """
        test: Any = self
        _, a, b = await self.two_nodes()
        c = await self.friends(a, b)
        alice = await connect_ws(test, a.base, c["alice"])
        await alice.expect("presence")
        reply = await c["bob"].delete("/api/friends/alice")
        test.assertEqual(reply.status, 204, reply)
        removed = await alice.expect("friend_removed", timeout=2.0)
        test.assertEqual(removed["username"], "bob")
        # alice logs in on node B too; logging out there ends her node A socket of that session.
        alice_b = b.client()
        await alice_b.login("alice")
        socket_a = await connect_ws(test, a.base, alice_b)
        await socket_a.expect("presence")
        await alice_b.post("/api/auth/logout")
        code = await socket_a.factory.closed.addTimeout(3, reactor)
        test.assertEqual(code, 4001)
        test.assertFalse(alice.factory.closed.called)  # her other session goes on

    async def test_listening_through_another_node(self) -> None:
        """
        bob, connected to node A, listens to alice broadcasting on node B:
        the offer goes over the bus to B, whose answer carries B's ICE
        candidates; bob hears audio (from B: node A holds no media
        connection); alice's listener count reaches every node; the signal
        switch and unlisten through A reach B; and when node B dies, bob's
        page on A is told the listen ended.  alice's own page on node A
        shows her live.
        """
        import aioice.ice

        test: Any = self
        test.patch(aioice.ice, "get_host_addresses", lambda use_ipv4, use_ipv6: ["127.0.0.1"] if use_ipv4 else [])
        _, a, b = await self.two_nodes(ice_allow_networks=(ip_network("127.0.0.0/8"),))
        c = await self.friends(a, b)
        noisy = noisy_speech_file(test)
        alice_b = b.client()
        await alice_b.login("alice")
        alice_ws = await connect_ws(test, b.base, alice_b)
        pc, offer = await publisher(test, noisy)
        reply = await alice_ws.request({"v": 1, "type": "publish", "sdp": offer})
        test.assertEqual(reply["type"], "answer", reply)
        await answer(pc, reply["sdp"])
        bob_ws = await connect_ws(test, a.base, c["bob"])
        await bob_ws.expect("presence")
        # alice's own page on node A shows her live, as a second tab would.
        alice_a = await connect_ws(test, a.base, c["alice"])
        me = await alice_a.expect("me")
        test.assertEqual((me["live"]["live"], me["live"]["user"]), (True, "alice"), me)
        lpc, loffer, heard = await listener(test)
        listened = await bob_ws.request({"v": 1, "type": "listen", "user": "alice", "sdp": loffer})
        test.assertEqual((listened["type"], listened["role"]), ("answer", "listen"), listened)
        await answer(lpc, listened["sdp"])
        await wait_for(lambda: heard.samples > 48000, 15.0)
        test.assertEqual(len(a.server.live.broadcasts), 0)
        test.assertEqual(a.server.live.listener_count(), 0)  # no media through A
        test.assertEqual(b.server.live.listener_count(), 1)
        test.assertEqual((await alice_ws.expect("listeners"))["count"], 1)

        async def count_on(node: RunningServer) -> int:
            return int((await c["bob"].get("/api/streams/alice")).body["listeners"]) if node is a else int(
                (await self.on(c["bob"], b).get("/api/streams/alice")).body["listeners"]
            )

        for node in (a, b):
            for _ in range(30):
                if await count_on(node) == 1:
                    break
                await deferLater(reactor, 0.1)
            test.assertEqual(await count_on(node), 1)
        switched = await bob_ws.request({"v": 1, "type": "signal", "user": "alice", "signal": "raw"})
        test.assertEqual((switched["type"], switched["signal"]), ("signal", "raw"), switched)
        gone = await bob_ws.request({"v": 1, "type": "unlisten", "user": "alice"})
        test.assertEqual(gone["type"], "unlistened", gone)
        test.assertEqual((await alice_ws.expect("listeners", timeout=2.0))["count"], 0)
        # Listen again, then node B dies: bob's page on A learns the listen ended.
        lpc2, loffer2, _ = await listener(test)
        again = await bob_ws.request({"v": 1, "type": "listen", "user": "alice", "sdp": loffer2})
        test.assertEqual(again["type"], "answer", again)
        await b.server.bus.kill()  # type: ignore[attr-defined]
        ended = await bob_ws.expect("ended", timeout=TTL + 3.0)
        test.assertEqual((ended["role"], ended["user"], ended["reason"]), ("listen", "alice", "offline"))

    async def test_listen_relayed_by_name_refused_on_the_owning_node(self) -> None:
        """
        A listen for a broadcast on node B is relayed from node A by the
        name the nodes announced (any letter case), without A's database:
        B makes the friendship check, so a stranger on A gets exactly the
        refusal B gives its own (403 not_friends) and B makes no
        connection; a friend on A writing the name in capitals is heard.
        """
        test: Any = self
        a, b, c = await self.loopback_nodes()
        carol = a.client()
        await carol.register("carol")
        await self.go_live(b, c["alice"])
        await wait_for(lambda: a.server.presence.live_node_named("ALICE") == "node-b", 5.0)
        queries = []
        real = a.server.live._access.listenable

        async def counted(*args: Any) -> Any:
            queries.append(args)
            return await real(*args)

        test.patch(a.server.live._access, "listenable", counted)
        carol_ws = await connect_ws(test, a.base, carol)
        _, loffer, _ = await listener(test)
        refused = await carol_ws.request({"v": 1, "type": "listen", "user": "alice", "sdp": loffer})
        test.assertEqual((refused["type"], refused["status"], refused["code"]), ("error", 403, "not_friends"), refused)
        test.assertEqual(b.server.live.listener_count(), 0)
        bob_ws = await connect_ws(test, a.base, c["bob"])
        lpc, loffer2, heard = await listener(test)
        listened = await bob_ws.request({"v": 1, "type": "listen", "user": "ALICE", "sdp": loffer2})
        test.assertEqual((listened["type"], listened["role"]), ("answer", "listen"), listened)
        await answer(lpc, listened["sdp"])
        await wait_for(lambda: heard.samples > 4800, 15.0)
        test.assertEqual(b.server.live.listener_count(), 1)
        test.assertEqual(queries, [])  # node A read nothing to relay either listen

    async def go_live(self, node: RunningServer, client: Client) -> tuple[Any, dict[str, Any], Any]:
        """The client's user goes live on C{node} from a page there: (page, answer, publisher's connection)."""
        test: Any = self
        page = await connect_ws(test, node.base, self.on(client, node))
        await page.expect("me")
        pc, offer = await publisher(test, noisy_speech_file(test))
        reply = await page.request({"v": 1, "type": "publish", "sdp": offer})
        test.assertEqual(reply["type"], "answer", reply)
        await answer(pc, reply["sdp"])
        return page, reply, pc

    async def loopback_nodes(self, **config: Any) -> tuple[RunningServer, RunningServer, dict[str, Client]]:
        """Two nodes whose media stays on loopback, alice (on A) and bob (on B) friends."""
        import aioice.ice

        test: Any = self
        test.patch(aioice.ice, "get_host_addresses", lambda use_ipv4, use_ipv6: ["127.0.0.1"] if use_ipv4 else [])
        _, a, b = await self.two_nodes(ice_allow_networks=(ip_network("127.0.0.0/8"),), **config)
        return a, b, await self.friends(a, b)

    async def test_http_listening_through_another_node(self) -> None:
        """
        bob listens over plain HTTP (no page) through node A to alice
        broadcasting on node B: the offer goes to B, which answers with its
        own SDP and counts him (node A holds no media connection), and he
        hears her; DELETE through A ends it on B.  A listen made on B
        itself also ends by a DELETE that reaches A (no sticky sessions).
        """
        test: Any = self
        a, b, c = await self.loopback_nodes()
        await self.go_live(b, c["alice"])
        alice_id = await _id(a, "alice")
        await wait_for(lambda: a.server.presence.live_node(alice_id) == "node-b", 5.0)
        bob_a, bob_b = self.on(c["bob"], a), c["bob"]
        lpc, loffer, heard = await listener(test)
        listened = await bob_a.post("/api/streams/alice/listen", {"sdp": loffer, "signal": "raw"})
        test.assertEqual(listened.status, 201, listened)
        test.assertEqual((listened.body["signal"], listened.body["stream"]["user"]), ("raw", "alice"))
        await answer(lpc, listened.body["sdp"])
        await wait_for(lambda: heard.samples > 24000, 15.0)
        test.assertEqual((a.server.live.listener_count(), b.server.live.listener_count()), (0, 1))
        gone = await bob_a.delete("/api/streams/alice/listen")
        test.assertEqual(gone.status, 204, gone)
        await wait_for(lambda: b.server.live.listener_count() == 0, 3.0)
        _, loffer2, _ = await listener(test)
        on_b = await bob_b.post("/api/streams/alice/listen", {"sdp": loffer2})
        test.assertEqual(on_b.status, 201, on_b)
        test.assertEqual(b.server.live.listener_count(), 1)
        gone = await bob_a.delete("/api/streams/alice/listen")
        test.assertEqual(gone.status, 204, gone)
        await wait_for(lambda: b.server.live.listener_count() == 0, 3.0)
        again = await bob_a.delete("/api/streams/alice/listen")
        test.assertEqual((again.status, again.error_code), (404, "not_listening"))

    async def test_page_reloaded_onto_another_node_reattaches(self) -> None:
        """
        alice's page on node B goes away while she is live there; her
        reloaded page reaches node A within the grace and publishes: node B
        re-attaches the broadcast (B's answer, the same stream, one
        recording) instead of node A refusing.  A second page's publish
        while she is attached is refused by node B, its answer reaching the
        page on A unchanged; an HTTP publish on A is refused as before.
        """
        test: Any = self
        a, b, c = await self.loopback_nodes(reconnect_grace=10.0)
        page_b, first, pc = await self.go_live(b, c["alice"])
        alice_id = await _id(a, "alice")
        broadcast = b.server.live.broadcasts[alice_id]
        await wait_for(lambda: broadcast.frames_in > 20, 10.0)
        await wait_for(lambda: a.server.presence.live_node(alice_id) == "node-b", 5.0)
        await page_b.close()
        await wait_for(lambda: broadcast.detached is not None, 5.0)
        await aio(pc.close())
        page_a, again, _ = await self.go_live(a, c["alice"])
        test.assertTrue(again.get("resumed"), again)
        test.assertEqual(again["stream"]["live_since"], first["stream"]["live_since"])
        test.assertIs(b.server.live.broadcasts[alice_id], broadcast)
        test.assertIsNone(broadcast.detached)
        test.assertEqual(a.server.live.broadcasts, {})
        frames = broadcast.frames_in
        await wait_for(lambda: broadcast.frames_in > frames + 20, 10.0)
        second = await connect_ws(test, a.base, c["alice"])
        await second.expect("me")
        _, offer = await publisher(test, noisy_speech_file(test))
        refused = await second.request({"v": 1, "type": "publish", "sdp": offer})
        test.assertEqual(
            (refused["type"], refused["code"], refused["message"]),
            ("error", "already_live", "You are already live; stop that stream first."),
        )
        whip_like = await c["alice"].post("/api/streams/alice", {"sdp": offer})
        test.assertEqual((whip_like.status, whip_like.error_code), (409, "already_live"))
        stopped = await page_a.request({"v": 1, "type": "stop"})
        test.assertEqual(stopped["type"], "stopped", stopped)
        recordings = await finalised_recordings(c["alice"])
        test.assertEqual([r["status"] for r in recordings], ["complete"], recordings)

    async def test_node_cut_off_from_the_bus_keeps_its_recordings(self) -> None:
        """
        Node B loses the bus (not the database) for longer than its time to
        live while alice broadcasts and records there: node A forgets her
        (she is offline for bob) but leaves B's recordings alone, since B
        still renews its lease in the database; B finishes her recording
        normally.  Back on the bus, B announces her again.  Then B dies
        (no heartbeat, no lease): its unfinished row is repaired within a
        few seconds.
        """
        test: Any = self
        a, b, c = await self.loopback_nodes()
        alice_id = await _id(a, "alice")
        await a.server.store.create_recording("rec-left", alice_id, utcnow(), "m", "[]", "node-b")
        bob = await connect_ws(test, a.base, self.on(c["bob"], a))
        await bob.expect("presence")
        page, _, _ = await self.go_live(b, c["alice"])
        recording = b.server.live.broadcasts[alice_id].recording
        test.assertIsNotNone(recording)
        await wait_for(lambda: a.server.presence.live_node(alice_id) == "node-b", 5.0)
        await b.server.bus.kill()  # type: ignore[attr-defined]
        await wait_for(lambda: "node-b" in a.server.node_watch.spared, TTL + 3.0)
        test.assertFalse(a.server.presence.is_online(alice_id))
        test.assertNotIn("node-b", a.server.node_watch.buried)
        rows = {r["public_id"]: r["status"] for r in await a.server.store.unfinished_recordings(["node-b"])}
        test.assertEqual(rows, {recording.public_id: "recording", "rec-left": "recording"})
        # Back on the bus: B announces alice again.
        await b.server.bus.start()
        await wait_for(lambda: a.server.presence.is_online(alice_id), TTL + 3.0)
        stopped = await page.request({"v": 1, "type": "stop"})
        test.assertEqual(stopped["type"], "stopped", stopped)
        finished = await finalised_recordings(self.on(c["alice"], b))
        test.assertEqual(
            {r["id"]: r["status"] for r in finished if r["id"] != "rec-left"}, {recording.public_id: "complete"}
        )
        # Now B dies as a killed process does: its heartbeat and its lease run out.
        await die(b)
        died = time.monotonic()
        await wait_for(lambda: "node-b" in a.server.node_watch.buried, TTL + 3.0)
        test.assertLess(time.monotonic() - died, TTL + 3.0)
        test.assertEqual(await a.server.store.unfinished_recordings(["node-b"]), [])

    async def test_players_sent_to_the_broadcasts_node(self) -> None:
        """
        A WHEP player or an HTTP (.ogg) listener that reaches node A for a
        broadcast held by node B gets a 307 to the same URL on B's announced
        address (media and the tap's session live there), not a 404; on B
        itself the .ogg stream plays.  A WHEP session's Location names its
        node, so DELETE reaches it behind a balancer.
        """
        import aioice.ice

        test: Any = self
        test.patch(aioice.ice, "get_host_addresses", lambda use_ipv4, use_ipv6: ["127.0.0.1"] if use_ipv4 else [])
        _, a, b = await self.two_nodes(ice_allow_networks=(ip_network("127.0.0.0/8"),))
        c = await self.friends(a, b)
        made = await c["bob"].post("/api/tokens", {"name": "car stereo", "scope": "listen"})
        test.assertEqual(made.status, 201, made)
        token = str(made.body["secret"])
        alice_b = b.client()
        await alice_b.login("alice")
        alice_ws = await connect_ws(test, b.base, alice_b)
        pc, offer = await publisher(test, noisy_speech_file(test))
        reply = await alice_ws.request({"v": 1, "type": "publish", "sdp": offer})
        test.assertEqual(reply["type"], "answer", reply)
        await answer(pc, reply["sdp"])
        alice_id = await _id(a, "alice")
        await wait_for(lambda: a.server.presence.live_node(alice_id) == "node-b", 5.0)
        ogg = f"/listen/alice.ogg?token={token}&signal=raw"
        moved = await a.client().get(ogg, allow_redirects=False)
        test.assertEqual(moved.status, 307, moved)
        test.assertEqual(moved.headers.getRawHeaders("location"), [f"http://node-b.test{ogg}"])
        test.assertEqual(moved.body["error"]["code"], "live_elsewhere")
        _, loffer, _ = await listener(test)
        whep = await a.client().post(
            "/whep/alice", raw=loffer.encode(), csrf=False,
            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/sdp"}, allow_redirects=False,
        )
        test.assertEqual(whep.status, 307, whep)
        test.assertEqual(whep.headers.getRawHeaders("location"), ["http://node-b.test/whep/alice"])
        # On node B itself: the stream plays, and a WHEP session's Location names node B.
        played = await b.client().request("HEAD", ogg)
        test.assertEqual(played.status, 200, played)
        session = await b.client().post(
            "/whep/alice", raw=loffer.encode(), csrf=False,
            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/sdp"},
        )
        test.assertEqual(session.status, 201, session)
        location = (session.headers.getRawHeaders("location") or [""])[0]
        test.assertTrue(location.startswith("http://node-b.test/whep/alice/"), location)
        gone = await b.client().delete(
            location.removeprefix("http://node-b.test"), csrf=False, headers={"Authorization": f"Bearer {token}"}
        )
        test.assertEqual(gone.status, 200, gone)

    async def test_broadcast_placed_on_the_node_with_headroom(self) -> None:
        """
        alice's page reaches node A, whose denoiser has no headroom: her
        broadcast is placed on node B before any media connection (the
        answer is B's), a friend on A hears it, her page on A is told its
        listener count, and she stops it through A.  With headroom on A,
        the next broadcast stays on A.
        """
        import aioice.ice

        test: Any = self
        test.patch(aioice.ice, "get_host_addresses", lambda use_ipv4, use_ipv6: ["127.0.0.1"] if use_ipv4 else [])
        _, a, b = await self.two_nodes(ice_allow_networks=(ip_network("127.0.0.0/8"),))
        test.patch(a.server.scheduler, "headroom", lambda: 0)
        c = await self.friends(a, b)
        alice_ws = await connect_ws(test, a.base, c["alice"])
        await alice_ws.expect("me")
        pc, offer = await publisher(test, noisy_speech_file(test))
        reply = await alice_ws.request({"v": 1, "type": "publish", "sdp": offer})
        test.assertEqual(reply["type"], "answer", reply)
        await answer(pc, reply["sdp"])
        test.assertEqual((list(a.server.live.broadcasts), len(b.server.live.broadcasts)), ([], 1))
        bob_ws = await connect_ws(test, a.base, c["bob"])
        await bob_ws.expect("presence")
        lpc, loffer, heard = await listener(test)
        listened = await bob_ws.request({"v": 1, "type": "listen", "user": "alice", "sdp": loffer})
        test.assertEqual(listened["type"], "answer", listened)
        await answer(lpc, listened["sdp"])
        await wait_for(lambda: heard.samples > 24000, 15.0)
        test.assertEqual((await alice_ws.expect("listeners", timeout=3.0))["count"], 1)
        stopped = await alice_ws.request({"v": 1, "type": "stop"})
        test.assertEqual(stopped["type"], "stopped", stopped)
        await wait_for(lambda: not b.server.live.broadcasts, 5.0)
        test.patch(a.server.scheduler, "headroom", lambda: 5)
        pc2, offer2 = await publisher(test, noisy_speech_file(test))
        again = await alice_ws.request({"v": 1, "type": "publish", "sdp": offer2})
        test.assertEqual(again["type"], "answer", again)
        test.assertEqual((len(a.server.live.broadcasts), len(b.server.live.broadcasts)), (1, 0))

    async def test_admin_sees_and_ends_broadcasts_on_other_nodes(self) -> None:
        """
        An administrator on node A lists alice's broadcast held by node B
        and ends it through node A: node B ends it, and her page there is
        told.
        """
        import aioice.ice

        test: Any = self
        test.patch(aioice.ice, "get_host_addresses", lambda use_ipv4, use_ipv6: ["127.0.0.1"] if use_ipv4 else [])
        _, a, b = await self.two_nodes(ice_allow_networks=(ip_network("127.0.0.0/8"),))
        c = await self.friends(a, b)
        root = a.client()
        await root.register("root")
        account = await a.server.admin_store.get_account("root")
        await a.server.admin_store.set_admin(account["id"], True)
        alice_ws = await connect_ws(test, b.base, self.on(c["alice"], b))
        await alice_ws.expect("me")
        pc, offer = await publisher(test, noisy_speech_file(test))
        reply = await alice_ws.request({"v": 1, "type": "publish", "sdp": offer})
        await answer(pc, reply["sdp"])
        listed: list[Any] = []
        for _ in range(30):
            listed = (await root.get("/api/admin/broadcasts")).body["broadcasts"]
            if listed:
                break
            await deferLater(reactor, 0.1)
        test.assertEqual([(x["user"], x["live"]) for x in listed], [("alice", True)])
        ended = await root.delete("/api/admin/broadcasts/alice")
        test.assertEqual(ended.status, 204, ended)
        told = await alice_ws.expect("ended", timeout=3.0)
        test.assertEqual((told["role"], told["reason"]), ("publish", "ended by an administrator"))
        test.assertEqual(b.server.live.broadcasts, {})

    def on(self, client: Client, node: RunningServer) -> Client:
        """The same session (a database row) used on another node."""
        other = node.client()
        for cookie in client.cookies:
            other.cookies.set_cookie(cookie)
        return other

    async def test_metrics_and_health_name_the_node_and_its_bus(self) -> None:
        """
        /metrics says which node this is, on which bus, that the bus is
        connected, how many nodes are alive and what crossed; /api/health
        names the node and its bus.
        """
        from tests.test_server_metrics import value

        test: Any = self
        _, a, b = await self.two_nodes()
        await self.friends(a, b)
        kind = "redis" if self.kind == "redis" else "in-process"
        health = (await a.client().get("/api/health")).body
        test.assertEqual((health["node"], health["bus"], health["status"]), ("node-a", kind, "ok"))
        await wait_for(lambda: a.server.node_watch.alive == 2, 5.0)
        text = (await a.client().get("/metrics")).body.decode()
        test.assertEqual(value(text, "denoisecast_node_info", node_id="node-a", bus=kind), 1.0)
        test.assertEqual(value(text, "denoisecast_bus_connected"), 1.0)
        test.assertEqual(value(text, "denoisecast_bus_nodes"), 2.0)
        test.assertGreater(value(text, "denoisecast_bus_events_sent_total") or 0, 0)
        test.assertGreater(value(text, "denoisecast_bus_events_received_total") or 0, 0)  # the friendship, from B
        test.assertEqual(value(text, "denoisecast_bus_events_dropped_total"), 0.0)
        test.assertEqual(value(text, "denoisecast_node_lease_held"), 1.0)
        test.assertGreaterEqual(value(text, "denoisecast_node_lease_renewals_total") or 0, 1)
        test.assertEqual(value(text, "denoisecast_node_lease_renewals_failed_total"), 0.0)
        test.assertEqual(value(text, "denoisecast_bus_limit_writes_dropped_total"), 0.0)

    async def test_recording_events_cross_nodes(self) -> None:
        """
        alice deletes a recording through node B: bob's page on node A (a
        friend's) and alice's own page on node A see it disappear at once.
        """
        test: Any = self
        _, a, b = await self.two_nodes()
        c = await self.friends(a, b)
        alice_id = await _id(a, "alice")
        await a.server.store.create_recording("rec-gone", alice_id, utcnow(), "m", "[]", "node-b")
        await a.server.store.update_recording("rec-gone", status="complete")
        bob_ws = await connect_ws(test, a.base, c["bob"])
        alice_ws = await connect_ws(test, a.base, c["alice"])
        for socket in (bob_ws, alice_ws):
            await socket.expect("me")
        alice_b = self.on(c["alice"], b)
        reply = await alice_b.delete("/api/recordings/rec-gone")
        test.assertEqual(reply.status, 204, reply)
        for socket in (bob_ws, alice_ws):
            removed = await socket.expect("recording_removed", timeout=2.0)
            test.assertEqual((removed["id"], removed["owner"]), ("rec-gone", "alice"))

    async def test_login_limits_hold_across_nodes(self) -> None:
        """
        Wrong passwords for one account from an address it does not know,
        spread over both nodes, count together: after the account's budget
        (5) the next try is refused 429 on either node, not after 5 on each.
        """
        test: Any = self
        _, a, b = await self.two_nodes()
        await a.client().register("victim")
        codes = []
        for n in range(5):
            node = (a, b)[n % 2]
            codes.append((await node.client("127.0.0.5").login("victim", "wrong password")).status)
            await deferLater(reactor, 0.05)  # the failure reaches the other node
        test.assertNotIn(429, codes)
        await deferLater(reactor, 0.2)
        for node in (a, b):
            reply = await node.client("127.0.0.5").login("victim", "wrong password")
            test.assertEqual((reply.status, reply.error_code), (429, "rate_limited"))

    async def test_token_creations_count_across_nodes(self) -> None:
        """
        A user's hourly budget of token creations (30) is one budget on
        every node: 15 made on node A and 15 on node B, the next is refused
        429 on either node.
        """
        test: Any = self
        _, a, b = await self.two_nodes()
        owner = a.client()
        await owner.register("owner")
        owner_id = await _id(a, "owner")
        made = []
        for n in range(15):
            reply = await owner.post("/api/tokens", {"name": f"a{n}", "scope": "listen"})
            test.assertEqual(reply.status, 201, reply)
            made.append(reply.body["token"]["id"])
        for token in made[:10]:  # room for more tokens, not more creations
            test.assertEqual((await owner.delete(f"/api/tokens/{token}")).status, 204)
        await wait_for(lambda: len(b.server.tokens._creations._failures.get(owner_id, ())) == 15, 5.0)
        on_b = self.on(owner, b)
        for n in range(15):
            reply = await on_b.post("/api/tokens", {"name": f"b{n}", "scope": "listen"})
            test.assertEqual(reply.status, 201, reply)
        await wait_for(lambda: a.server.tokens._creations.retry_after(owner_id) is not None, 5.0)
        for client in (owner, on_b):
            reply = await client.post("/api/tokens", {"name": "one more", "scope": "listen"})
            test.assertEqual((reply.status, reply.error_code), (429, "too_many_tokens_made"), reply)

    async def test_dead_node_noticed_and_repaired_once(self) -> None:
        """
        Node B dies (no heartbeat): within its time to live (plus a check)
        alice's page on node A sees bob offline, and node B's unfinished
        recording is repaired by node A exactly once, while node A's own
        live row is left alone.
        """
        test: Any = self
        _, a, b = await self.two_nodes()
        c = await self.friends(a, b)
        bob_id = await _id(a, "bob")
        await a.server.store.create_recording("rec-of-b", bob_id, utcnow(), "m", "[]", "node-b")
        await a.server.store.create_recording("rec-of-a", bob_id, utcnow(), "m", "[]", "node-a")
        alice = await connect_ws(test, a.base, c["alice"])
        await alice.expect("presence")
        await connect_ws(test, b.base, c["bob"])
        test.assertTrue((await alice.expect("friend", timeout=2.0))["friend"]["online"])
        killed = time.monotonic()
        await die(b)
        update = await alice.expect("friend", timeout=TTL + 3.0)
        test.assertFalse(update["friend"]["online"])
        test.assertLess(time.monotonic() - killed, TTL + 2.0)
        await wait_for(lambda: "node-b" in a.server.node_watch.buried, 3.0)
        rows = {r["public_id"]: r for r in await a.server.store.unfinished_recordings()}
        test.assertNotIn("rec-of-b", rows)  # no files: repaired by removing the row
        test.assertIn("rec-of-a", rows)  # node A's own live row: untouched
        test.assertFalse(await a.server.store.claim_unfinished("rec-of-b"))

    async def test_starting_a_node_leaves_live_rows_of_others(self) -> None:
        """
        A node that starts on a shared database repairs only its own
        unfinished rows (and those naming no node), not a live node's.
        """
        test: Any = self
        nodes = Nodes(test, self.kind, ttl=TTL)
        database = postgres_url(test)
        a = await start_server(test, database, bus=nodes.bus("node-a"))
        owner = a.client()
        await owner.register("owner")
        owner_id = await _id(a, "owner")
        await a.server.store.create_recording("live-on-a", owner_id, utcnow(), "m", "[]", "node-a")
        await a.server.store.create_recording("left-by-c", owner_id, utcnow(), "m", "[]", "node-c")
        await a.server.store.create_recording("old", owner_id, utcnow(), "m", "[]", None)
        await start_server(test, database, bus=nodes.bus("node-c"))
        await wait_for(lambda: True, 0.1)
        for _ in range(50):
            left = {r["public_id"] for r in await a.server.store.unfinished_recordings()}
            if left == {"live-on-a"}:
                break
            await deferLater(reactor, 0.1)
        test.assertEqual(left, {"live-on-a"})


async def die(node: RunningServer) -> None:
    """The node stops as a killed process does: no heartbeat on the bus, no lease renewed in the database."""
    await node.server.bus.kill()  # type: ignore[attr-defined]
    node.server.node_lease.kill()


async def _id(running: RunningServer, username: str) -> int:
    user = await running.server.store.get_user_by_name(username)
    assert user is not None
    return int(user["id"])


class InProcessClusterTests(ClusterTestsMixin, TestCase):
    kind = "memory"


class RedisClusterTests(ClusterTestsMixin, TestCase):
    kind = "redis"

    async def test_login_limits_known_to_a_node_started_later(self) -> None:
        """
        Wrong passwords on node A, alone, spend the account's budget; node
        B, started afterwards on the same Redis, refuses the next try 429
        with a Retry-After within the window, although none of them was
        made while it ran.  A node started on the in-process bus would not
        know them: Redis is where they outlive their node.
        """
        nodes = Nodes(self, self.kind, ttl=TTL)
        database = postgres_url(self)
        a = await start_server(self, database, bus=nodes.bus("node-a"))
        await a.client().register("victim")
        for _ in range(5):
            reply = await a.client("127.0.0.5").login("victim", "wrong password")
            self.assertEqual(reply.status, 401, reply)
        reply = await a.client("127.0.0.5").login("victim", "wrong password")
        self.assertEqual((reply.status, reply.error_code), (429, "rate_limited"))
        await eventually(nodes.url, "zcard", stored_key(nodes, "login-account", "victim"), 5)
        b = await start_server(self, database, bus=nodes.bus("node-b"))
        account = b.server.login_guard.limiters()["login-account"]
        await wait_for(lambda: account.retry_after("victim") is not None, 5.0)
        reply = await b.client("127.0.0.6").login("victim", "wrong password")
        self.assertEqual((reply.status, reply.error_code), (429, "rate_limited"), reply)
        self.assertTrue(1 <= int(reply.header("Retry-After") or 0) <= 300, reply.header("Retry-After"))
        # The owner, from the address that registered, still gets in.
        self.assertEqual((await b.client().login("victim")).status, 200)

