"""
Reading every waiting datagram of a peer connection's sockets at once.

asyncio's datagram transport reads one datagram each time the selector says
its socket is readable, that is one per socket per turn of the event loop.
A publisher sends a packet every 20 ms, so as soon as one turn of the loop
takes longer than that (twenty broadcasts' output, two hundred listeners'
packets) the server reads its publishers more slowly than they send: the
kernel queue grows (measured: half a megabyte per socket within 20 s), audio
arrives later and later, then the queue overflows and drops packets, ICE
consent checks among them, until the publishers' browsers give up on the
connection.  Twisted's own UDP ports drain their socket on each read for the
same reason; ``drain_on_read`` gives a peer connection's sockets that
behaviour, up to ``MAX_DATAGRAMS_PER_READ`` at a time so that one flooded
socket cannot hold the loop.
"""

from __future__ import annotations

from typing import Any

from aiortc import RTCPeerConnection

#: Datagrams read from one socket per readiness event: 320 ms of a
#: publisher's audio, enough to catch up after any stall the loop survives.
MAX_DATAGRAMS_PER_READ = 16


class DrainingReader:
    """
    The read callback of one asyncio datagram transport, reading until the
    socket has nothing left (or the cap).  It uses the transport's own
    socket, protocol and error handling, so only the number of reads per
    event changes.
    """

    def __init__(self, transport: Any, limit: int = MAX_DATAGRAMS_PER_READ) -> None:
        self._transport = transport
        self._limit = limit

    def __call__(self) -> None:
        transport = self._transport
        for _ in range(self._limit):
            if transport._conn_lost or transport.is_closing():
                return  # closed by the protocol while handling an earlier datagram
            try:
                data, addr = transport._sock.recvfrom(transport.max_size)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                transport._protocol.error_received(exc)
                return
            except (SystemExit, KeyboardInterrupt):
                raise
            except BaseException as exc:
                transport._fatal_error(exc, "Fatal read error on datagram transport")
                return
            transport._protocol.datagram_received(data, addr)


def _drains(transport: Any) -> bool:
    """Install a ``DrainingReader`` on one transport, if it is the kind this knows."""
    needed = ("_sock", "_sock_fd", "_protocol", "_loop", "_conn_lost", "max_size", "_fatal_error")
    if not all(hasattr(transport, n) for n in needed) or not hasattr(transport, "is_closing"):
        return False
    loop = transport._loop
    if not hasattr(loop, "_add_reader") or not hasattr(loop, "_remove_reader"):
        return False
    if transport.is_closing():
        return True
    loop._remove_reader(transport._sock_fd)
    loop._add_reader(transport._sock_fd, DrainingReader(transport))
    return True


def drain_on_read(pc: RTCPeerConnection) -> bool:
    """
    Make every socket the connection gathered read all its waiting datagrams
    on each event.  Call after ``setLocalDescription`` (gathering is done
    and the transports' own readers are installed by then).  Private aiortc,
    aioice and asyncio state: if it is not what this expects, the sockets
    keep asyncio's one read per event and this returns False.
    """
    protocols: list[Any] = []
    for transceiver in pc.getTransceivers():
        dtls = transceiver.receiver.transport
        connection = getattr(getattr(getattr(dtls, "transport", None), "iceGatherer", None), "_connection", None)
        found = getattr(connection, "_protocols", None)
        if not isinstance(found, list):
            return False
        protocols += [p for p in found if p not in protocols]
    if not protocols:
        return False
    return all(_drains(getattr(protocol, "transport", None)) for protocol in protocols)
