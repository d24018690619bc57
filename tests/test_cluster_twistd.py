"""
Several real nodes: two ``twistd denoisecast`` processes on one PostgreSQL
database, one Redis and one shared data directory, on loopback (different
ports).  A second node leaves the first one's live broadcast and recording
alone; presence and live status cross nodes within a second; a node killed
mid-broadcast is noticed within its time to live, its broadcast ended for
everyone and its partial recording repaired (it plays); Redis killed and
restarted under two live broadcasts: both nodes recover by themselves; a
node cut off from Redis alone (its link broken, the database reachable)
keeps recording, and is neither repaired nor forgotten for good.
"""

from __future__ import annotations

import os
import shutil
import signal
import tempfile
import time
from pathlib import Path
from typing import Any

from twisted.internet import reactor
from twisted.internet.task import deferLater
from twisted.trial.unittest import TestCase

from denoisecast.recordings.files import decode
from tests.bus_support import CuttableLink, PrivateRedis, redis_url, unique_prefix
from tests.rtc_support import answer, noisy_speech, publisher
from tests.support import Client, postgres_url
from tests.test_twistd import TwistdProcess
from tests.ws_support import WsClient, connect_ws

LOOPBACK_ICE = Path(__file__).resolve().parent / "loopback_ice"
TTL = 3.0
RATE = 48000


class Cluster:
    """Nodes of one deployment: one database, one Redis prefix, one data directory."""

    def __init__(self, test: TestCase, redis: str) -> None:
        self.test = test
        self.redis = redis
        self.prefix = unique_prefix()
        self.database = postgres_url(test)
        self.workdir = Path(tempfile.mkdtemp(prefix="denoisecast-nodes-"))
        test.addCleanup(shutil.rmtree, self.workdir, True)
        self.data = self.workdir / "shared-data"

    def node(self, name: str, redis: str = "") -> TwistdProcess:
        """Node C{name}, on the cluster's Redis, or through C{redis} (a L{CuttableLink}'s URL)."""
        return TwistdProcess(
            self.test, self.workdir,
            "--database-url", self.database, "--data-dir", str(self.data),
            "--redis-url", redis or self.redis, "--redis-prefix", self.prefix,
            "--node-id", name, "--node-ttl", str(TTL),
            "--advertise-url", f"http://{name}.test",
            "--silence-timeout", "30", "--reconnect-grace", "0",
            # The test's media stays on loopback, which is denied by default.
            "--ice-allow-networks", "127.0.0.0/8",
            env={"PYTHONPATH": os.pathsep.join(filter(None, [str(LOOPBACK_ICE), os.environ.get("PYTHONPATH")]))},
        )


async def until(predicate: Any, seconds: float, what: str) -> float:
    """Seconds until the (async) predicate held; fails after C{seconds}."""
    start = time.monotonic()
    while not await predicate():
        if time.monotonic() - start > seconds:
            raise AssertionError(f"not within {seconds} s: {what}")
        await deferLater(reactor, 0.1)
    return time.monotonic() - start


async def bus_is(node: TwistdProcess, bus: str) -> bool:
    """Whether the node's /api/health names this bus (C{redis}, C{unreachable})."""
    return (await Client(node.base).get("/api/health")).body.get("bus") == bus


async def first_recording_is(client: Client, status: str) -> bool:
    """Whether the newest recording in the client's list has this status."""
    rows = (await client.get("/api/recordings")).body["recordings"]
    return bool(rows) and rows[0]["status"] == status


