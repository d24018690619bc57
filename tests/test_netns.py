"""
Nodes and clients as separate hosts on this machine (network namespaces,
tests/netns_support.py): the harness itself, then a ``twistd denoisecast``
node on one host with ``--media-address`` set to that host's address, a
publisher on a second host and a listener on a third.  Media flows between
the hosts, and no ICE candidate on either side names an address of this
machine's own namespace (its external address among them).
"""

from __future__ import annotations

import ipaddress
import json
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from twisted.internet import reactor
from twisted.internet.task import deferLater
from twisted.internet.threads import deferToThread
from twisted.trial.unittest import TestCase

from tests.netns_support import PREFIX, NodeProcess, TestNetwork, delete_leftovers, ip, namespaces, peer_process
from tests.rtc_support import noisy_speech_file
from tests.support import Client
from tests.test_presence import befriend


def own_addresses() -> set[str]:
    """Every address of this machine's own namespace."""
    return {
        str(ipaddress.ip_interface(line.split()[3]).ip)
        for line in ip("-o", "addr", "show").stdout.splitlines()
    }


async def line_starting(process: "subprocess.Popen[bytes]", prefix: str, lines: int = 50) -> str:
    """The first output line of C{process} starting with C{prefix} (its other lines are skipped)."""
    seen = []
    for _ in range(lines):
        line = (await deferToThread(process.stdout.readline)).decode().strip()  # type: ignore[union-attr]
        if line.startswith(prefix):
            return line[len(prefix):].strip()
        seen.append(line)
        if not line and process.poll() is not None:
            break
    raise AssertionError(f"no {prefix!r} line; output: {seen}")


class HarnessTests(TestCase):
    timeout = 60

    async def test_hosts_reach_each_other_and_nothing_else(self) -> None:
        """
        Three hosts on one segment: a UDP datagram from one host reaches
        another; a host has no route out (a send to an address outside the
        segment fails at once); the network's namespaces are gone after
        its clean-up, and a leftover of a run whose process is gone is
        deleted by the next network.
        """
        dead = subprocess.Popen(["true"])
        dead.wait()
        leftover = f"{PREFIX}-{dead.pid}-1-h1"
        ip("netns", "add", leftover)
        self.addCleanup(ip, "netns", "del", leftover, check=False)
        net = TestNetwork(self, hosts=3)
        self.assertNotIn(leftover, namespaces())
        a, b, c = net.hosts
        self.assertEqual(len({a.address, b.address, c.address, net.gateway}), 4)
        receiver = subprocess.Popen(
            b.command("python3", "-c", f"""
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("{b.address}", 9999))
s.settimeout(20)
print("ready", flush=True)
print(s.recvfrom(100)[0].decode(), flush=True)
"""),
            stdout=subprocess.PIPE,
        )
        self.addCleanup(lambda: receiver.poll() is None and receiver.kill())
        self.assertEqual((await deferToThread(receiver.stdout.readline)).strip(), b"ready")  # type: ignore[union-attr]
        sent = a.run("python3", "-c", f"""
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.sendto(b"hello from a", ("{b.address}", 9999))
try:
    s.sendto(b"out", ("192.0.2.1", 9999))
    print("routed")
except OSError as error:
    print("unreachable", error.errno)
""")
        self.assertEqual((await deferToThread(receiver.stdout.readline)).strip(), b"hello from a")  # type: ignore[union-attr]
        self.assertTrue(sent.stdout.startswith("unreachable"), sent.stdout + sent.stderr)
        receiver.wait(10)
        receiver.stdout.close()  # type: ignore[union-attr]
        net.destroy()
        self.assertEqual([n for n in namespaces() if n.startswith(net.run_id)], [])
        self.assertEqual(delete_leftovers(), [])


    async def test_forward_reaches_a_service_of_this_machine(self) -> None:
        """
        L{TestNetwork.forward}: a host connects to the gateway's forwarded
        port and reaches a TCP service listening on this machine's
        loopback (as nodes reach the test set-up's PostgreSQL and Redis).
        """
        from twisted.internet.protocol import Factory, Protocol

        class Echo(Protocol):
            def dataReceived(self, data: bytes) -> None:
                self.transport.write(data.upper())  # type: ignore[union-attr]

        service = reactor.listenTCP(0, Factory.forProtocol(Echo), interface="127.0.0.1")  # type: ignore[attr-defined]
        self.addCleanup(service.stopListening)
        net = TestNetwork(self, hosts=1)
        address, port = net.forward(self, "127.0.0.1", service.getHost().port)
        self.assertEqual(address, net.gateway)
        script = f"""
import socket
with socket.create_connection(("{address}", {port}), timeout=10) as sock:
    sock.sendall(b"ping")
    print(sock.recv(10).decode())
"""
        result = await deferToThread(net.hosts[0].run, "python3", "-c", script)
        self.assertEqual(result.stdout.strip(), "PING", result.stderr)


class NodeOnItsOwnHostTests(TestCase):
    timeout = 180

    async def test_media_between_hosts_on_the_media_address(self) -> None:
        """
        A node on host A (``--media-address`` = A's address, ``--rtc-ports``),
        a publisher on host B and a listener on host C: the node's answers
        carry only A's address on ports of the range, the clients' offers
        only their own hosts' addresses, no candidate names an address of
        this machine's own namespace, and the listener hears the broadcast.
        """
        net = TestNetwork(self, hosts=3)
        node_host, publisher_host, listener_host = net.hosts
        workdir = Path(tempfile.mkdtemp(prefix="denoisecast-netns-"))
        self.addCleanup(shutil.rmtree, workdir, True)
        node = NodeProcess(
            self, node_host, workdir,
            "--media-address", node_host.address, "--rtc-ports", "41000-41009",
        )
        await node.ready()
        alice, bob = Client(node.base), Client(node.base)
        await alice.register("alice")
        await bob.register("bob")
        await befriend(alice, bob, "bob", "alice")

        wav = noisy_speech_file(self)
        publishing = peer_process(
            self, publisher_host, "publisher_process.py", node.base, alice.cookie("dc_session") or "", str(wav)
        )
        await line_starting(publishing, "live")
        published = json.loads(await line_starting(publishing, "candidates"))
        for _ in range(100):
            if (await alice.get("/api/streams/alice")).body.get("live"):
                break
            await deferLater(reactor, 0.1)
        listening = peer_process(self, listener_host, "listener_process.py", node.base, bob.cookie("dc_session") or "", "alice")
        heard = json.loads(await line_starting(listening, "candidates"))

        def addresses(found: list[list[Any]]) -> set[str]:
            return {address for address, _, _ in found}

        for answer in (published["answer"], heard["answer"]):
            self.assertEqual(addresses(answer), {node_host.address}, answer)
            self.assertTrue(all(41000 <= int(port) <= 41009 for _, port, _ in answer), answer)
        self.assertEqual(addresses(published["offer"]), {publisher_host.address}, published)
        self.assertEqual(addresses(heard["offer"]), {listener_host.address}, heard)
        everything = addresses(published["offer"] + published["answer"] + heard["offer"] + heard["answer"])
        self.assertEqual(everything & own_addresses(), set())

        samples, level = 0, 0.0
        for _ in range(60):
            samples_text, level_text = (await line_starting(listening, "heard")).split()
            samples, level = int(samples_text), max(level, float(level_text))
            if samples > 2 * 48000 and level > 0.01:
                break
        self.assertGreater(samples, 2 * 48000, node.output())
        self.assertGreater(level, 0.01)
