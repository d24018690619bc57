"""
Where a node's WebRTC media lives: the addresses its SDP answers offer as
host candidates, and the UDP ports it binds for them.

By default aioice offers every address of every interface on a random
ephemeral port, which neither a firewall rule nor a 1:1 NAT mapping can be
written for.  Media servers make both configuration (mediasoup's
``listenIps``/``announcedAddress`` and ``rtcMinPort``/``rtcMaxPort``,
Janus's ``nat_1_1_mapping`` and ``rtp_port_range``, LiveKit's ``node_ip``
and ``port_range_start``/``_end``); DenoiseCast's ``--media-address`` and
``--rtc-ports`` do the same.  This module holds the parsed values and the
port allocator; the crossing into aioice is ``live/rtc/hostcandidates.py``.
"""

from __future__ import annotations

import errno
import socket
from dataclasses import dataclass
from ipaddress import ip_address

#: The ports a range may use: none below 1024 (they need privileges, and
#: the well-known services live there).
LOWEST_PORT = 1024
HIGHEST_PORT = 65535


class MediaConfigError(ValueError):
    """A media address or port range that cannot be used; the message says why."""


class PortsExhausted(Exception):
    """Every port of the configured range is taken on one local address."""

    def __init__(self, ports: "PortRange", bind: str) -> None:
        super().__init__(f"No free UDP port in {ports} on {bind}")
        self.ports = ports
        self.bind = bind


@dataclass(frozen=True)
class MediaAddress:
    """
    One host candidate: C{announced} is the address the answer carries,
    C{bind} the local address the socket is bound to.  They differ behind a
    1:1 NAT (announce the public address, bind the private one or the
    wildcard, C{0.0.0.0}).
    """

    announced: str
    bind: str

    @classmethod
    def parse(cls, text: str) -> "MediaAddress":
        """
        C{ADDRESS} (announced and bound) or C{ANNOUNCED@BIND}, e.g.
        C{203.0.113.5@0.0.0.0}; IPv6 addresses as they are, without brackets.
        """
        announced, _, bind = text.strip().partition("@")
        bind = bind or announced
        for part, role in ((announced, "address"), (bind, "local address")):
            try:
                ip_address(part)
            except ValueError:
                raise MediaConfigError(
                    f"--media-address {text.strip()!r}: {role} {part!r} is not an IP address; "
                    "use ADDRESS or PUBLIC@LOCAL, e.g. 203.0.113.5@0.0.0.0."
                ) from None
        if ip_address(announced).is_unspecified:
            raise MediaConfigError(
                f"--media-address {text.strip()!r}: browsers cannot send to {announced}; "
                "announce a real address, e.g. 203.0.113.5@0.0.0.0."
            )
        if ip_address(announced).version != ip_address(bind).version:
            raise MediaConfigError(f"--media-address {text.strip()!r}: both addresses must be IPv4 or both IPv6.")
        return cls(announced, bind)

    def __str__(self) -> str:
        return self.announced if self.bind == self.announced else f"{self.announced}@{self.bind}"


def parse_media_addresses(text: str) -> tuple[MediaAddress, ...]:
    """Comma-separated media addresses (the option may also be repeated: the values are joined)."""
    addresses = tuple(MediaAddress.parse(item) for item in text.split(",") if item.strip())
    if len({a.announced for a in addresses}) != len(addresses):
        raise MediaConfigError("--media-address names the same address twice.")
    return addresses


