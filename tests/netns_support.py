"""
Separate hosts on this machine for the multi-node tests: Linux network
namespaces on one private Ethernet segment.

    net = TestNetwork(self, hosts=3)      # skips unless root with ip netns
    node = NodeProcess(self, net.hosts[0], workdir, "--media-address", net.hosts[0].address)
    await node.ready()
    subprocess.Popen(net.hosts[1].command(sys.executable, "tests/publisher_process.py", ...))

The segment is a bridge inside a namespace of its own (the "switch"); each
host is a namespace with one veth interface, ``eth0``, on it, and this
machine's own namespace joins it too (the "gateway" address, ``.254``) so
the test process can talk HTTP to the nodes and forward services (the
PostgreSQL and Redis of the test set-up) to them with L{TestNetwork.forward}.
No host has a route anywhere else: nothing a node or client sends can reach
the machine's external address or leave it.

Every name carries the test process's id and a counter, so concurrent
runs do not collide; namespaces left by a run that crashed (its process is
gone) are deleted by the next run.  Each network is torn down by the
test's clean-up, also when the test fails half-way through building it.
``netem`` is not available on this machine: to lose or delay packets, put a
UDP relay of your own between the peers.
"""

from __future__ import annotations

import fcntl
import ipaddress
import itertools
import os
import shutil
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from twisted.internet import reactor
from twisted.internet.task import deferLater
from twisted.protocols.portforward import ProxyFactory
from twisted.trial.unittest import SkipTest, TestCase

#: Every namespace a test network makes is named ``PREFIX-<pid>-<n>-...``.
PREFIX = "dcnet"
#: The private networks used: 10.201.<n>.0/24, a free <n> per network.
SUPERNET = ipaddress.ip_network("10.201.0.0/16")
LOCK = Path("/tmp/denoisecast-netns.lock")
TWISTD = str(Path(sys.executable).with_name("twistd"))
ROOT = Path(__file__).resolve().parent.parent

_serial = itertools.count(1)


def ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run ``ip ARGS``; a failure is an error naming the command and ip's own message."""
    result = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30)
    if check and result.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {result.stderr.strip() or result.returncode}")
    return result


def netns_problem() -> str | None:
    """Why this machine cannot make test networks, or C{None}."""
    if os.geteuid() != 0:
        return "network namespaces need root (the tests run as root in CI)"
    if shutil.which("ip") is None:
        return "the ip command (Debian: iproute2) is not installed"
    if ip("netns", "list", check=False).returncode != 0:
        return "ip netns does not work here"
    return None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def namespaces() -> list[str]:
    return [line.split()[0] for line in ip("netns", "list").stdout.splitlines() if line.strip()]


def delete_leftovers() -> list[str]:
    """Delete the namespaces of test runs whose process is gone; their names."""
    gone = []
    for name in namespaces():
        parts = name.split("-")
        if parts[0] == PREFIX and len(parts) > 1 and parts[1].isdigit() and not _alive(int(parts[1])):
            ip("netns", "del", name, check=False)
            gone.append(name)
    return gone


@dataclass(frozen=True)
class Host:
    """One namespace: its name and its address on the segment."""

    namespace: str
    address: str

    def command(self, *args: str) -> list[str]:
        """C{args} run inside this host."""
        return ["ip", "netns", "exec", self.namespace, *args]

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(self.command(*args), capture_output=True, text=True, timeout=60)


