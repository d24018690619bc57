"""
The host candidates of the server's answers: on the configured media
addresses and within the configured UDP port range
(L{denoisecast.live.mediaports}).

aioice gathers host candidates in ``Connection.get_component_candidates``,
binding every address of every interface on an ephemeral port, and has no
setting for either.  ``offer_host_candidates`` replaces that method on each
ICE connection of one peer connection, before its answer is made: host
candidates come from the plan (bound with L{PortAllocator}, announced with
the configured address), and aioice's own method still runs, with no
addresses, for whatever else it gathers (STUN and TURN candidates; the
server configures neither).  Private aiortc and aioice state: if it is not
what this expects, nothing is changed and the caller refuses the
connection rather than offer addresses or ports the operator did not open
(tests/test_live_hostcandidates.py has the canaries).
"""

from __future__ import annotations

import asyncio
import socket
from typing import Any

import aioice.ice
from aioice.candidate import Candidate, candidate_foundation, candidate_priority
from aioice.turn import UDP_SOCKET_BUFFER_SIZE
from aiortc import RTCPeerConnection

from denoisecast.live.mediaports import MediaAddress, MediaPlan


def ice_connections(pc: RTCPeerConnection) -> list[Any] | None:
    """
    The aioice connections of C{pc}'s ICE gatherers (each once: with BUNDLE
    the transceivers share one), or C{None} if aiortc's objects are not
    shaped as expected.
    """
    gatherers: list[Any] = []
    transports = [t.receiver.transport for t in pc.getTransceivers()]
    if pc.sctp is not None:
        transports.append(pc.sctp.transport)
    for dtls in transports:
        gatherer = getattr(getattr(dtls, "transport", None), "iceGatherer", None)
        if gatherer is None:
            return None
        if gatherer not in gatherers:
            gatherers.append(gatherer)
    connections = [getattr(g, "_connection", None) for g in gatherers]
    if not connections or not all(isinstance(c, aioice.ice.Connection) for c in connections):
        return None
    return connections


def offer_host_candidates(pc: RTCPeerConnection, plan: MediaPlan) -> bool:
    """
    Make C{pc} gather its host candidates from C{plan}.  Call after the
    remote description is set and before C{setLocalDescription}.  False
    (and nothing changed) if aiortc's or aioice's internals are not as
    expected or gathering has already begun.
    """
    connections = ice_connections(pc)
    if connections is None:
        return False
    for connection in connections:
        if getattr(connection, "_local_candidates_start", True) or not isinstance(
            getattr(connection, "_protocols", None), list
        ):
            return False
        if not callable(getattr(connection, "get_component_candidates", None)):
            return False
    for connection in connections:
        connection.get_component_candidates = _Gatherer(connection, plan)
    return True


class _Gatherer:
    """The replacement of one connection's C{get_component_candidates}."""

    def __init__(self, connection: Any, plan: MediaPlan) -> None:
        self._connection = connection
        self._plan = plan
        self._aioice_own = connection.get_component_candidates

    async def __call__(self, component: int, addresses: list[str], timeout: int = 5) -> list[Candidate]:
        connection = self._connection
        media = self._plan.addresses or tuple(
            MediaAddress(a, a)
            for a in aioice.ice.get_host_addresses(use_ipv4=connection._use_ipv4, use_ipv6=connection._use_ipv6)
        )
        loop = asyncio.get_running_loop()
        candidates: list[Candidate] = []
        for address in media:
            sock = self._plan.allocator.bind(address.bind)  # PortsExhausted ends the gathering
            try:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, UDP_SOCKET_BUFFER_SIZE)
            except OSError:
                pass
            _, protocol = await loop.create_datagram_endpoint(lambda: aioice.ice.StunProtocol(connection), sock=sock)
            # Closed with the connection from now on, whatever happens next.
            connection._protocols.append(protocol)
            port = sock.getsockname()[1]
            protocol.local_candidate = Candidate(
                foundation=candidate_foundation("host", "udp", address.announced),
                component=component,
                transport="udp",
                priority=candidate_priority(component, "host"),
                host=address.announced,
                port=port,
                type="host",
            )
            candidates.append(protocol.local_candidate)
        return candidates + await self._aioice_own(component=component, addresses=[], timeout=timeout)
