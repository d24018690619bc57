"""
What a client behind a reverse proxy really used: scheme, host and address.

Behind a TLS proxy (nginx terminating HTTPS), the server sees plain HTTP from
the proxy's address, so the Origin check refuses every POST, cookies lose
their C{Secure} flag and every client shares the proxy's address in rate
limits and logs.  The proxy says what it saw in C{X-Forwarded-Proto},
C{X-Forwarded-Host} and C{X-Forwarded-For} (or the standard C{Forwarded}
header, RFC 7239), but any client can send those headers too.  So they are
believed only when the connection comes from a configured trusted proxy, and
only the one header family the operator names (the other could be forged by
the client and passed through untouched).

The client address is found the way nginx's C{real_ip_recursive} does: walk
the forwarded-for chain from the right (the nearest proxy's entry first),
skipping trusted proxies; the first address that is not a trusted proxy is
the client.  Entries to its left were written by the client and are ignored.
Malformed values are ignored as a whole, falling back to what the connection
itself shows, so a hostile header can neither crash a request nor choose
its rate-limit key.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from twisted.web.http import Request

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address

#: The header families a proxy may speak (``--proxy-header``).
X_FORWARDED = "x-forwarded"
FORWARDED = "forwarded"
PROXY_HEADERS = (X_FORWARDED, FORWARDED)

#: Longest forwarded chain considered; longer ones are ignored as hostile.
MAX_HOPS = 32
MAX_HEADER_CHARS = 8192

_HOST = re.compile(r"(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,62})(?:\.[A-Za-z0-9-]{1,63})*\.?|\[[0-9A-Fa-f:.]+\])(?::[0-9]{1,5})?")
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")


def parse_network(text: str) -> Network:
    """
    An address or network (C{10.0.0.1}, C{10.0.0.0/8}, C{::1}); raises
    C{ValueError} naming the text when it is neither.
    """
    try:
        return ipaddress.ip_network(text.strip(), strict=False)
    except ValueError:
        raise ValueError(f"{text.strip()!r} is not an IP address or network") from None


def parse_address(text: str) -> Address | None:
    """
    An IP address, or C{None}; IPv4-mapped IPv6 addresses become IPv4 and
    a zone (C{%eth0}) is dropped, so one client has one key.
    """
    try:
        address = ipaddress.ip_address(text.strip().split("%", 1)[0])
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


class TrustedProxies:
    """
    The addresses and networks whose forwarded headers are believed.
    """

    def __init__(self, networks: Iterable[Network] = ()) -> None:
        self.networks = tuple(networks)

    def __bool__(self) -> bool:
        return bool(self.networks)

    def trusts(self, host: str | None) -> bool:
        address = parse_address(host) if host else None
        if address is None:
            return False
        return any(address.version == net.version and address in net for net in self.networks)


@dataclass(frozen=True)
class ClientView:
    """
    The request as the client made it.

    @ivar scheme: C{http} or C{https}, as the client connected.
    @ivar host: the host (and port) the client addressed: the Host header, or
        the trusted proxy's forwarded host.
    @ivar address: the client's IP address, the key for rate limits and logs.
    @ivar proxied: whether a trusted proxy's headers were used.
    """

    scheme: str
    host: str
    address: str
    proxied: bool = False

    @property
    def origin(self) -> str:
        """The Origin a browser on this page sends (default port left out)."""
        return same_origin_form(f"{self.scheme}://{self.host}")


def same_origin_form(origin: str) -> str:
    """C{origin} lower-cased, without its scheme's default port."""
    origin = origin.strip().lower()
    for scheme, port in (("http://", ":80"), ("https://", ":443")):
        if origin.startswith(scheme) and origin.endswith(port):
            return origin[: -len(port)]
    return origin


@dataclass(frozen=True)
class _Hop:
    address: str | None
    proto: str | None = None
    host: str | None = None


def _proto(value: str | None) -> str | None:
    value = (value or "").strip().lower()
    return value if value in ("http", "https") else None


def _host(value: str | None) -> str | None:
    value = (value or "").strip()
    return value if len(value) <= 255 and _HOST.fullmatch(value) else None


def _node_address(node: str) -> str | None:
    """
    The IP address of an RFC 7239 node (C{192.0.2.1:80}, C{"[2001:db8::1]:443"}),
    or C{None} for C{unknown}, obfuscated names and garbage.
    """
    node = node.strip()
    if node.startswith("["):
        inside, bracket, _ = node[1:].partition("]")
        address = parse_address(inside) if bracket else None
    else:
        address = parse_address(node.rsplit(":", 1)[0] if node.count(":") == 1 else node)
    return str(address) if address is not None else None


def _split_quoted(text: str, separator: str) -> list[str] | None:
    """
    C{text} split at C{separator} outside quoted strings; C{None} if a quote
    is left open.
    """
    parts: list[str] = []
    current: list[str] = []
    quoted = escaped = False
    for char in text:
        if escaped:
            escaped = False
        elif quoted and char == "\\":
            escaped = True
        elif char == '"':
            quoted = not quoted
        elif char == separator and not quoted:
            parts.append("".join(current))
            current = []
            continue
        current.append(char)
    if quoted or escaped:
        return None
    parts.append("".join(current))
    return parts


