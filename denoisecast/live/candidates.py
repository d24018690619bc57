"""
Which remote ICE candidates the server may send connectivity checks to.

A client's offer lists addresses (candidates) and the server's ICE agent
sends STUN requests to each of them: without a policy, anyone who can log
in could point the server at its own loopback services, the link-local
network or a cloud provider's metadata endpoint.  Candidates outside the
policy are taken out of the offer before aiortc sees it, as media servers
do (Janus ``ice_enforce_list``/``ice_ignore_list``, mediasoup's
``listenIps``).

A candidate is permitted when its address is in an allowed network, else
when it is in no denied network.  mDNS candidates (``*.local``) are dropped
too: their address is only known once the server has asked its own link,
too late to check; browsers that hide their host addresses that way still
connect through the server-reflexive candidates they add and through the
peer-reflexive ones the server learns from their own checks, which only go
back to where an authenticated check came from.
"""

from __future__ import annotations

from dataclasses import dataclass
from ipaddress import IPv4Network, IPv6Network, ip_address
from typing import Any

Network = IPv4Network | IPv6Network

#: ``a=candidate:<foundation> <component> <transport> <priority> <address> <port> typ ...``
_ADDRESS_FIELD = 4


@dataclass(frozen=True)
class CandidatePolicy:
    allow: tuple[Network, ...] = ()
    deny: tuple[Network, ...] = ()

    @classmethod
    def from_config(cls, config: Any) -> "CandidatePolicy":
        return cls(allow=tuple(config.ice_allow_networks), deny=tuple(config.ice_deny_networks))

    def permits(self, address: str) -> bool:
        """Whether checks may be sent to C{address} (an IP address; anything else is not permitted)."""
        try:
            ip = ip_address(address.split("%", 1)[0])  # fe80::1%eth0: the zone is not part of the address
        except ValueError:
            return False
        if any(ip in network for network in self.allow if network.version == ip.version):
            return True
        return not any(ip in network for network in self.deny if network.version == ip.version)


def filter_candidates(sdp: str, policy: CandidatePolicy) -> tuple[str, list[str]]:
    """
    C{sdp} without the candidates C{policy} does not permit, and the
    addresses of those taken out (in order).  Every other line is kept
    byte for byte.
    """
    kept: list[str] = []
    dropped: list[str] = []
    for line in sdp.split("\r\n"):
        if line.startswith("a=candidate:"):
            fields = line[len("a=candidate:"):].split()
            address = fields[_ADDRESS_FIELD] if len(fields) > _ADDRESS_FIELD else ""
            if not policy.permits(address):
                dropped.append(address)
                continue
        kept.append(line)
    return "\r\n".join(kept), dropped
