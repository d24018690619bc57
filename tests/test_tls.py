"""
Under TLS the session cookie is marked Secure and responses carry HSTS.
"""

from __future__ import annotations

import http.client
import ipaddress
import json
import ssl

from twisted.internet import reactor
from twisted.internet.ssl import KeyPair, PrivateCertificate
from twisted.internet.threads import deferToThread
from twisted.trial.unittest import TestCase

from tests.support import start_server


def self_signed() -> PrivateCertificate:
    key = KeyPair.generate(size=2048)
    return key.selfSignedCert(1, commonName="localhost")


def register_over_tls(port: int) -> tuple[int, list[str]]:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    connection = http.client.HTTPSConnection("127.0.0.1", port, context=context, timeout=10)
    try:
        connection.request("GET", "/api/csrf")
        reply = connection.getresponse()
        token = json.loads(reply.read())["csrf_token"]
        connection.request(
            "POST",
            "/api/auth/register",
            body=json.dumps({"username": "alice", "password": "correct horse"}),
            headers={
                "Content-Type": "application/json",
                "X-CSRF-Token": token,
                "Cookie": f"dc_csrf={token}",
            },
        )
        reply = connection.getresponse()
        reply.read()
        return reply.status, reply.headers.get_all("Set-Cookie") or []
    finally:
        connection.close()


class TlsTests(TestCase):
    async def test_secure_cookie_under_tls(self) -> None:
        """
        Registering over HTTPS sets a session cookie with Secure, HttpOnly
        and SameSite=Lax.
        """
        running = await start_server(self)
        certificate = self_signed()
        port = reactor.listenSSL(0, running.server.site, certificate.options(), interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        status, cookies = await deferToThread(register_over_tls, port.getHost().port)
        self.assertEqual(status, 201)
        session = [c for c in cookies if c.startswith("dc_session=")]
        self.assertEqual(len(session), 1)
        for attribute in ("Secure", "HttpOnly", "SameSite=lax"):
            self.assertIn(attribute, session[0])


def hsts_over_tls(port: int, path: str) -> str | None:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    connection = http.client.HTTPSConnection("127.0.0.1", port, context=context, timeout=10)
    try:
        connection.request("GET", path)
        reply = connection.getresponse()
        reply.read()
        return reply.headers.get("Strict-Transport-Security")
    finally:
        connection.close()


class HstsTests(TestCase):
    async def test_hsts_on_direct_tls(self) -> None:
        """
        Over a direct TLS listener every response (API, page, static file,
        404) has Strict-Transport-Security; over plain HTTP none has.
        """
        running = await start_server(self)
        port = reactor.listenSSL(0, running.server.site, self_signed().options(), interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        for path in ("/api/health", "/login", "/static/style.css", "/nowhere"):
            header = await deferToThread(hsts_over_tls, port.getHost().port, path)
            self.assertEqual(header, "max-age=31536000", path)
            plain = await running.client().get(path)
            self.assertIsNone(plain.header("strict-transport-security"), path)

    async def test_hsts_from_trusted_proxy_only(self) -> None:
        """
        C{X-Forwarded-Proto: https} gives HSTS when the peer is a trusted
        proxy, and nothing when anyone else sends it.
        """
        trusted = await start_server(self, trusted_proxies=(ipaddress.ip_network("127.0.0.1"),))
        reply = await trusted.client().get("/api/health", headers={"X-Forwarded-Proto": "https"})
        self.assertEqual(reply.header("strict-transport-security"), "max-age=31536000")
        untrusted = await start_server(self)
        reply = await untrusted.client().get("/api/health", headers={"X-Forwarded-Proto": "https"})
        self.assertIsNone(reply.header("strict-transport-security"))
