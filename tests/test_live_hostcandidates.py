"""
Media addresses and the UDP port range (``--media-address``,
``--rtc-ports``): parsing, the port allocator, the seam into aioice's host
candidate gathering (with canaries that fail when aiortc or aioice change
shape), and a live broadcast whose answers carry only the configured
address and ports while the audio still reaches a listener.
"""

from __future__ import annotations

import re
import socket
from ipaddress import ip_network
from typing import Any

import aioice.ice
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from twisted.python import usage
from twisted.trial.unittest import SynchronousTestCase, TestCase

from denoisecast.app.config import Config, ConfigError
from denoisecast.app.tap import Options
from denoisecast.live.mediaports import (
    MediaAddress,
    MediaConfigError,
    MediaPlan,
    PortAllocator,
    PortRange,
    PortsExhausted,
    media_address_problem,
    parse_media_addresses,
)
from denoisecast.live.rtc.hostcandidates import ice_connections, offer_host_candidates
from denoisecast.live.rtc.seam import aio
from tests.rtc_support import close_later, listener, noisy_speech_file, publisher

CANDIDATE = re.compile(r"^a=candidate:\S+ \d+ udp \d+ (\S+) (\d+) typ (\w+)", re.MULTILINE)


def host_candidates(sdp: str) -> list[tuple[str, int]]:
    """The (address, port) of every host candidate in C{sdp}."""
    return [(address, int(port)) for address, port, kind in CANDIDATE.findall(sdp) if kind == "host"]


