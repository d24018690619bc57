"""
Remote ICE candidates: which addresses the server may send connectivity
checks to.  A client's offer names addresses; without a policy the server
would send STUN to any of them (its own loopback services, a cloud metadata
endpoint).  Unit tests of the policy and the offer filter, then a real
aiortc offer whose extra candidates point at UDP sockets of the test's own.
"""

from __future__ import annotations

import socket
from ipaddress import ip_network

from twisted.internet import reactor
from twisted.internet.protocol import DatagramProtocol
from twisted.internet.task import deferLater
from twisted.trial.unittest import SynchronousTestCase, TestCase

from denoisecast.app.config import Config
from denoisecast.live.candidates import CandidatePolicy, filter_candidates

OFFER = (
    "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\n"
    "m=audio 9 UDP/TLS/RTP/SAVPF 111\r\nc=IN IP4 0.0.0.0\r\n"
    "a=candidate:1 1 udp 2130706431 192.0.2.7 50000 typ host\r\n"
    "a=candidate:2 1 udp 2130706431 127.0.0.1 50001 typ host\r\n"
    "a=candidate:3 1 udp 2130706431 169.254.169.254 50002 typ host\r\n"
    "a=candidate:4 1 udp 2130706431 0e5f9c1a-7c0d-4b8e.local 50003 typ host\r\n"
    "a=candidate:5 1 udp 1694498815 203.0.113.9 50004 typ srflx raddr 10.0.0.2 rport 50005\r\n"
    "a=candidate:6 1 udp 2130706431 fe80::1 50006 typ host\r\n"
    "a=end-of-candidates\r\n"
)


class PolicyTests(SynchronousTestCase):
    def test_default_policy(self) -> None:
        """
        The default configuration denies loopback, link-local and metadata
        addresses and permits the rest.
        """
        policy = CandidatePolicy.from_config(Config())
        for address in ["127.0.0.1", "::1", "169.254.169.254", "fe80::1", "100.100.100.200"]:
            self.assertFalse(policy.permits(address), address)
        for address in ["192.0.2.7", "203.0.113.9", "10.0.0.2", "2001:db8::5"]:
            self.assertTrue(policy.permits(address), address)

    def test_allow_wins_over_deny(self) -> None:
        """
        An address in an allowed network is permitted even inside a denied
        one; allow one network and deny everything else for a strict list.
        """
        policy = CandidatePolicy(
            allow=(ip_network("127.0.0.1/32"),), deny=(ip_network("0.0.0.0/0"), ip_network("::/0"))
        )
        self.assertTrue(policy.permits("127.0.0.1"))
        self.assertFalse(policy.permits("127.0.0.2"))
        self.assertFalse(policy.permits("192.0.2.7"))
        self.assertFalse(policy.permits("not an address"))

    def test_offer_filtered(self) -> None:
        """
        Denied candidates and mDNS names (whose address cannot be checked
        before the server asks its network) leave the offer; the others and
        every other line stay as they were.
        """
        filtered, dropped = filter_candidates(OFFER, CandidatePolicy.from_config(Config()))
        self.assertEqual(
            [line.split()[4] for line in filtered.split("\r\n") if line.startswith("a=candidate:")],
            ["192.0.2.7", "203.0.113.9"],
        )
        self.assertEqual(dropped, ["127.0.0.1", "169.254.169.254", "0e5f9c1a-7c0d-4b8e.local", "fe80::1"])
        kept = [line for line in OFFER.split("\r\n") if not line.startswith("a=candidate:")]
        self.assertEqual([line for line in filtered.split("\r\n") if not line.startswith("a=candidate:")], kept)


class Catcher(DatagramProtocol):
    """Counts the datagrams (STUN checks) a UDP socket receives."""

    def __init__(self) -> None:
        self.received = 0

    def datagramReceived(self, data: bytes, addr: object) -> None:
        self.received += 1


def free_udp_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind((host, 0))
        return probe.getsockname()[1]


class ChecksTests(TestCase):
    timeout = 60

    async def test_checks_only_to_permitted_candidates(self) -> None:
        """
        A publisher's offer carries two extra candidates on loopback, at UDP
        sockets of the test's: with 127.0.0.1 allowed and the rest of
        loopback denied (the default), the server sends its connectivity
        checks to the allowed one again and again and never to the denied one.
        """
        from tests.rtc_support import noisy_speech_file, publisher
        from tests.test_live_manager import start_live, wait_for
        from tests.ws_support import connect_ws

        running = await start_live(self, ice_allow_networks=(ip_network("127.0.0.1/32"),))
        allowed, denied = Catcher(), Catcher()
        allowed_port = reactor.listenUDP(0, allowed, interface="127.0.0.1")
        self.addCleanup(allowed_port.stopListening)
        denied_port = reactor.listenUDP(0, denied, interface="127.0.0.2")
        self.addCleanup(denied_port.stopListening)
        alice = running.client()
        await alice.register("alice")
        ws = await connect_ws(self, running.base, alice)
        _, offer = await publisher(self, noisy_speech_file(self))
        extra = "".join(
            f"a=candidate:9{i} 1 udp 2130706431 {host} {port.getHost().port} typ host\r\n"
            for i, (host, port) in enumerate([("127.0.0.1", allowed_port), ("127.0.0.2", denied_port)])
        )
        offer = offer.replace("a=end-of-candidates\r\n", extra + "a=end-of-candidates\r\n", 1)
        self.assertIn("127.0.0.2", offer)
        reply = await ws.request({"v": 1, "type": "publish", "sdp": offer})
        self.assertEqual(reply["type"], "answer", reply)
        await wait_for(lambda: allowed.received >= 3, timeout=20.0)
        self.assertEqual(denied.received, 0)
        await deferLater(reactor, 0)
