"""
Forwarded headers from trusted proxies: parsing (with hostile values), and
what the API does with them (Origin check, secure cookies, rate-limit keys).
"""

from __future__ import annotations

import ipaddress

from twisted.trial.unittest import TestCase

from denoisecast.app.config import Config, ConfigError
from denoisecast.web.forwarded import (
    FORWARDED,
    X_FORWARDED,
    ClientView,
    TrustedProxies,
    parse_forwarded,
    resolve_client,
)
from tests.support import start_server

PROXIES = TrustedProxies([ipaddress.ip_network("10.0.0.0/8"), ipaddress.ip_network("::1")])


def view(peer: str, family: str = X_FORWARDED, secure: bool = False, host: str = "internal:8080", **headers: str) -> ClientView:
    named = {name.replace("_", "-").lower(): value for name, value in headers.items()}
    return resolve_client(peer, secure, host, lambda n: [named[n]] if n in named else [], PROXIES, family)


class ResolveTests(TestCase):
    def test_untrusted_peer_headers_ignored(self) -> None:
        """
        A client that is not a trusted proxy cannot claim another address,
        scheme or host.
        """
        got = view("203.0.113.9", x_forwarded_for="1.2.3.4", x_forwarded_proto="https", x_forwarded_host="evil.example")
        self.assertEqual(got, ClientView("http", "internal:8080", "203.0.113.9", proxied=False))

    def test_trusted_proxy_believed(self) -> None:
        """From a trusted proxy, the forwarded scheme, host and client are used."""
        got = view("10.1.2.3", x_forwarded_for="198.51.100.7", x_forwarded_proto="https", x_forwarded_host="cast.example.org")
        self.assertEqual(got, ClientView("https", "cast.example.org", "198.51.100.7", proxied=True))
        self.assertEqual(got.origin, "https://cast.example.org")

    def test_forged_left_entries_skipped(self) -> None:
        """
        A client's own X-Forwarded-For (which nginx's $proxy_add_x_forwarded_for
        keeps on the left) does not choose the address: the walk from the right
        stops at the first address that is not a trusted proxy.
        """
        got = view("10.0.0.1", x_forwarded_for="6.6.6.6, 198.51.100.7, 10.0.0.2")
        self.assertEqual(got.address, "198.51.100.7")

    def test_all_trusted_chain(self) -> None:
        """A chain of trusted proxies only: the leftmost is the client."""
        self.assertEqual(view("10.0.0.1", x_forwarded_for="10.9.9.9, 10.0.0.2").address, "10.9.9.9")

    def test_garbage_entries(self) -> None:
        """
        Malformed addresses stop the walk at the last trusted hop, so a client
        cannot rotate garbage to dodge its rate limit, and nothing raises.
        """
        for hostile in ("not-an-ip", "1.2.3.4.5", "", "\x00", "999.1.1.1", "[::1]", "1.2.3.4%zz, x"):
            got = view("10.0.0.1", x_forwarded_for=f"{hostile}, 10.0.0.2")
            self.assertIn(got.address, ("10.0.0.2",), hostile)

    def test_bad_proto_and_host_ignored(self) -> None:
        """
        A scheme other than http/https and a host with spaces, slashes, @ or
        CRLF fall back to what the connection shows.
        """
        for proto in ("ftp", "https, javascript", "HTTPS x", ""):
            got = view("10.0.0.1", x_forwarded_proto=proto, x_forwarded_for="1.1.1.1")
            self.assertEqual(got.scheme, "http", proto)
        for host in ("evil.example/path", "a b", "user@host", "host\r\nX: y", "x" * 300, "host:99999999"):
            got = view("10.0.0.1", x_forwarded_host=host, x_forwarded_for="1.1.1.1")
            self.assertEqual(got.host, "internal:8080", host)

    def test_too_many_hops_ignored(self) -> None:
        """A chain longer than 32 hops is not believed at all."""
        chain = ", ".join(["10.0.0.5"] * 40)
        self.assertEqual(view("10.0.0.1", x_forwarded_for=chain, x_forwarded_proto="https").scheme, "http")

    def test_ipv4_mapped_and_ipv6(self) -> None:
        """IPv4-mapped peers match IPv4 networks; IPv6 addresses are kept."""
        got = view("::ffff:10.0.0.1", x_forwarded_for="2001:db8::7")
        self.assertEqual(got.address, "2001:db8::7")
        self.assertEqual(view("::1", x_forwarded_for="192.0.2.1").address, "192.0.2.1")

    def test_other_family_ignored(self) -> None:
        """
        With --proxy-header forwarded, X-Forwarded-* (which a client could pass
        through such a proxy) is ignored, and the other way round.
        """
        got = view("10.0.0.1", FORWARDED, x_forwarded_for="1.1.1.1", x_forwarded_proto="https")
        self.assertEqual((got.address, got.scheme), ("10.0.0.1", "http"))
        got = view("10.0.0.1", X_FORWARDED, forwarded="for=1.1.1.1;proto=https")
        self.assertEqual((got.address, got.scheme), ("10.0.0.1", "http"))

    def test_forwarded_header(self) -> None:
        """RFC 7239: quoted IPv6 with port, proto and host from the client-facing hop."""
        got = view(
            "10.0.0.1",
            FORWARDED,
            forwarded='for=6.6.6.6;proto=http, for="[2001:db8:cafe::17]:4711";proto=https;host=cast.example.org, for=10.0.0.2',
        )
        self.assertEqual(got, ClientView("https", "cast.example.org", "2001:db8:cafe::17", proxied=True))

    def test_forwarded_obfuscated_and_unknown(self) -> None:
        """C{for=unknown} or an obfuscated node stops the walk at the trusted hop."""
        self.assertEqual(view("10.0.0.1", FORWARDED, forwarded="for=unknown").address, "10.0.0.1")
        self.assertEqual(view("10.0.0.1", FORWARDED, forwarded="for=_hidden, for=10.0.0.3").address, "10.0.0.3")

    def test_forwarded_malformed(self) -> None:
        """
        Malformed Forwarded headers are ignored whole: open quotes, missing
        values, repeated parameters, bad tokens, oversized headers.
        """
        for hostile in (
            'for="1.1.1.1', "for", "for=1.1.1.1;for=2.2.2.2", "f r=1.1.1.1", 'for=1.1.1.1;proto="https',
            "for=" + "1" * 9000, "for=1.1.1.1\\", ";;;=", 'for="\\',
        ):
            got = view("10.0.0.1", FORWARDED, forwarded=hostile + ";proto=https")
            self.assertEqual((got.address, got.scheme), ("10.0.0.1", "http"), hostile)

    def test_parse_forwarded(self) -> None:
        """Quoted strings may hold commas, semicolons and escapes."""
        self.assertEqual(
            parse_forwarded('for="a,b;c\\"d";by=x, proto=https'),
            [{"for": 'a,b;c"d', "by": "x"}, {"proto": "https"}],
        )
        self.assertIsNone(parse_forwarded('for="open'))