def free_udp_range(size: int, host: str = "127.0.0.1") -> PortRange:
    """A range of C{size} ports that were all free on C{host} a moment ago."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.bind((host, 0))
            low = probe.getsockname()[1]
        if low + size - 1 > 65535:
            continue
        held = []
        try:
            for port in range(low, low + size):
                sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                held.append(sock)
                sock.bind((host, port))
            return PortRange(low, low + size - 1)
        except OSError:
            continue
        finally:
            for sock in held:
                sock.close()
    raise AssertionError("no free UDP port range")


class ParsingTests(SynchronousTestCase):
    def test_media_addresses(self) -> None:
        """
        An address is announced and bound; PUBLIC@LOCAL announces PUBLIC and
        binds LOCAL; commas separate several; IPv6 is written bare.
        """
        self.assertEqual(
            parse_media_addresses("10.0.0.5, 203.0.113.5@0.0.0.0,2001:db8::7"),
            (
                MediaAddress("10.0.0.5", "10.0.0.5"),
                MediaAddress("203.0.113.5", "0.0.0.0"),
                MediaAddress("2001:db8::7", "2001:db8::7"),
            ),
        )
        self.assertEqual(str(MediaAddress("203.0.113.5", "0.0.0.0")), "203.0.113.5@0.0.0.0")

    def test_bad_media_addresses(self) -> None:
        """Names, wildcards as the announced address, mixed families and repeats are refused, saying why."""
        for text, expected in [
            ("example.org", "not an IP address"),
            ("10.0.0.5@eth0", "local address 'eth0'"),
            ("0.0.0.0", "browsers cannot send to 0.0.0.0"),
            ("203.0.113.5@::", "both addresses must be IPv4 or both IPv6"),
            ("10.0.0.5,10.0.0.5", "same address twice"),
        ]:
            with self.assertRaises(MediaConfigError) as caught:
                parse_media_addresses(text)
            self.assertIn(expected, str(caught.exception), text)

    def test_port_ranges(self) -> None:
        """LOW-HIGH within 1024-65535; a range splits into disjoint, covering ranges, one per worker."""
        ports = PortRange.parse(" 40000-40100 ")
        self.assertEqual((ports.low, ports.high, ports.size, str(ports)), (40000, 40100, 101, "40000-40100"))
        self.assertEqual(ports.split(2), [PortRange(40000, 40050), PortRange(40051, 40100)])
        self.assertEqual(PortRange(10, 12).split(3), [PortRange(10, 10), PortRange(11, 11), PortRange(12, 12)])
        with self.assertRaises(MediaConfigError):
            PortRange(10, 11).split(3)
        for text in ["40000", "40100-40000", "80-90", "40000-70000", "a-b", "40000-"]:
            with self.assertRaises(MediaConfigError, msg=text):
                PortRange.parse(text)

    def test_config_and_command_line(self) -> None:
        """
        The options reach L{Config} from the command line (--media-address
        repeated and comma-separated, joined) and from the environment; the
        command line wins; fewer ports than workers is refused.
        """
        options = Options()
        options.parseOptions(
            ["--media-address", "10.0.0.5", "--media-address=10.0.0.6,203.0.113.5@0.0.0.0", "--rtc-ports", "40000-40009"]
        )
        config = options.config
        self.assertEqual([str(a) for a in config.media_addresses], ["10.0.0.5", "10.0.0.6", "203.0.113.5@0.0.0.0"])
        self.assertEqual(config.rtc_ports, PortRange(40000, 40009))
        environ = {"DENOISECAST_MEDIA_ADDRESS": "10.1.0.1", "DENOISECAST_RTC_PORTS": "50000-50001"}
        self.assertEqual(Config.resolve({}, environ).media_addresses, (MediaAddress("10.1.0.1", "10.1.0.1"),))
        self.assertEqual(Config.resolve({"rtc-ports": "41000-41001"}, environ).rtc_ports, PortRange(41000, 41001))
        self.assertEqual((Config().media_addresses, Config().rtc_ports), ((), None))
        self.assertIsNone(MediaPlan.from_config(Config()))
        with self.assertRaises(ConfigError) as caught:
            Config.resolve({"rtc-ports": "41000-41001", "workers": "3"}, {})
        self.assertIn("fewer than the 3 workers", str(caught.exception))
        with self.assertRaises(usage.UsageError):
            Options().parseOptions(["--rtc-ports", "1-2"])

    def test_address_not_on_this_machine(self) -> None:
        """
        An address that is not this machine's is one clear start-up line
        suggesting the 1:1 NAT form; loopback and the wildcard are fine.
        """
        problem = media_address_problem((MediaAddress("192.0.2.77", "192.0.2.77"),))
        assert problem is not None
        self.assertIn("Cannot use --media-address 192.0.2.77", problem)
        self.assertIn("192.0.2.77@0.0.0.0", problem)
        self.assertIsNone(media_address_problem((MediaAddress("127.0.0.1", "127.0.0.1"), MediaAddress("192.0.2.77", "0.0.0.0"))))


class AllocatorTests(SynchronousTestCase):
    def test_binds_within_the_range_in_turn(self) -> None:
        """
        Every socket is bound within the range, ports in turn, skipping one
        in use; when all are taken the error names the range and address.
        """
        ports = free_udp_range(3)
        allocator = PortAllocator(ports)
        outsider = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.addCleanup(outsider.close)
        outsider.bind(("127.0.0.1", ports.low + 1))
        first = allocator.bind("127.0.0.1")
        self.addCleanup(first.close)
        second = allocator.bind("127.0.0.1")
        self.addCleanup(second.close)
        self.assertEqual([first.getsockname()[1], second.getsockname()[1]], [ports.low, ports.high])
        with self.assertRaises(PortsExhausted) as caught:
            allocator.bind("127.0.0.1")
        self.assertEqual(str(caught.exception), f"No free UDP port in {ports} on 127.0.0.1")
        first.close()
        again = allocator.bind("127.0.0.1")
        self.addCleanup(again.close)
        self.assertEqual(again.getsockname()[1], ports.low)

    def test_without_a_range_ports_are_ephemeral(self) -> None:
        """No range: the kernel's choice, as aioice binds by default."""
        sock = PortAllocator(None).bind("127.0.0.1")
        self.addCleanup(sock.close)
        self.assertGreater(sock.getsockname()[1], 0)


async def offer_from_a_client(test: TestCase) -> str:
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    close_later(test, pc)
    pc.addTransceiver("audio", direction="sendrecv")
    await aio(pc.setLocalDescription(await aio(pc.createOffer())))
    return pc.localDescription.sdp