def _unquote(value: str) -> str | None:
    value = value.strip()
    if value.startswith('"'):
        if len(value) < 2 or not value.endswith('"'):
            return None
        return re.sub(r"\\(.)", r"\1", value[1:-1])
    return value if _TOKEN.fullmatch(value) else None


def parse_forwarded(header: str) -> list[dict[str, str]] | None:
    """
    The elements of a C{Forwarded} header (RFC 7239), each a dict of its
    lower-cased parameter names to values; C{None} when the header is
    malformed anywhere (then none of it is believed).
    """
    if len(header) > MAX_HEADER_CHARS:
        return None
    elements = _split_quoted(header, ",")
    if elements is None or len(elements) > MAX_HOPS:
        return None
    parsed = []
    for element in elements:
        pairs = _split_quoted(element, ";")
        if pairs is None:
            return None
        fields: dict[str, str] = {}
        for pair in pairs:
            if not pair.strip():
                continue
            name, equals, raw = pair.partition("=")
            name = name.strip().lower()
            value = _unquote(raw) if equals else None
            if not _TOKEN.fullmatch(name) or value is None or name in fields:
                return None
            fields[name] = value
        parsed.append(fields)
    return parsed


def _list(values: list[str]) -> list[str] | None:
    joined = ",".join(values)
    if len(joined) > MAX_HEADER_CHARS:
        return None
    items = [item.strip() for item in joined.split(",")] if joined.strip() else []
    return items if len(items) <= MAX_HOPS else None


def _hops(headers: Callable[[str], list[str]], family: str) -> list[_Hop] | None:
    """
    The proxies' hops, nearest proxy last, from the configured header family;
    C{None} when the headers are absent or malformed.
    """
    if family == FORWARDED:
        raw = headers("forwarded")
        elements = parse_forwarded(",".join(raw)) if raw else None
        if not elements:
            return None
        return [
            _Hop(
                _node_address(element.get("for", "")),
                _proto(element.get("proto")) if "proto" in element else None,
                _host(element.get("host")) if "host" in element else None,
            )
            for element in elements
        ]
    chain = _list(headers("x-forwarded-for"))
    protos = _list(headers("x-forwarded-proto"))
    hosts = _list(headers("x-forwarded-host"))
    if chain is None or protos is None or hosts is None or not (chain or protos or hosts):
        return None
    # Proxies usually set one proto and host for the whole chain; the
    # nearest proxy's value (the last) is the one it vouches for.
    proto = _proto(protos[-1]) if protos else None
    host = _host(hosts[-1]) if hosts else None
    if not chain:
        return [_Hop(None, proto, host)]
    hops = [_Hop(str(a) if (a := parse_address(item)) else None) for item in chain]
    hops[-1] = _Hop(hops[-1].address, proto, host)
    return hops


def resolve_client(
    peer: str,
    secure: bool,
    host: str,
    headers: Callable[[str], list[str]],
    trusted: TrustedProxies,
    family: str = X_FORWARDED,
) -> ClientView:
    """
    The client's view of a connection from C{peer} (TLS when C{secure}) that
    named C{host}: forwarded headers are used only when C{peer} is a trusted
    proxy.  C{headers(name)} gives a header's raw values (lower-case name).
    """
    peer_address = parse_address(peer)
    direct = ClientView(
        "https" if secure else "http", host, str(peer_address) if peer_address else peer
    )
    if not trusted.trusts(peer):
        return direct
    hops = _hops(headers, family)
    if hops is None:
        return direct
    # Walk from the nearest proxy outwards while the hops are trusted proxies.
    address = direct.address
    scheme, forwarded_host = None, None
    for hop in reversed(hops):
        scheme = hop.proto or scheme
        forwarded_host = hop.host or forwarded_host
        if hop.address is None:
            break
        address = hop.address
        if not trusted.trusts(hop.address):
            break
    return ClientView(scheme or direct.scheme, forwarded_host or host, address, proxied=True)


def request_headers(request: Request) -> Callable[[str], list[str]]:
    """C{headers(name)} for L{resolve_client} over a Twisted request."""

    def get(name: str) -> list[str]:
        return [
            value.decode("latin-1")
            for value in request.requestHeaders.getRawHeaders(name.encode(), [])
        ]

    return get


def client_view(request: Request) -> ClientView:
    """
    The L{ClientView} of a request served by DenoiseCast's site (computed
    once per request by L{denoisecast.web.request.DenoiseCastRequest}); for
    other requests, what the connection shows.
    """
    view = getattr(request, "client_view", None)
    if callable(view):
        result: ClientView = view()
        return result
    peer = request.getClientAddress()
    return ClientView(
        "https" if request.isSecure() else "http",
        (request.getHeader(b"host") or b"").decode("latin-1"),
        getattr(peer, "host", "unknown"),
    )


def client_address(request: Request) -> str:
    """
    The real client address of C{request}: the key for per-address rate
    limits and the address in logs.  Behind a trusted proxy it is the
    address the proxy saw, otherwise the connection's peer.
    """
    return client_view(request).address