class ConfigTests(TestCase):
    def test_trusted_proxies_option(self) -> None:
        """Addresses and networks parse; anything else is a clear error."""
        config = Config.resolve({"trusted-proxies": "127.0.0.1, 10.0.0.0/8,::1"}, {})
        self.assertEqual([str(n) for n in config.trusted_proxies], ["127.0.0.1/32", "10.0.0.0/8", "::1/128"])
        with self.assertRaises(ConfigError) as caught:
            Config.resolve({"trusted-proxies": "127.0.0.1,proxy.example"}, {})
        self.assertIn("'proxy.example'", str(caught.exception))
        with self.assertRaises(ConfigError):
            Config.resolve({"proxy-header": "x-real-ip"}, {})
        self.assertEqual(Config.resolve({}, {"DENOISECAST_PROXY_HEADER": "Forwarded"}).proxy_header, FORWARDED)


HTTPS_PROXY = {"X-Forwarded-Proto": "https", "X-Forwarded-Host": "cast.example.org", "X-Forwarded-For": "198.51.100.7"}


class ApiBehindProxyTests(TestCase):
    async def test_post_through_trusted_tls_proxy(self) -> None:
        """
        Behind a trusted TLS proxy, a browser's POST (Origin https://host) is
        accepted and its cookies are Secure; the same POST from an untrusted
        peer is refused with bad_origin.
        """
        trusted = await start_server(self, trusted_proxies=(ipaddress.ip_network("127.0.0.1"),))
        client = trusted.client()
        headers = {**HTTPS_PROXY, "Origin": "https://cast.example.org"}
        reply = await client.post("/api/auth/register", {"username": "alice", "password": "correct horse"}, headers=headers)
        self.assertEqual(reply.status, 201, reply.body)
        cookies = reply.headers.getRawHeaders("set-cookie")
        self.assertTrue(cookies and all("Secure" in c for c in cookies), cookies)

        untrusted = await start_server(self)
        other = untrusted.client()
        reply = await other.post("/api/auth/register", {"username": "alice", "password": "correct horse"}, headers=headers)
        self.assertEqual((reply.status, reply.error_code), (403, "bad_origin"))

    async def test_post_with_rfc7239_forwarded(self) -> None:
        """
        With --proxy-header forwarded, a trusted proxy's C{Forwarded} header
        (quoted IPv6 client, https, host) is honoured for the Origin check and
        the Secure cookie, and X-Forwarded-Proto is not.
        """
        server = await start_server(
            self, trusted_proxies=(ipaddress.ip_network("127.0.0.1"),), proxy_header=FORWARDED
        )
        body = {"username": "alice", "password": "correct horse"}
        ignored = await server.client().post(
            "/api/auth/register", body, headers={**HTTPS_PROXY, "Origin": "https://cast.example.org"}
        )
        self.assertEqual((ignored.status, ignored.error_code), (403, "bad_origin"))
        reply = await server.client().post(
            "/api/auth/register",
            body,
            headers={
                "Forwarded": 'for="[2001:db8::7]:4711";proto=https;host=cast.example.org',
                "Origin": "https://cast.example.org",
            },
        )
        self.assertEqual(reply.status, 201, reply.body)
        self.assertTrue(all("Secure" in c for c in reply.headers.getRawHeaders("set-cookie") or []))

    async def test_forged_origin_still_refused(self) -> None:
        """Through the trusted proxy, another site's Origin is still refused."""
        server = await start_server(self, trusted_proxies=(ipaddress.ip_network("127.0.0.1"),))
        reply = await server.client().post(
            "/api/auth/register",
            {"username": "alice", "password": "correct horse"},
            headers={**HTTPS_PROXY, "Origin": "https://evil.example"},
        )
        self.assertEqual((reply.status, reply.error_code), (403, "bad_origin"))

    async def test_login_limit_keyed_on_real_client(self) -> None:
        """
        The per-address login limit counts the forwarded client address: one
        client behind the proxy reaching it does not lock out another client
        of the same proxy.
        """
        server = await start_server(self, trusted_proxies=(ipaddress.ip_network("127.0.0.1"),))
        client = server.client()
        await client.register("alice")
        guesser = {"X-Forwarded-For": "198.51.100.7"}
        for attempt in range(100):
            reply = await client.post(
                "/api/auth/login", {"username": f"nobody{attempt}", "password": "wrong password"}, headers=guesser
            )
            if reply.status == 429:
                break
        self.assertEqual(reply.status, 429, "no per-address limit reached in 100 guesses")
        # Fresh clients: no device cookie of alice's, which would exempt them.
        self.assertEqual((await server.client().post(
            "/api/auth/login", {"username": "alice", "password": "correct horse"}, headers=guesser
        )).status, 429)
        other = await server.client().post(
            "/api/auth/login",
            {"username": "alice", "password": "correct horse"},
            headers={"X-Forwarded-For": "198.51.100.8"},
        )
        self.assertEqual(other.status, 200, other.body)


