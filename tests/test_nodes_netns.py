"""
Two nodes on two hosts (network namespaces, tests/netns_support.py) on one
PostgreSQL and one Redis (this machine's, forwarded onto the test network),
with their clients on hosts of their own: a broadcast on node B is seen
and heard by a friend connected to node A, the media going straight
between node B and the listener's host.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import uuid
from pathlib import Path
from urllib.parse import urlparse

from sqlalchemy.engine import make_url
from twisted.trial.unittest import TestCase

from tests.bus_support import redis_url
from tests.netns_support import NodeProcess, TestNetwork, peer_process
from tests.rtc_support import noisy_speech_file
from tests.support import Client, postgres_url
from tests.test_netns import line_starting, own_addresses
from tests.test_presence import befriend
from tests.ws_support import connect_ws


class TwoNodesTests(TestCase):
    timeout = 240

    async def test_friend_on_node_a_hears_a_broadcast_on_node_b(self) -> None:
        """
        Nodes A and B (each ``--media-address`` its own host's address) share
        PostgreSQL and Redis.  alice publishes from host C through node B;
        bob, whose socket is on node A, is told she is live, and his
        listener on host D, signalling through node A, gets node B's answer
        (B's address only) and hears her.  No candidate names an address of
        this machine's own namespace.
        """
        net = TestNetwork(self, hosts=4)
        node_a_host, node_b_host, publisher_host, listener_host = net.hosts
        database = make_url(postgres_url(self))
        db_host, db_port = net.forward(self, database.host or "127.0.0.1", database.port or 5432)
        database_url = database.set(host=db_host, port=db_port).render_as_string(hide_password=False)
        redis = urlparse(redis_url())
        redis_host, redis_port = net.forward(self, redis.hostname or "127.0.0.1", redis.port or 6379)
        shared = (
            "--database-url", database_url,
            "--redis-url", f"redis://{redis_host}:{redis_port}{redis.path or '/0'}",
            "--redis-prefix", "dc-netns-" + uuid.uuid4().hex[:8],
            "--denoise-device", "cpu",
        )
        workdir = Path(tempfile.mkdtemp(prefix="denoisecast-nodes-"))
        self.addCleanup(shutil.rmtree, workdir, True)
        nodes = {}
        for name, host in (("a", node_a_host), ("b", node_b_host)):
            (workdir / name).mkdir()
            nodes[name] = NodeProcess(
                self, host, workdir / name, *shared,
                "--node-id", f"node-{name}", "--media-address", host.address, "--advertise-url", f"http://{host.address}:8080",
            )
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
        told = await bob_ws.expect("friend", timeout=5.0)
        while not told["friend"]["live"]:
            told = await bob_ws.expect("friend", timeout=5.0)

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