class TestNetwork:
    """
    C{hosts} namespaces on a private /24, and the gateway (this machine's
    own namespace) at .254.  Skips the test if namespaces cannot be made.
    """

    def __init__(self, test: TestCase, hosts: int = 2) -> None:
        problem = netns_problem()
        if problem is not None:
            raise SkipTest(problem)
        self.run_id = f"{PREFIX}-{os.getpid()}-{next(_serial)}"
        self.switch = f"{self.run_id}-sw"
        self.gateway_link = f"dcn{os.getpid() % 10**7}x{next(_serial) % 100}"
        self.hosts: list[Host] = []
        test.addCleanup(self.destroy)
        with open(LOCK, "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # choosing a subnet and taking it is one step
            delete_leftovers()
            self.network = self._free_network()
            self._build(hosts)

    @property
    def gateway(self) -> str:
        """This machine's address on the segment (the test process's)."""
        return str(self.network[254])

    def _free_network(self) -> ipaddress.IPv4Network:
        taken = set()
        for line in ip("-4", "-o", "addr", "show").stdout.splitlines():
            address = ipaddress.ip_interface(line.split()[3])
            taken.add(address.network)
        for network in SUPERNET.subnets(new_prefix=24):
            if not any(network.overlaps(other) for other in taken):
                return network  # type: ignore[return-value]
        raise RuntimeError(f"no free /24 in {SUPERNET} for a test network")

    def _build(self, count: int) -> None:
        ip("netns", "add", self.switch)
        ip("-n", self.switch, "link", "set", "lo", "up")
        ip("-n", self.switch, "link", "add", "br0", "type", "bridge")
        ip("-n", self.switch, "link", "set", "br0", "up")
        ip("link", "add", self.gateway_link, "type", "veth", "peer", "name", "up0", "netns", self.switch)
        ip("-n", self.switch, "link", "set", "up0", "master", "br0", "up")
        ip("addr", "add", f"{self.gateway}/24", "dev", self.gateway_link)
        ip("link", "set", self.gateway_link, "up")
        for index in range(1, count + 1):
            host = Host(f"{self.run_id}-h{index}", str(self.network[index]))
            ip("netns", "add", host.namespace)
            self.hosts.append(host)
            ip("-n", host.namespace, "link", "set", "lo", "up")
            ip("link", "add", "eth0", "netns", host.namespace, "type", "veth", "peer", "name", f"p{index}", "netns", self.switch)
            ip("-n", self.switch, "link", "set", f"p{index}", "master", "br0", "up")
            ip("-n", host.namespace, "addr", "add", f"{host.address}/24", "dev", "eth0")
            ip("-n", host.namespace, "link", "set", "eth0", "up")

    def destroy(self) -> None:
        """Delete every namespace of this network (the veth pairs go with them)."""
        for name in namespaces():
            if name.startswith(self.run_id + "-"):
                ip("netns", "del", name, check=False)
        ip("link", "del", self.gateway_link, check=False)

    def forward(self, test: TestCase, host: str, port: int) -> tuple[str, int]:
        """
        A TCP port on the gateway that forwards to C{host}:C{port} on this
        machine (PostgreSQL or Redis on 127.0.0.1), for the nodes; closed
        when the test ends.  Runs in the test's reactor.
        """
        listening = reactor.listenTCP(0, ProxyFactory(host, port), interface=self.gateway)  # type: ignore[attr-defined]
        test.addCleanup(listening.stopListening)
        return self.gateway, listening.getHost().port


def free_port_on(address: str) -> int:
    """A TCP port free on C{address} a moment ago (the gateway's, or any address in the namespace's view)."""
    with socket.socket() as probe:
        probe.bind((address, 0))
        return int(probe.getsockname()[1])


class NodeProcess:
    """
    ``twistd denoisecast`` running inside C{host}, listening on its address
    (port C{port}, default 8080: each host has its own ports), its log in
    C{workdir}; stopped (SIGTERM, then SIGKILL) when the test ends.
    """

    def __init__(
        self, test: TestCase, host: Host, workdir: Path, *args: str, port: int = 8080, env: dict[str, str] | None = None
    ) -> None:
        self.host = host
        self.port = port
        self.log = workdir / f"twistd-{host.namespace}-{port}.log"
        self.args = host.command(
            TWISTD, "-n", "--pidfile=", "--logfile", str(self.log), "denoisecast",
            "--listen", f"tcp:{port}:interface={host.address}", *args,
        )
        self.process = subprocess.Popen(
            self.args, cwd=workdir, env={**os.environ, **(env or {})},
            stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
        )
        test.addCleanup(self.stop)

    @property
    def base(self) -> str:
        return f"http://{self.host.address}:{self.port}"

    async def ready(self, timeout: float = 60.0) -> None:
        """Wait until the node accepts connections (from this machine, over the segment)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"twistd in {self.host.namespace} exited: {self.output()}")
            try:
                with socket.create_connection((self.host.address, self.port), timeout=0.2):
                    return
            except OSError:
                await deferLater(reactor, 0.1)
        raise AssertionError(f"twistd in {self.host.namespace} did not start listening: {self.output()}")

    def output(self) -> str:
        return self.log.read_text()[-20000:] if self.log.exists() else ""

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def peer_process(test: TestCase, host: Host, script: str, *args: str) -> "subprocess.Popen[bytes]":
    """
    C{tests/<script>} (a client peer) run inside C{host} with this
    checkout on its path, its output piped; killed when the test ends.
    """
    process = subprocess.Popen(
        host.command(sys.executable, str(ROOT / "tests" / script), *args),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )

    def kill(process: Any = process) -> None:
        if process.poll() is None:
            process.kill()
            process.wait(10)
        process.stdout.close()

    test.addCleanup(kill)
    return process
