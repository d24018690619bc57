"""
Two nodes on two hosts (network namespaces, tests/netns_support.py) on one
PostgreSQL and one Redis (this machine's, forwarded onto the test network),
with their clients on hosts of their own:

- a broadcast on node B is seen by a friend connected to node A within
  1 s of the publisher's answer, and heard through node A's WebSocket,
  denoised, the media going straight between node B and the listener's
  host;
- node B killed (SIGKILL) mid-broadcast: within its time to live the
  listener on node A is told the broadcast ended, presence on node A
  updates, and the partial recording is repaired and plays through node A;
- a second node started while node A holds a live broadcast leaves the
  broadcast, its recording and its listener alone.

Each test builds its own network and nodes and tears them down (also when
it fails).  The timings measured are printed to the test log
(``test.log``, "netns timing").
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import av
import numpy as np
from sqlalchemy.engine import make_url
from twisted.internet import reactor
from twisted.internet.task import deferLater
from twisted.logger import Logger
from twisted.trial.unittest import TestCase

from tests.bus_support import redis_url
from tests.netns_support import Host, NodeProcess, TestNetwork, peer_process
from tests.rtc_support import best_correlation, envelope, noisy_speech, noisy_speech_file, read_mono
from tests.support import Client, postgres_url
from tests.test_live_twistd import noise_floor_db
from tests.test_netns import line_starting, own_addresses
from tests.test_presence import befriend
from tests.ws_support import WsClient, connect_ws

RATE = 48000
#: The nodes' time to live in the tests that kill one (the default is 10 s).
TTL = 3.0
#: The most loops of the speech fixture heard before the denoised floor must show.
MAX_LOOPS = 6
log = Logger()


def report(what: str, **figures: Any) -> None:
    """One measured figure set, to the test log (and stdout, for the report)."""
    text = " ".join(f"{k}={v:.3f}" if isinstance(v, float) else f"{k}={v}" for k, v in figures.items())
    log.info("netns timing: {what}: {figures}", what=what, figures=text)
    print(f"\nnetns timing: {what}: {text}")


class Deployment:
    """
    Hosts on one test network, and nodes run on them: one database, one
    Redis prefix, one shared data directory (so any node can repair and
    serve another's recordings).
    """

    def __init__(self, test: TestCase, hosts: int) -> None:
        self.test = test
        self.net = TestNetwork(test, hosts=hosts)
        database = make_url(postgres_url(test))
        db_host, db_port = self.net.forward(test, database.host or "127.0.0.1", database.port or 5432)
        redis = urlparse(redis_url())
        redis_host, redis_port = self.net.forward(test, redis.hostname or "127.0.0.1", redis.port or 6379)
        self.workdir = Path(tempfile.mkdtemp(prefix="denoisecast-nodes-"))
        test.addCleanup(shutil.rmtree, self.workdir, True)
        self.shared = (
            "--database-url", database.set(host=db_host, port=db_port).render_as_string(hide_password=False),
            "--redis-url", f"redis://{redis_host}:{redis_port}{redis.path or '/0'}",
            "--redis-prefix", "dc-netns-" + uuid.uuid4().hex[:8],
            "--data-dir", str(self.workdir / "shared-data"),
            "--denoise-device", "cpu",
        )

    def node(self, name: str, host: Host, *args: str) -> NodeProcess:
        """Node C{name} on C{host}, offering that host's address for media (not started until C{ready})."""
        (self.workdir / name).mkdir()
        return NodeProcess(
            self.test, host, self.workdir / name, *self.shared,
            "--node-id", f"node-{name}", "--media-address", host.address,
            "--advertise-url", f"http://{host.address}:8080", *args,
        )


class Lines:
    """Every output line of a peer process, read by a thread as it comes."""

    def __init__(self, process: "subprocess.Popen[bytes]") -> None:
        self.process = process
        self.lines: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        try:
            for raw in iter(self.process.stdout.readline, b""):  # type: ignore[union-attr]
                self.lines.append(raw.decode().strip())
        except ValueError:  # closed by the test's clean-up
            pass

    def starting(self, prefix: str) -> list[str]:
        """The rest of every line so far that starts with C{prefix}."""
        return [line[len(prefix):].strip() for line in list(self.lines) if line.startswith(prefix)]

    def heard(self) -> int:
        """Samples the listener has reported so far."""
        found = self.starting("heard ")
        return int(found[-1].split()[0]) if found else 0

    def messages(self, kind: str) -> list[dict[str, Any]]:
        return [m for m in map(json.loads, self.starting("message ")) if m.get("type") == kind]


async def until(predicate: Callable[[], Awaitable[bool] | bool], seconds: float, what: str) -> float:
    """Seconds until C{predicate} (plain or async) held; fails after C{seconds}."""
    start = time.monotonic()
    while True:
        held = predicate()
        if not isinstance(held, bool):
            held = await held
        if held:
            return time.monotonic() - start
        if time.monotonic() - start > seconds:
            raise AssertionError(f"not within {seconds} s: {what}")
        await deferLater(reactor, 0.1)


def stamp_arrivals(ws: WsClient) -> None:
    """Each message C{ws} receives carries ``_at``: this machine's monotonic clock when it arrived."""
    put = ws.factory.queue.put
    ws.factory.queue.put = lambda message: put({**message, "_at": time.monotonic()})  # type: ignore[method-assign]


async def until_friend(ws: WsClient, name: str, live: bool, timeout: float) -> dict[str, Any]:
    """The next ``friend`` update about C{name} whose ``live`` is C{live}."""
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError(f"no friend update with {name} live={live} within {timeout} s")
        update = await ws.expect("friend", timeout=left)
        if update["friend"]["username"] == name and update["friend"]["live"] == live:
            return update


def read_audio(path: Path) -> np.ndarray:
    """The float32 samples a listener process has written to C{path} so far (whole samples only)."""
    data = path.read_bytes() if path.exists() else b""
    return np.frombuffer(data[: len(data) - len(data) % 4], dtype=np.float32)


async def logged_in(node: NodeProcess, username: str) -> Client:
    """C{username} logged in on C{node} (a session of its own: cookies belong to one host)."""
    client = Client(node.base)
    reply = await client.login(username)
    assert reply.status == 200, reply
    return client


class TwoNodesTests(TestCase):
    timeout = 300

    async def test_friend_on_node_a_hears_a_broadcast_on_node_b(self) -> None:
        """
        Nodes A and B (each ``--media-address`` its own host's address) share
        PostgreSQL and Redis.  alice publishes from host C through node B;
        bob, whose socket is on node A, is told she is live, and his
        listener on host D, signalling through node A, gets node B's answer
        (B's address only) and hears her.  No candidate names an address of
        this machine's own namespace.
        """
        deployment = Deployment(self, hosts=4)
        node_a_host, node_b_host, publisher_host, listener_host = deployment.net.hosts
        nodes = {"a": deployment.node("a", node_a_host), "b": deployment.node("b", node_b_host)}
        for node in nodes.values():
            await node.ready(timeout=120.0)
        alice, bob = Client(nodes["b"].base), Client(nodes["a"].base)
        await alice.register("alice")
        await bob.register("bob")
        await befriend(alice, bob, "bob", "alice")
        bob_ws = await connect_ws(self, nodes["a"].base, bob)
        await bob_ws.expect("presence")

        publishing = peer_process(
            self, publisher_host, "publisher_process.py", nodes["b"].base, alice.cookie("dc_session") or "",
            str(noisy_speech_file(self)),
        )
        await line_starting(publishing, "live")
        published = json.loads(await line_starting(publishing, "candidates"))
        await until_friend(bob_ws, "alice", True, timeout=5.0)

        listening = peer_process(
            self, listener_host, "listener_process.py", nodes["a"].base, bob.cookie("dc_session") or "", "alice"
        )
        heard = json.loads(await line_starting(listening, "candidates"))
        self.assertEqual({address for address, _, _ in published["answer"]}, {node_b_host.address})
        self.assertEqual({address for address, _, _ in heard["answer"]}, {node_b_host.address}, heard)
        everything = {address for found in (*published.values(), *heard.values()) for address, _, _ in found}
        self.assertEqual(everything & own_addresses(), set())
        samples, level = 0, 0.0
        for _ in range(60):
            samples_text, level_text = (await line_starting(listening, "heard")).split()
            samples, level = int(samples_text), max(level, float(level_text))
            if samples > 2 * 48000 and level > 0.01:
                break
        self.assertGreater(samples, 2 * 48000, nodes["b"].output()[-5000:])
        self.assertGreater(level, 0.01)

    async def test_live_within_a_second_and_heard_denoised_across_hosts(self) -> None:
        """
        alice (host C) publishes the noisy speech fixture through node B
        (host B); bob's page on node A (from this machine's side of the
        segment) is told she is live within 1 s of her answer, both times
        read from the one monotonic clock every namespace shares, stamped
        on arrival.  bob's listener on host D, signalling through node A's
        WebSocket, hears her speech (envelope correlation above 0.6) with a
        noise floor in the pauses at least 20 dB below the raw signal's
        (the noisy file she sends, measured the same way) in a whole loop
        of the fixture.
        """
        deployment = Deployment(self, hosts=4)
        node_a_host, node_b_host, publisher_host, listener_host = deployment.net.hosts
        a, b = deployment.node("a", node_a_host), deployment.node("b", node_b_host)
        await a.ready(timeout=120.0)
        await b.ready(timeout=120.0)
        alice, bob = Client(b.base), Client(a.base)
        await alice.register("alice")
        await bob.register("bob")
        await befriend(alice, bob, "bob", "alice")
        bob_ws = await connect_ws(self, a.base, bob)
        stamp_arrivals(bob_ws)
        await bob_ws.expect("presence")

        directory = deployment.workdir / "speech"
        directory.mkdir()
        noisy, clean, _ = noisy_speech(directory, seconds_pause=1.5)
        publishing = Lines(peer_process(
            self, publisher_host, "publisher_process.py", b.base, alice.cookie("dc_session") or "", str(noisy),
        ))
        await until(lambda: bool(publishing.starting("answered") or publishing.starting("refused")), 60.0, "an answer")
        self.assertEqual(publishing.starting("refused"), [], b.output()[-3000:])
        answered = float(publishing.starting("answered")[0])
        told = await until_friend(bob_ws, "alice", True, timeout=10.0)
        presence_delay = told["_at"] - answered
        report("live on node B seen on node A", seconds_after_answer=presence_delay)
        self.assertLess(presence_delay, 1.0, "bob on node A learnt alice was live too late")

        audio_path = deployment.workdir / "bob.f32"
        listening = Lines(peer_process(
            self, listener_host, "listener_process.py", a.base, bob.cookie("dc_session") or "", "alice",
            "denoised", str(audio_path),
        ))
        await until(lambda: bool(listening.starting("candidates") or listening.starting("refused")), 60.0, "bob's answer")
        self.assertEqual(listening.starting("refused"), [], a.output()[-3000:])
        heard = json.loads(listening.starting("candidates")[0])
        self.assertEqual({address for address, _, _ in heard["answer"]}, {node_b_host.address}, heard)
        # The publisher loops the fixture: each loop heard (after the first
        # second: ICE, the denoiser's start) is measured on its own.  On a
        # loaded machine the CPU denoiser may fall behind for a while and
        # pass chunks through raw (node B logs it): up to MAX_LOOPS loops
        # are heard, and one that is denoised end to end passes.
        raw_floor = noise_floor_db(read_mono(noisy), clean, 0)
        period, floors, correlations = len(clean), [], []
        for loop in range(MAX_LOOPS):
            end = RATE + (loop + 2) * period
            await until(lambda end=end: len(read_audio(audio_path)) >= end, 120.0, f"bob hears loop {loop + 1}")
            received = read_audio(audio_path)[RATE + loop * period : end]
            correlation, lag = best_correlation(received, clean)
            correlations.append(correlation)
            floors.append(noise_floor_db(received, clean, lag))
            if correlation > 0.6 and raw_floor - floors[-1] >= 20.0:
                break
        behind = b.output().count("cannot serve stream")
        report(
            "noise floor in the pauses", raw_dbfs=raw_floor, denoised_dbfs=floors[-1], below_db=raw_floor - floors[-1],
            correlation=correlations[-1], loops_heard=len(floors), node_b_passthrough_warnings=behind,
            dbfs_per_loop=",".join(f"{floor:.1f}" for floor in floors),
        )
        self.assertGreater(correlations[-1], 0.6, f"envelope correlation per loop: {correlations}")
        self.assertGreaterEqual(
            raw_floor - floors[-1], 20.0,
            f"noise floors (dBFS) per loop: {floors}, raw {raw_floor:.1f}; node B fell behind: {behind > 0}",
        )
        self.assertEqual(listening.messages("ended"), [])

    async def test_killed_node_ends_its_broadcast_for_everyone_across_hosts(self) -> None:
        """
        alice (host C) broadcasts through node B; bob listens from host D
        through node A and his page on node A watches her.  Node B is
        killed (SIGKILL, ``--node-ttl 3``): within the time to live and a
        check, bob's listener is told ``ended``, his page sees her not live
        and offline, node A says she is not live, and her partial recording
        is repaired by node A (``interrupted``), downloaded through node A
        and decoded with PyAV: it lasts more than a second and holds audio.
        """
        deployment = Deployment(self, hosts=4)
        node_a_host, node_b_host, publisher_host, listener_host = deployment.net.hosts
        ttl = ("--node-ttl", str(TTL), "--reconnect-grace", "0")
        a, b = deployment.node("a", node_a_host, *ttl), deployment.node("b", node_b_host, *ttl)
        await a.ready(timeout=120.0)
        await b.ready(timeout=120.0)
        alice, bob = Client(b.base), Client(a.base)
        await alice.register("alice")
        await bob.register("bob")
        await befriend(alice, bob, "bob", "alice")
        bob_ws = await connect_ws(self, a.base, bob)
        await bob_ws.expect("presence")
        publishing = Lines(peer_process(
            self, publisher_host, "publisher_process.py", b.base, alice.cookie("dc_session") or "",
            str(noisy_speech_file(self)),
        ))
        await until(lambda: bool(publishing.starting("live")), 60.0, "alice is live")
        await until_friend(bob_ws, "alice", True, timeout=10.0)
        listening = Lines(peer_process(
            self, listener_host, "listener_process.py", a.base, bob.cookie("dc_session") or "", "alice",
        ))
        await until(lambda: listening.heard() > 3 * RATE, 90.0, "bob hears three seconds")

        b.process.send_signal(signal.SIGKILL)
        b.process.wait(10)
        killed = time.monotonic()
        await until(lambda: bool(listening.messages("ended")), TTL + 10.0, "bob's listener is told the broadcast ended")
        told_listener = time.monotonic() - killed
        (ended,) = listening.messages("ended")
        self.assertEqual((ended["role"], ended["user"]), ("listen", "alice"), ended)
        update = await until_friend(bob_ws, "alice", False, timeout=TTL + 10.0)
        told_page = time.monotonic() - killed
        self.assertFalse(update["friend"]["online"], update)
        self.assertFalse((await bob.get("/api/streams/alice")).body["live"])
        alice_on_a = await logged_in(a, "alice")

        async def repaired() -> bool:
            rows = (await alice_on_a.get("/api/recordings")).body["recordings"]
            return bool(rows) and rows[0]["status"] == "interrupted"

        await until(repaired, 20.0, "node A repairs node B's recording")
        repaired_after = time.monotonic() - killed
        report(
            "node B killed", ttl=TTL, listener_told_s=told_listener, page_told_s=told_page,
            recording_repaired_s=repaired_after,
        )
        self.assertLess(told_listener, TTL + 2.0)
        self.assertLess(told_page, TTL + 2.0)
        (row,) = (await alice_on_a.get("/api/recordings")).body["recordings"]
        download = await bob.get(f"/api/recordings/{row['id']}/audio?track=raw")
        self.assertEqual(download.status, 200)
        path = deployment.workdir / "partial.ogg"
        path.write_bytes(download.body)
        with av.open(str(path)) as container:
            resampler = av.AudioResampler(format="flt", layout="mono", rate=RATE)
            decoded = np.concatenate([
                out.to_ndarray().reshape(-1) for frame in container.decode(audio=0) for out in resampler.resample(frame)
            ])
        report("partial recording", seconds=len(decoded) / RATE, row_seconds=row["duration_seconds"])
        self.assertGreater(len(decoded) / RATE, 1.0)
        self.assertGreater(float(envelope(decoded).max()), 0.01, "the partial recording is silent")
        self.assertIn("Node node-b stopped its heartbeat", a.output())

    async def test_second_node_leaves_the_first_nodes_broadcast_alone(self) -> None:
        """
        alice (host C) is live on node A (host A) with bob listening from
        host D when node B starts on host B: after its start-up repair and
        a node check or two, her broadcast is still live (seen from either
        node), its recording row is still ``recording``, bob's listener was
        never told it ended and kept receiving audio throughout, and node B
        repaired nothing.
        """
        deployment = Deployment(self, hosts=4)
        node_a_host, node_b_host, publisher_host, listener_host = deployment.net.hosts
        ttl = ("--node-ttl", str(TTL))
        a = deployment.node("a", node_a_host, *ttl)
        await a.ready(timeout=120.0)
        alice, bob = Client(a.base), Client(a.base)
        await alice.register("alice")
        await bob.register("bob")
        await befriend(alice, bob, "bob", "alice")
        publishing = Lines(peer_process(
            self, publisher_host, "publisher_process.py", a.base, alice.cookie("dc_session") or "",
            str(noisy_speech_file(self)),
        ))
        await until(lambda: bool(publishing.starting("live")), 60.0, "alice is live")
        listening = Lines(peer_process(
            self, listener_host, "listener_process.py", a.base, bob.cookie("dc_session") or "", "alice",
        ))
        await until(lambda: listening.heard() > 2 * RATE, 90.0, "bob hears two seconds")

        b = deployment.node("b", node_b_host, *ttl)
        await b.ready(timeout=120.0)
        before = listening.heard()
        started = time.monotonic()
        await deferLater(reactor, TTL + 2.0)  # past node B's start-up repair and a node check or two
        after = listening.heard()
        report("node B started beside a live broadcast", seconds_heard_meanwhile=(after - before) / RATE,
               seconds_waited=time.monotonic() - started)
        self.assertTrue((await alice.get("/api/streams/alice")).body["live"])
        self.assertTrue((await (await logged_in(b, "bob")).get("/api/streams/alice")).body["live"])
        rows = (await alice.get("/api/recordings")).body["recordings"]
        self.assertEqual([r["status"] for r in rows], ["recording"], rows)
        self.assertEqual(listening.messages("ended"), [])
        self.assertGreater(after - before, (TTL + 2.0) * RATE * 0.5, "bob stopped hearing alice")
        await until(lambda: listening.heard() > after + RATE, 30.0, "bob goes on hearing alice")
        self.assertNotIn("stopped its heartbeat", b.output())
