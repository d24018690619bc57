"""
The peer connections' sockets drain on read (``denoisecast.live.rtc.sockets``):
every waiting datagram is read on one event, up to the cap, through the
transport's own protocol.  An aiortc, aioice or asyncio whose internals
changed fails here instead of silently reading one datagram per event.
"""

from __future__ import annotations

import asyncio
import socket
from typing import Any

from aiortc import RTCConfiguration, RTCPeerConnection
from twisted.trial.unittest import TestCase

from denoisecast.live.rtc.seam import aio
from denoisecast.live.rtc.sockets import MAX_DATAGRAMS_PER_READ, DrainingReader, drain_on_read


class Collect(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.received: list[bytes] = []

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.received.append(data)


def reader_of(transport: Any) -> Any:
    """The callback the loop runs when the transport's socket is readable."""
    key = transport._loop._selector.get_key(transport._sock_fd)
    return key.data[0]._callback


class DrainingReaderTests(TestCase):
    async def endpoint(self) -> tuple[Any, Collect, socket.socket]:
        loop = asyncio.get_event_loop()
        transport, protocol = await aio(
            loop.create_datagram_endpoint(Collect, local_addr=("127.0.0.1", 0))
        )
        self.addCleanup(transport.close)
        await aio(asyncio.sleep(0))  # the transport installs its reader on the next turn
        sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.addCleanup(sender.close)
        sender.connect(transport.get_extra_info("sockname"))
        return transport, protocol, sender

    async def test_one_event_reads_every_waiting_datagram(self) -> None:
        from denoisecast.live.rtc.sockets import _drains

        transport, protocol, sender = await self.endpoint()
        self.assertTrue(_drains(transport))
        reader = reader_of(transport)
        self.assertIsInstance(reader, DrainingReader)
        for i in range(5):
            sender.send(b"packet %d" % i)
        reader()
        self.assertEqual(protocol.received, [b"packet %d" % i for i in range(5)])
        reader()  # nothing waiting: returns without blocking or calling the protocol
        self.assertEqual(len(protocol.received), 5)

    async def test_one_event_reads_at_most_the_cap(self) -> None:
        from denoisecast.live.rtc.sockets import _drains

        transport, protocol, sender = await self.endpoint()
        self.assertTrue(_drains(transport))
        for i in range(MAX_DATAGRAMS_PER_READ + 4):
            sender.send(b"x")
        reader_of(transport)()
        self.assertEqual(len(protocol.received), MAX_DATAGRAMS_PER_READ)
        reader_of(transport)()
        self.assertEqual(len(protocol.received), MAX_DATAGRAMS_PER_READ + 4)

    async def test_a_transport_closed_while_reading_stops_the_reads(self) -> None:
        from denoisecast.live.rtc.sockets import _drains

        transport, protocol, sender = await self.endpoint()
        self.assertTrue(_drains(transport))
        reader = reader_of(transport)
        protocol.datagram_received = lambda data, addr: (protocol.received.append(data), transport.close())
        for i in range(3):
            sender.send(b"x")
        reader()
        self.assertEqual(len(protocol.received), 1)

    async def test_asyncio_alone_reads_one_datagram_per_event(self) -> None:
        """Why this exists: without it, one event is one datagram."""
        transport, protocol, sender = await self.endpoint()
        for i in range(3):
            sender.send(b"x")
        reader_of(transport)()
        self.assertEqual(len(protocol.received), 1)

    def test_unknown_transport_is_left_alone(self) -> None:
        from denoisecast.live.rtc.sockets import _drains

        self.assertFalse(_drains(object()))


class PeerConnectionTests(TestCase):
    async def test_every_gathered_socket_drains(self) -> None:
        client = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        server = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        self.addCleanup(lambda: aio(client.close()))
        self.addCleanup(lambda: aio(server.close()))
        client.addTransceiver("audio", direction="recvonly")
        await aio(client.setLocalDescription(await aio(client.createOffer())))
        await aio(server.setRemoteDescription(client.localDescription))
        await aio(server.setLocalDescription(await aio(server.createAnswer())))
        self.assertTrue(drain_on_read(server))
        transport = server.getTransceivers()[0].receiver.transport.transport
        protocols = transport.iceGatherer._connection._protocols
        self.assertTrue(protocols)
        for protocol in protocols:
            self.assertIsInstance(reader_of(protocol.transport), DrainingReader)

    async def test_connection_without_transceivers_is_reported(self) -> None:
        pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        self.addCleanup(lambda: aio(pc.close()))
        self.assertFalse(drain_on_read(pc))