class SocketBehindProxyTests(TestCase):
    async def test_websocket_origin_through_trusted_proxy(self) -> None:
        """
        The WebSocket's Origin check uses the trusted proxy's forwarded host:
        the https page's socket opens; another site's Origin, or the internal
        host the proxy connected to, is refused; an untrusted peer's
        forwarded host is ignored.
        """
        from tests.ws_support import connect_ws

        trusted = await start_server(self, trusted_proxies=(ipaddress.ip_network("127.0.0.1"),))
        client = trusted.client()
        await client.register("alice")
        proxy = {"X-Forwarded-Proto": "https", "X-Forwarded-Host": "cast.example.org", "X-Forwarded-For": "198.51.100.7"}
        ws = await connect_ws(self, trusted.base, client, origin="https://cast.example.org", extra_headers=proxy)
        self.assertEqual((await ws.next())["type"], "hello")
        with self.assertRaises(ConnectionError):
            await connect_ws(self, trusted.base, client, origin="https://evil.example", extra_headers=proxy)
        # The internal host the proxy connected to is not the site either.
        with self.assertRaises(ConnectionError):
            await connect_ws(self, trusted.base, client, origin=trusted.base, extra_headers=proxy)

        untrusted = await start_server(self)
        other = untrusted.client()
        await other.register("bob")
        with self.assertRaises(ConnectionError):
            await connect_ws(self, untrusted.base, other, origin="https://cast.example.org", extra_headers=proxy)
