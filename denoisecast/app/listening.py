"""
Listening with ``SO_REUSEPORT``, so that several server processes share one
address and the kernel spreads new connections across them.

Twisted's endpoints have no such option, so the socket is made here and
handed to the reactor with ``adoptStreamPort`` (what Twisted's documentation
describes for servers of several processes); TLS wraps the factory as
``reactor.listenSSL`` does.  The endpoint string is read with Twisted's own
parser and the port, interface, backlog and TLS context taken from the
endpoint it builds: private attributes of Twisted's TCP and SSL endpoints,
checked here (anything else is a clear configuration error) and by
tests/test_listening.py.
"""

from __future__ import annotations

import socket
from ipaddress import ip_address
from typing import Any

from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.endpoints import SSL4ServerEndpoint, TCP4ServerEndpoint, TCP6ServerEndpoint, serverFromString
from twisted.internet.interfaces import IListeningPort, IProtocolFactory
from twisted.protocols.tls import TLSMemoryBIOFactory


class ReusePortError(ValueError):
    """An endpoint that cannot be shared with SO_REUSEPORT; the message says which."""


class ReusePortEndpoint:
    """A TCP (or TLS) server endpoint whose socket has C{SO_REUSEPORT} set."""

    def __init__(
        self, reactor: Any, interface: str, port: int, backlog: int = 50, tls_context: Any = None
    ) -> None:
        self._reactor = reactor
        self.interface = interface
        self.port = port
        self.backlog = backlog
        self.tls_context = tls_context

    @property
    def family(self) -> socket.AddressFamily:
        return socket.AF_INET6 if ip_address(self.interface or "0.0.0.0").version == 6 else socket.AF_INET

    def listen(self, factory: IProtocolFactory) -> "Deferred[IListeningPort]":
        try:
            sock = reuse_port_socket(self.family, self.interface or "0.0.0.0", self.port, self.backlog)
        except OSError as error:
            return fail(error)
        try:
            if self.tls_context is not None:
                factory = TLSMemoryBIOFactory(self.tls_context, False, factory)
            listening: IListeningPort = self._reactor.adoptStreamPort(sock.fileno(), self.family, factory)
        except BaseException:
            return fail()
        finally:
            sock.close()  # the reactor holds its own duplicate of the descriptor
        return succeed(listening)


def reuse_port_socket(family: int, interface: str, port: int, backlog: int) -> socket.socket:
    """A listening, non-blocking TCP socket on C{interface}:C{port} with SO_REUSEPORT (and SO_REUSEADDR) set."""
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind((interface, port))
        sock.listen(backlog)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


def reuse_port_endpoint(reactor: Any, description: str) -> ReusePortEndpoint:
    """
    The endpoint of C{description} (``tcp:``, ``tcp6:`` or ``ssl:``) with
    SO_REUSEPORT.

    @raise ReusePortError: another kind of endpoint (a UNIX socket, a
        systemd-passed descriptor), or Twisted's endpoints changed shape.
    """
    try:
        endpoint = serverFromString(reactor, description)
    except (ValueError, TypeError, KeyError) as error:
        raise ReusePortError(f"--listen {description!r}: {error}") from None
    if not isinstance(endpoint, (TCP4ServerEndpoint, TCP6ServerEndpoint, SSL4ServerEndpoint)):
        raise ReusePortError(
            f"--listen {description!r}: sharing a port (--reuse-port, --workers) needs a tcp:, tcp6: or ssl: endpoint."
        )
    fields = {name: getattr(endpoint, name, None) for name in ("_port", "_interface", "_backlog")}
    if not isinstance(fields["_port"], int) or not isinstance(fields["_interface"], str):
        raise ReusePortError("This Twisted's endpoints are not as DenoiseCast expects; --reuse-port cannot be used.")
    backlog = fields["_backlog"] if isinstance(fields["_backlog"], int) else 50
    tls = getattr(endpoint, "_sslContextFactory", None) if isinstance(endpoint, SSL4ServerEndpoint) else None
    if isinstance(endpoint, SSL4ServerEndpoint) and tls is None:
        raise ReusePortError("This Twisted's TLS endpoint is not as DenoiseCast expects; --reuse-port cannot be used.")
    interface = fields["_interface"] or ("::" if isinstance(endpoint, TCP6ServerEndpoint) else "0.0.0.0")
    return ReusePortEndpoint(reactor, interface, fields["_port"], backlog, tls)


def listening_endpoint(reactor: Any, description: str, reuse_port: bool) -> Any:
    """The endpoint to listen on: Twisted's own, or one with SO_REUSEPORT."""
    if reuse_port:
        return reuse_port_endpoint(reactor, description)
    return serverFromString(reactor, description)