@dataclass(frozen=True)
class PortRange:
    """The UDP ports C{low} to C{high}, both included."""

    low: int
    high: int

    @classmethod
    def parse(cls, text: str) -> "PortRange":
        """C{LOW-HIGH}, e.g. C{40000-40100}."""
        low_text, dash, high_text = text.strip().partition("-")
        try:
            low, high = int(low_text), int(high_text)
        except ValueError:
            raise MediaConfigError(f"--rtc-ports {text.strip()!r} is not a range such as 40000-40100.") from None
        if not dash or not LOWEST_PORT <= low <= high <= HIGHEST_PORT:
            raise MediaConfigError(
                f"--rtc-ports {text.strip()!r}: use LOW-HIGH with {LOWEST_PORT} <= LOW <= HIGH <= {HIGHEST_PORT}."
            )
        return cls(low, high)

    @property
    def size(self) -> int:
        return self.high - self.low + 1

    def split(self, parts: int) -> list["PortRange"]:
        """
        C{parts} disjoint ranges covering this one (one per worker process,
        so that no two processes ever race for a port).
        """
        if parts > self.size:
            raise MediaConfigError(f"--rtc-ports {self} has {self.size} ports, fewer than the {parts} workers.")
        step, extra = divmod(self.size, parts)
        ranges, low = [], self.low
        for index in range(parts):
            high = low + step - 1 + (1 if index < extra else 0)
            ranges.append(PortRange(low, high))
            low = high + 1
        return ranges

    def __str__(self) -> str:
        return f"{self.low}-{self.high}"


class PortAllocator:
    """
    Binds UDP sockets within a range, taking the ports in turn (not always
    the lowest free one, so a port a closed connection just gave up is not
    handed out again at once, while stray packets for it may still arrive).
    Without a range it binds port 0: an ephemeral port, as aioice does.
    """

    def __init__(self, ports: PortRange | None) -> None:
        self.ports = ports
        self._next = 0

    def bind(self, address: str) -> socket.socket:
        """
        A UDP socket bound to C{address} and a port of the range.

        @raise PortsExhausted: every port of the range is in use there.
        @raise OSError: anything else (no such local address).
        """
        family = socket.AF_INET6 if ip_address(address).version == 6 else socket.AF_INET
        if self.ports is None:
            return _bound(family, address, 0)
        for _ in range(self.ports.size):
            port = self.ports.low + self._next
            self._next = (self._next + 1) % self.ports.size
            try:
                return _bound(family, address, port)
            except OSError as error:
                if error.errno != errno.EADDRINUSE:
                    raise
        raise PortsExhausted(self.ports, address)


def _bound(family: int, address: str, port: int) -> socket.socket:
    sock = socket.socket(family, socket.SOCK_DGRAM)
    try:
        sock.setblocking(False)
        sock.bind((address, port))
    except BaseException:
        sock.close()
        raise
    return sock


@dataclass(frozen=True)
class MediaPlan:
    """
    The configured media addresses (none: every interface's address, as
    aioice finds them) and the allocator of their ports.
    """

    addresses: tuple[MediaAddress, ...]
    allocator: PortAllocator

    @classmethod
    def from_config(cls, config: object) -> "MediaPlan | None":
        """The plan of C{--media-address}/C{--rtc-ports}; C{None} when neither is set (aioice's own choice)."""
        addresses = tuple(getattr(config, "media_addresses", ()))
        ports = getattr(config, "rtc_ports", None)
        if not addresses and ports is None:
            return None
        return cls(addresses, PortAllocator(ports))


def media_address_problem(addresses: tuple[MediaAddress, ...]) -> str | None:
    """
    Why one of C{addresses} cannot be bound on this machine, or C{None}:
    checked at start-up, so a typo is one clear line, not a broadcast that
    never connects.
    """
    for address in addresses:
        try:
            _bound(socket.AF_INET6 if ip_address(address.bind).version == 6 else socket.AF_INET, address.bind, 0).close()
        except OSError as error:
            wildcard = "::" if ip_address(address.bind).version == 6 else "0.0.0.0"
            hint = (
                f"; for a 1:1 NAT mapping write {address.announced}@{wildcard}"
                if address.bind == address.announced and error.errno == errno.EADDRNOTAVAIL
                else ""
            )
            return f"Cannot use --media-address {address}: {error.strerror or error} on {address.bind}{hint}"
    return None