class NodesTests(TestCase):
    timeout = 240

    def setUp(self) -> None:
        import aioice.ice

        # This process's aiortc peers offer loopback only, as the servers do.
        self.patch(aioice.ice, "get_host_addresses", lambda use_ipv4, use_ipv6: ["127.0.0.1"] if use_ipv4 else [])

    async def people(self, node: TwistdProcess, *names: str) -> dict[str, Client]:
        """Accounts made on C{node}, all friends of bob."""
        clients = {}
        for name in names:
            clients[name] = Client(node.base)
            await clients[name].register(name)
        for name in names:
            if name != "bob":
                await clients[name].post("/api/friends/requests", {"username": "bob"})
                reply = await clients["bob"].post(f"/api/friends/requests/{name}/accept")
                self.assertEqual(reply.status, 200, reply)
        return clients

    async def go_live(self, node: TwistdProcess, client: Client, wav: Path) -> WsClient:
        ws = await connect_ws(self, node.base, client)
        pc, offer = await publisher(self, wav)
        reply = await ws.request({"v": 1, "type": "publish", "sdp": offer})
        self.assertEqual(reply["type"], "answer", (reply, node.output()[-3000:]))
        await answer(pc, reply["sdp"])
        return ws

    async def alice_on_b_bob_on_a(
        self, cluster: Cluster, b_redis: str = ""
    ) -> tuple[TwistdProcess, TwistdProcess, dict[str, Client], WsClient]:
        """
        Nodes A and B started (B through C{b_redis} where given), alice and
        bob friends, bob's page open on node A.
        """
        a, b = cluster.node("node-a"), cluster.node("node-b", redis=b_redis)
        await a.ready(timeout=90)
        await b.ready(timeout=90)
        c = await self.people(a, "alice", "bob")
        bob_ws = await connect_ws(self, a.base, c["bob"])
        await bob_ws.expect("presence")
        return a, b, c, bob_ws

    def on(self, client: Client, node: TwistdProcess) -> Client:
        """The same session (a database row) used on another node."""
        other = Client(node.base)
        for cookie in client.cookies:
            other.cookies.set_cookie(cookie)
        return other

    async def test_second_node_leaves_the_first_alone(self) -> None:
        """
        alice is live on node A when node B starts: her broadcast stays live
        and its recording stays recording; bob's page on node B shows her
        live, sees carol come online on node A within 1 s, and alice's
        recording, once she stops, plays through node B.
        """
        cluster = Cluster(self, redis_url())
        a = cluster.node("node-a")
        await a.ready(timeout=90)
        c = await self.people(a, "alice", "bob", "carol")
        noisy, _, _ = noisy_speech(cluster.workdir, seconds_pause=1.0)
        alice_ws = await self.go_live(a, c["alice"], noisy)
        b = cluster.node("node-b")
        await b.ready(timeout=90)
        await deferLater(reactor, TTL + 1.0)  # past a start-up repair and a node check or two
        status = await c["alice"].get("/api/streams/alice")
        self.assertTrue(status.body["live"], status.body)
        rows = (await c["alice"].get("/api/recordings")).body["recordings"]
        self.assertEqual([r["status"] for r in rows], ["recording"])
        bob_b = self.on(c["bob"], b)
        bob_ws = await connect_ws(self, b.base, bob_b)
        friends = {f["username"]: f for f in (await bob_ws.expect("presence"))["friends"]}
        self.assertTrue(friends["alice"]["live"], (friends, b.output()[-3000:]))
        self.assertTrue((await bob_b.get("/api/streams/alice")).body["live"])
        start = time.monotonic()
        await connect_ws(self, a.base, c["carol"])
        while True:
            update = await bob_ws.expect("friend", timeout=1.0)
            if update["friend"]["username"] == "carol" and update["friend"]["online"]:
                break
        self.assertLess(time.monotonic() - start, 1.0)
        await deferLater(reactor, 2.0)
        self.assertEqual((await alice_ws.request({"v": 1, "type": "stop"}))["type"], "stopped")
        update = await bob_ws.expect("friend", timeout=2.0, )
        while update["friend"]["username"] != "alice" or update["friend"]["live"]:
            update = await bob_ws.expect("friend", timeout=2.0)

        await until(lambda: first_recording_is(bob_b, "complete"), 20.0, "the recording completes")
        (row,) = (await bob_b.get("/api/recordings")).body["recordings"]
        audio = await bob_b.get(f"/api/recordings/{row['id']}/audio?track=denoised")
        self.assertEqual(audio.status, 200)
        path = cluster.workdir / "played.ogg"
        path.write_bytes(audio.body)
        self.assertGreater(len(decode(path)) / RATE, 3.0)

    async def test_friends_on_node_a_hear_a_broadcast_on_node_b_denoised(self) -> None:
        """
        alice goes live on node B; bob and dave, connected to node A, see
        her live within 1 s and listen through node A's WebSocket (bob
        denoised, dave raw): both hear her speech (envelope correlation
        above 0.6), from node B's media (node A holds no listener), and
        bob's noise floor in the pauses is at least 10 dB below dave's.
        """
        from tests.rtc_support import best_correlation, listener
        from tests.test_live_twistd import noise_floor_db

        cluster = Cluster(self, redis_url())
        a, b = cluster.node("node-a"), cluster.node("node-b")
        await a.ready(timeout=90)
        await b.ready(timeout=90)
        c = await self.people(a, "alice", "bob", "dave")
        await c["dave"].post("/api/friends/requests", {"username": "alice"})
        self.assertEqual((await c["alice"].post("/api/friends/requests/dave/accept")).status, 200)
        noisy, clean, _ = noisy_speech(cluster.workdir, seconds_pause=1.5)
        ws = {name: await connect_ws(self, a.base, c[name]) for name in ("bob", "dave")}
        for socket in ws.values():
            await socket.expect("presence")
        alice_ws = await connect_ws(self, b.base, self.on(c["alice"], b))
        pc, offer = await publisher(self, noisy)
        start = time.monotonic()
        reply = await alice_ws.request({"v": 1, "type": "publish", "sdp": offer})
        self.assertEqual(reply["type"], "answer", reply)
        update = await ws["bob"].expect("friend", timeout=1.0)
        while not update["friend"]["live"]:
            update = await ws["bob"].expect("friend", timeout=1.0)
        self.assertLess(time.monotonic() - start, 1.0)
        # Listeners join before the speech starts, then the publisher sends.
        recorders = {}
        for name, kind in (("bob", "denoised"), ("dave", "raw")):
            lpc, loffer, recorders[name] = await listener(self)
            heard = await ws[name].request({"v": 1, "type": "listen", "user": "alice", "sdp": loffer, "signal": kind})
            self.assertEqual((heard["type"], heard.get("signal")), ("answer", kind), heard)
            await answer(lpc, heard["sdp"])
        await answer(pc, reply["sdp"])
        await deferLater(reactor, len(clean) / RATE + 3.0)
        status = await c["bob"].get("/api/streams/alice")
        self.assertEqual((status.body["live"], status.body["listeners"]), (True, 2), status.body)
        self.assertEqual((await alice_ws.request({"v": 1, "type": "stop"}))["type"], "stopped")
        floors = {}
        for name, recorder in recorders.items():
            audio = recorder.audio()
            self.assertGreater(len(audio), len(clean) * 0.8, f"{name} heard too little")
            correlation, lag = best_correlation(audio, clean)
            self.assertGreater(correlation, 0.6, f"{name}: envelope correlation {correlation:.2f}")
            floors[name] = noise_floor_db(audio, clean, lag)
        self.assertGreaterEqual(floors["dave"] - floors["bob"], 10.0, f"noise floors (dBFS): {floors}")

    async def test_killed_node_ends_its_broadcast_for_everyone(self) -> None:
        """
        SIGKILL node B while alice broadcasts through it: within the time
        to live (and a check) bob's page on node A sees her not live and
        offline, node A says she is not live, and her partial recording is
        repaired (interrupted, its real length), appears in bob's list on
        node A, and plays through node A.
        """
        cluster = Cluster(self, redis_url())
        a, b, c, bob_ws = await self.alice_on_b_bob_on_a(cluster)
        noisy, _, _ = noisy_speech(cluster.workdir, seconds_pause=1.0)
        await self.go_live(b, self.on(c["alice"], b), noisy)
        update = await bob_ws.expect("friend", timeout=2.0)
        while not update["friend"]["live"]:
            update = await bob_ws.expect("friend", timeout=2.0)
        await deferLater(reactor, 6.0)
        b.process.send_signal(signal.SIGKILL)
        b.process.wait(10)
        killed = time.monotonic()
        while True:
            update = await bob_ws.expect("friend", timeout=TTL + 3.0)
            if not update["friend"]["live"]:
                break
        self.assertFalse(update["friend"]["online"])
        self.assertLess(time.monotonic() - killed, TTL + 2.0)
        self.assertFalse((await c["bob"].get("/api/streams/alice")).body["live"])

        await until(lambda: first_recording_is(c["alice"], "interrupted"), 10.0, "node A repairs node B's recording")
        ready = await bob_ws.expect("recording_ready", timeout=5.0)
        self.assertEqual((ready["recording"]["owner"], ready["recording"]["status"]), ("alice", "interrupted"))
        (row,) = (await c["alice"].get("/api/recordings")).body["recordings"]
        # What reached the files before the kill (under load, the first
        # seconds of a broadcast may go to ICE), measured from the files.
        self.assertGreater(row["duration_seconds"], 1.0)
        audio = await c["bob"].get(f"/api/recordings/{row['id']}/audio?track=raw")
        self.assertEqual(audio.status, 200)
        path = cluster.workdir / "partial.ogg"
        path.write_bytes(audio.body)
        self.assertLess(abs(len(decode(path)) / RATE - row["duration_seconds"]), 0.1)
        self.assertIn("Node node-b stopped its heartbeat", a.output())

    async def test_redis_restart_under_two_broadcasts(self) -> None:
        """
        Redis killed while alice (node A) and carol (node B) are live: both
        nodes report the bus unreachable in /api/health and go on serving;
        Redis restarted: both nodes reconnect by themselves, report ok, a
        page opened on node A sees both broadcasts live, presence crosses
        again within 1 s, and each node warned about Redis only a few times.
        """
        server = PrivateRedis(self)
        cluster = Cluster(self, server.url)
        a, b = cluster.node("node-a"), cluster.node("node-b")
        await a.ready(timeout=90)
        await b.ready(timeout=90)
        c = await self.people(a, "alice", "bob", "carol", "dave")
        noisy, _, _ = noisy_speech(cluster.workdir, seconds_pause=1.0)
        await self.go_live(a, c["alice"], noisy)
        await self.go_live(b, self.on(c["carol"], b), noisy)
        server.kill()

        for node in (a, b):
            await until(lambda node=node: bus_is(node, "unreachable"), 10.0, "the bus reported unreachable")
        reply = await Client(a.base).get("/api/health")
        self.assertEqual((reply.status, reply.body["status"]), (200, "degraded"))
        await deferLater(reactor, 2.0)
        server.start()
        for node in (a, b):
            await until(lambda node=node: bus_is(node, "redis"), 15.0, "the bus reconnected")
        bob_ws = await connect_ws(self, a.base, c["bob"])

        async def both_live() -> bool:
            reply = await c["bob"].get("/api/streams/carol")
            return bool(reply.body["live"]) and bool((await c["bob"].get("/api/streams/alice")).body["live"])

        await until(both_live, 5.0, "node A sees both broadcasts again")
        friends = {f["username"]: f for f in (await bob_ws.expect("presence"))["friends"]}
        self.assertTrue(friends["alice"]["live"])
        start = time.monotonic()
        await connect_ws(self, b.base, self.on(c["dave"], b))
        while True:
            update = await bob_ws.expect("friend", timeout=1.0)
            if update["friend"]["username"] == "dave" and update["friend"]["online"]:
                break
        self.assertLess(time.monotonic() - start, 1.0)
        for node in (a, b):
            log = node.output()
            self.assertLessEqual(log.count("cannot reach Redis"), 3, log[-5000:])
            self.assertNotIn("Traceback", log)

    async def test_node_cut_off_from_redis_keeps_recording(self) -> None:
        """
        Node B loses its link to Redis (Redis and PostgreSQL run on) while
        alice broadcasts through it: within the time to live node A takes
        her offline for bob (it cannot reach B), but leaves her recording
        to B, which still renews its database lease: it stays
        C{recording}, never C{interrupted}.  B says the bus is unreachable
        in /api/health and holds its lease in /metrics.  The link mended,
        B comes back by itself, bob sees alice live again, and when she
        stops, her recording completes with what she sent during the cut
        and plays through node A.
        """
        from tests.test_server_metrics import value

        cluster = Cluster(self, redis_url())
        link = CuttableLink(self, cluster.redis)
        a, b, c, bob_ws = await self.alice_on_b_bob_on_a(cluster, link.url)
        noisy, clean, _ = noisy_speech(cluster.workdir, seconds_pause=4.0)
        alice_b = self.on(c["alice"], b)
        alice_ws = await self.go_live(b, alice_b, noisy)
        went_live = time.monotonic()

        async def alice_live(live: bool, seconds: float) -> None:
            while True:
                update = await bob_ws.expect("friend", timeout=seconds)
                if update["friend"]["username"] == "alice" and update["friend"]["live"] == live:
                    return

        await alice_live(True, 2.0)
        await deferLater(reactor, 2.0)
        await link.cut()
        await alice_live(False, TTL + 3.0)

        await until(lambda: bus_is(b, "unreachable"), 10.0, "node B reports the bus unreachable")

        async def spared() -> bool:
            return "is cut off from the live bus but renews its database lease" in a.output()

        await until(spared, 10.0, "node A sees node B's lease")
        await deferLater(reactor, 2.0)  # node A checks again, twice or more
        rows = (await c["alice"].get("/api/recordings")).body["recordings"]
        self.assertEqual([r["status"] for r in rows], ["recording"], a.output()[-3000:])
        self.assertNotIn("no heartbeat, no database lease", a.output())
        metrics = (await Client(b.base).get("/metrics")).body.decode()
        self.assertEqual(value(metrics, "denoisecast_node_lease_held"), 1.0)
        self.assertEqual(value(metrics, "denoisecast_bus_connected"), 0.0)
        link.mend()
        await alice_live(True, 15.0)
        await until(lambda: bus_is(b, "redis"), 10.0, "node B reconnects")
        self.assertTrue((await c["bob"].get("/api/streams/alice")).body["live"])
        await deferLater(reactor, max(0.0, went_live + len(clean) / RATE + 1.0 - time.monotonic()))
        self.assertEqual((await alice_ws.request({"v": 1, "type": "stop"}))["type"], "stopped")

        await until(lambda: first_recording_is(c["bob"], "complete"), 20.0, "the recording completes")
        (row,) = (await c["bob"].get("/api/recordings")).body["recordings"]
        # All she sent, the cut included (under load the first second or two may go to ICE).
        self.assertGreater(row["duration_seconds"], len(clean) / RATE - 3.0)
        audio = await c["bob"].get(f"/api/recordings/{row['id']}/audio?track=denoised")
        self.assertEqual(audio.status, 200)
        path = cluster.workdir / "cut-off.ogg"
        path.write_bytes(audio.body)
        self.assertLess(abs(len(decode(path)) / RATE - row["duration_seconds"]), 0.1)
        for node in (a, b):
            self.assertNotIn("Traceback", node.output())