class SeamTests(TestCase):
    timeout = 30

    async def answering(self, plan: MediaPlan) -> tuple[RTCPeerConnection, str]:
        """A server-side peer connection answering a client's offer, with C{plan}'s host candidates."""
        self.patch(aioice.ice, "get_host_addresses", lambda use_ipv4, use_ipv6: ["127.0.0.1"] if use_ipv4 else [])
        offer = await offer_from_a_client(self)
        pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        close_later(self, pc)
        await aio(pc.setRemoteDescription(RTCSessionDescription(offer, "offer")))
        answer = await aio(pc.createAnswer())
        self.assertTrue(offer_host_candidates(pc, plan), "aiortc/aioice changed: hostcandidates.py must follow")
        await aio(pc.setLocalDescription(answer))
        return pc, pc.localDescription.sdp

    async def test_canary_answer_carries_the_announced_address(self) -> None:
        """
        (Canary.)  A real aiortc answer, made through the seam, has exactly
        the configured host candidates: the announced address (not the
        bound one) on a port of the range, and the sockets are the
        connection's own (so they drain and close with it).
        """
        ports = free_udp_range(4)
        plan = MediaPlan((MediaAddress("192.0.2.10", "127.0.0.1"), MediaAddress("127.0.0.1", "127.0.0.1")), PortAllocator(ports))
        pc, sdp = await self.answering(plan)
        found = host_candidates(sdp)
        self.assertEqual([address for address, _ in found], ["192.0.2.10", "127.0.0.1"], sdp)
        self.assertTrue(all(ports.low <= port <= ports.high for _, port in found), found)
        connections = ice_connections(pc)
        assert connections is not None
        bound = sorted(p.transport.get_extra_info("sockname") for c in connections for p in c._protocols)
        self.assertEqual(bound, sorted(("127.0.0.1", port) for _, port in found))

    async def test_canary_ports_only(self) -> None:
        """(Canary.)  A range without addresses: aioice's own addresses, on ports of the range."""
        ports = free_udp_range(2)
        _, sdp = await self.answering(MediaPlan((), PortAllocator(ports)))
        self.assertEqual([address for address, _ in host_candidates(sdp)], ["127.0.0.1"])
        self.assertTrue(all(ports.low <= port <= ports.high for _, port in host_candidates(sdp)))

    async def test_gathering_already_begun_is_refused(self) -> None:
        """After gathering, the seam changes nothing and says so (the server then refuses the connection)."""
        pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        close_later(self, pc)
        pc.addTransceiver("audio")
        await aio(pc.setLocalDescription(await aio(pc.createOffer())))
        self.assertFalse(offer_host_candidates(pc, MediaPlan((), PortAllocator(None))))
        self.assertIsNone(ice_connections(_Shapeless()))  # type: ignore[arg-type]


class _Shapeless:
    """A peer connection whose transceivers have no ICE gatherer where aiortc keeps one."""

    sctp = None

    def getTransceivers(self) -> list[Any]:
        class Receiver:
            transport = object()

        class Transceiver:
            receiver = Receiver()

        return [Transceiver()]


class LiveTests(TestCase):
    timeout = 90

    async def test_answers_carry_the_media_address_and_audio_flows(self) -> None:
        """
        A server configured with --media-address 127.0.0.3 and a port range
        answers a publisher and a listener with host candidates on
        127.0.0.3 and ports of the range only (clients on 127.0.0.1); the
        listener hears the broadcast.  A range with no free port left is a
        503 ``no_media_ports``, not a connection on another port.
        """
        from tests.test_live_manager import start_live, wait_for
        from tests.test_presence import befriend
        from tests.ws_support import connect_ws

        self.patch(aioice.ice, "get_host_addresses", lambda use_ipv4, use_ipv6: ["127.0.0.1"] if use_ipv4 else [])
        ports = free_udp_range(2, "127.0.0.3")
        running = await start_live(
            self,
            media_addresses=(MediaAddress("127.0.0.3", "127.0.0.3"),),
            rtc_ports=ports,
            ice_allow_networks=(ip_network("127.0.0.0/8"),),
        )
        clients = {name: running.client() for name in ("alice", "bob", "carol")}
        for name, client in clients.items():
            await client.register(name)
        await befriend(clients["alice"], clients["bob"], "bob", "alice")
        await befriend(clients["alice"], clients["carol"], "carol", "alice")
        ws = {name: await connect_ws(self, running.base, client) for name, client in clients.items()}

        pc, offer = await publisher(self, noisy_speech_file(self))
        reply = await ws["alice"].request({"v": 1, "type": "publish", "sdp": offer})
        self.assertEqual(reply["type"], "answer", reply)
        lpc, loffer, recorder = await listener(self)
        heard = await ws["bob"].request({"v": 1, "type": "listen", "user": "alice", "sdp": loffer})
        self.assertEqual(heard["type"], "answer", heard)
        for sdp in (reply["sdp"], heard["sdp"]):
            found = host_candidates(sdp)
            self.assertEqual([address for address, _ in found], ["127.0.0.3"], sdp)
            self.assertTrue(ports.low <= found[0][1] <= ports.high, found)
        await aio(lpc.setRemoteDescription(RTCSessionDescription(heard["sdp"], "answer")))
        await aio(pc.setRemoteDescription(RTCSessionDescription(reply["sdp"], "answer")))
        await wait_for(lambda: recorder.samples > 48000, timeout=30.0)

        _, third, _ = await listener(self)
        full = await ws["carol"].request({"v": 1, "type": "listen", "user": "alice", "sdp": third})
        self.assertEqual((full["type"], full["status"], full["code"]), ("error", 503, "no_media_ports"), full)
