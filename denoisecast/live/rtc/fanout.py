"""
Sending a broadcast's shared Opus packets to each of its listeners.

aiortc's RTP sender runs a coroutine per listener and walks every packet
through a track queue, the encoder's ``pack()``, a fresh ``RtpPacket``, a
header-extension map and three awaited transport layers before one datagram
leaves.  With a broadcast's packets already encoded, all that differs
between two listeners is the RTP header (SSRC, sequence number, timestamp
origin), the SRTP keys and the address, so ``ListenerOutput`` sends a
listener's packets itself: patch a prepared header, protect with the
connection's own SRTP session, one ``sendto`` on the ICE pair aiortc
nominated.  Everything else stays aiortc's: ICE and its consent checks,
DTLS, incoming RTCP, and the sender reports, whose counters this keeps
current.

That reaches into aiortc's private state; ``ListenerOutput`` checks it is
there when it is attached and otherwise feeds aiortc's own sender through
a ``PacketTrack`` (slower, same sound), and a test fails on any aiortc
whose internals no longer match.
"""

from __future__ import annotations

import asyncio
import random
import struct
from typing import NamedTuple

import av
from aioice.ice import StunProtocol
from aiortc import clock
from aiortc.rtcrtpparameters import RTCRtpSendParameters
from aiortc.rtcrtpsender import RTCRtpSender
from aiortc.rtp import HeaderExtensionsMap, RtpPacket

from denoisecast.live.rtc.media import PacketTrack
from denoisecast.runtime.logs import logger

#: Bytes a listener's socket may have queued (in asyncio's transport, the
#: kernel refused them) before its packets are dropped instead: a listener
#: who cannot keep up loses audio, the server does not grow its memory.
MAX_QUEUED_BYTES = 64 * 1024

#: Sequence number and timestamp, right after the first two header bytes.
_SEQUENCE_AND_TIMESTAMP = struct.Struct("!HI")

#: The sender's private counters for its RTCP sender reports.
_REPORT_COUNTERS = tuple(
    f"_RTCRtpSender__{name}" for name in ("ntp_timestamp", "rtp_timestamp", "octet_count", "packet_count")
)


class SharedPacket(NamedTuple):
    """One 20 ms Opus packet of a broadcast, as every listener sends it."""

    packet: av.Packet
    pts: int
    payload: bytes

    @classmethod
    def of(cls, packet: av.Packet) -> "SharedPacket":
        return cls(packet, int(packet.pts or 0), bytes(packet))


def sends_directly(sender: RTCRtpSender) -> bool:
    """Whether this aiortc sender has the private state direct sending needs."""
    return isinstance(getattr(sender, "_ssrc", None), int) and all(
        isinstance(getattr(sender, name, None), int) for name in _REPORT_COUNTERS
    )


class ListenerOutput:
    """
    What one listener's peer connection sends: the broadcast's shared
    packets, sent directly (see the module docstring) or through aiortc.
    """

    log = logger()

    def __init__(self) -> None:
        #: The sender's track: idle when sending directly (it only ends the sender).
        self.track = PacketTrack()
        self.direct = False
        self.sent = 0
        self._sender: RTCRtpSender | None = None
        self._header: bytearray | None = None
        self._sequence = 0
        self._origin = 0
        #: Sends through a TURN relay still running: held, so none is
        #: collected half-way, and their errors are logged.
        self._relayed: set[asyncio.Future[None]] = set()

    @property
    def late(self) -> int:
        """Packets this listener lost because it could not keep up."""
        return self.track.late

    def attach(self, sender: RTCRtpSender) -> None:
        """
        Take over C{sender}'s RTP packets; call before the connection starts.

        The negotiated payload type, header extensions and MID arrive in
        the sender's C{send()} when the connection is up, so this wraps it.
        """
        self._sender = sender
        if not sends_directly(sender):
            self.log.warn("aiortc's sender internals differ; listeners are sent to through aiortc")
            return
        start = sender.send

        async def send(parameters: RTCRtpSendParameters) -> None:
            self._prepare(parameters)
            await start(parameters)

        # Wrapping aiortc's method on this one sender is the seam (see the module docstring).
        sender.send = send  # type: ignore[method-assign]
        self.direct = True

    def _prepare(self, parameters: RTCRtpSendParameters) -> None:
        assert self._sender is not None
        extensions = HeaderExtensionsMap()
        extensions.configure(parameters)
        payload_type = parameters.codecs[0].payloadType
        assert payload_type is not None  # a negotiated codec has one
        template = RtpPacket(payload_type=payload_type, ssrc=self._sender._ssrc)
        template.marker = 1  # one packet per audio frame: each is the last of its frame
        template.extensions.mid = parameters.muxId
        self._header = bytearray(template.serialize(extensions))
        # Random starts, as RFC 3550 asks (the lower half leaves room before wrapping).
        self._sequence = random.randint(0, 32767)
        self._origin = random.getrandbits(32)

    def send(self, packets: list[SharedPacket]) -> None:
        if self.direct:
            try:
                self._send_directly(packets)
                return
            except AttributeError:
                # aiortc's transports changed under us: its own sender, which
                # is running and waiting on the track, takes over.
                self.log.failure("Sending directly failed; this listener is sent to through aiortc")
                self.direct = False
        for shared in packets:
            self.track.offer(shared.packet)

    def _send_directly(self, packets: list[SharedPacket]) -> None:
        header, sender = self._header, self._sender
        if header is None or sender is None or not packets:
            return  # not connected yet: a listener hears from the moment it is
        dtls = sender.transport
        if dtls.state != "connected":
            return
        pair = dtls.transport._connection._nominated.get(1)
        if pair is None:
            return
        protect = dtls._tx_srtp.protect
        address = pair.remote_addr
        protocol = pair.protocol
        if isinstance(protocol, StunProtocol) and protocol.transport is not None:
            # asyncio's selector datagram transport has it; typeshed's DatagramTransport does not.
            if protocol.transport.get_write_buffer_size() > MAX_QUEUED_BYTES:  # type: ignore[attr-defined]
                self.track.late += len(packets)
                return
            sendto = protocol.transport.sendto
        else:  # a TURN relay wraps each datagram; it has only the coroutine

            def sendto(data: bytes, address: tuple[str, int]) -> None:
                sending = asyncio.ensure_future(protocol.send_data(data, address))
                self._relayed.add(sending)
                sending.add_done_callback(self._relayed_sent)

        sequence, octets = self._sequence, 0
        timestamp = 0
        for shared in packets:
            timestamp = (self._origin + shared.pts) & 0xFFFFFFFF
            _SEQUENCE_AND_TIMESTAMP.pack_into(header, 2, sequence, timestamp)
            sendto(protect(bytes(header) + shared.payload), address)
            sequence = (sequence + 1) & 0xFFFF
            octets += len(shared.payload)
        self._sequence = sequence
        self.sent += len(packets)
        ntp, rtp, octet_count, packet_count = _REPORT_COUNTERS
        setattr(sender, ntp, clock.current_ntp_time())
        setattr(sender, rtp, timestamp)
        setattr(sender, octet_count, getattr(sender, octet_count) + octets)
        setattr(sender, packet_count, getattr(sender, packet_count) + len(packets))

    def _relayed_sent(self, sending: "asyncio.Future[None]") -> None:
        self._relayed.discard(sending)
        if not sending.cancelled() and sending.exception() is not None:
            self.log.warn("Sending to a listener through TURN failed: {error!r}", error=sending.exception())

    def stop(self) -> None:
        self.track.stop()
