"""
A real nginx from Debian, terminating TLS, in front of a real ``twistd
denoisecast`` started with ``--trusted-proxies 127.0.0.1``: the nginx site is
the one docs/deployment.md gives, read from that page.

The test's clients connect from 127.0.0.2 (all of 127/8 is loopback), so
the address the server logs and limits can be told apart from the proxy's.
WebRTC media goes straight between the aiortc peers and the server, on
loopback only (tests/loopback_ice).
"""

from __future__ import annotations

import datetime
import os
import re
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from twisted.internet import reactor, ssl
from twisted.internet.task import deferLater
from twisted.trial.unittest import SkipTest, TestCase
from twisted.web.client import Agent, readBody
from twisted.web.iweb import IPolicyForHTTPS
from zope.interface import implementer

from tests.rtc_support import (
    answer,
    best_correlation,
    listener,
    noisy_speech,
    publisher,
)
from tests.support import Client
from tests.test_twistd import TwistdProcess, free_port
from tests.ws_support import connect_ws

DOCS = Path(__file__).resolve().parent.parent / "docs" / "deployment.md"
LOOPBACK_ICE = Path(__file__).resolve().parent / "loopback_ice"
CLIENT_ADDRESS = "127.0.0.2"


def documented_nginx_site() -> str:
    """The first ```nginx block of docs/deployment.md."""
    found = re.search(r"```nginx\n(.*?)```", DOCS.read_text(), re.DOTALL)
    assert found, "docs/deployment.md has no nginx block"
    return found.group(1)


def substitute(text: str, replacements: dict[str, str]) -> str:
    """Replace each key, which must occur: the docs and the test stay in step."""
    for old, new in replacements.items():
        assert old in text, f"docs/deployment.md's nginx site no longer has {old!r}"
        text = text.replace(old, new)
    return text


def self_signed(directory: Path) -> tuple[Path, Path, bytes]:
    """A key and a certificate for localhost, made for this test."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    pem = cert.public_bytes(serialization.Encoding.PEM)
    key_path, cert_path = directory / "key.pem", directory / "cert.pem"
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    cert_path.write_bytes(pem)
    return key_path, cert_path, pem


@implementer(IPolicyForHTTPS)
class TrustOnly:
    """HTTPS client policy trusting only the test's certificate."""

    def __init__(self, pem: bytes) -> None:
        self._root = ssl.Certificate.loadPEM(pem)

    def creatorForNetloc(self, hostname: bytes, port: int) -> Any:
        return ssl.optionsForClientTLS(hostname.decode(), trustRoot=self._root)


class Nginx:
    """nginx as a child process with its own prefix, config and logs."""

    def __init__(self, test: TestCase, directory: Path, upstream_port: int) -> None:
        binary = shutil.which("nginx") or "/usr/sbin/nginx"
        if not os.path.exists(binary):
            raise SkipTest("nginx is not installed (scripts/setup.sh installs Debian's)")
        self.directory = directory
        # Workers run as nobody when the master is root: let them in.
        directory.chmod(0o755)
        key, cert, self.pem = self_signed(directory)
        self.port, self.plain_port = free_port(), free_port()
        site = substitute(
            documented_nginx_site(),
            {
                "listen 443 ssl;": f"listen 127.0.0.1:{self.port} ssl;",
                "listen 80;": f"listen 127.0.0.1:{self.plain_port};",
                "server 127.0.0.1:8080;": f"server 127.0.0.1:{upstream_port};",
                "/etc/letsencrypt/live/cast.example.org/fullchain.pem": str(cert),
                "/etc/letsencrypt/live/cast.example.org/privkey.pem": str(key),
            },
        )
        (directory / "denoisecast.conf").write_text(site)
        temp = "\n".join(
            f"    {kind}_temp_path {directory / kind};" for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
        )
        (directory / "nginx.conf").write_text(
            f"""daemon off;
worker_processes 1;
pid {directory / 'nginx.pid'};
error_log {directory / 'error.log'} info;
events {{ worker_connections 256; }}
http {{
    access_log {directory / 'access.log'};
{temp}
    include {directory / 'denoisecast.conf'};
}}
"""
        )
        self.process = subprocess.Popen(
            [binary, "-p", f"{directory}/", "-c", str(directory / "nginx.conf"), "-e", str(directory / "error.log")],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        test.addCleanup(self.stop)

    @property
    def base(self) -> str:
        return f"https://localhost:{self.port}"

    def errors(self) -> str:
        path = self.directory / "error.log"
        return path.read_text()[-5000:] if path.exists() else ""

    async def ready(self, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                out = self.process.stdout.read().decode() if self.process.stdout else ""
                raise AssertionError(f"nginx exited: {out}\n{self.errors()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return
            except OSError:
                await deferLater(reactor, 0.1)
        raise AssertionError(f"nginx did not listen: {self.errors()}")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.process.stdout:
            self.process.stdout.close()


class NginxTests(TestCase):
    timeout = 180

    async def test_tls_proxy_end_to_end(self) -> None:
        """
        Through nginx with TLS: register, log out, log in and send a friend
        request (POSTs with the browser's https Origin, refused today without
        --trusted-proxies); cookies are Secure; the server logs the client's
        address, not the proxy's nor one the client forged; the WebSocket
        upgrades; alice goes live and bob hears her through it.
        """
        workdir = Path(tempfile.mkdtemp(prefix="denoisecast-behind-nginx-"))
        self.addCleanup(shutil.rmtree, workdir, True)
        noisy, clean, _ = noisy_speech(workdir, seconds_pause=1.0)
        server = TwistdProcess(
            self,
            workdir,
            "--trusted-proxies",
            "127.0.0.1",
            "--silence-timeout",
            "5",
            # The test's media stays on loopback, which is denied by default.
            "--ice-allow-networks",
            "127.0.0.0/8",
            env={"PYTHONPATH": os.pathsep.join(filter(None, [str(LOOPBACK_ICE), os.environ.get("PYTHONPATH")]))},
        )
        # Its own directory under /tmp: nginx's workers (nobody, when the
        # master is root) must reach their temp paths, not the server's files.
        proxy_dir = Path(tempfile.mkdtemp(prefix="denoisecast-nginx-"))
        self.addCleanup(shutil.rmtree, proxy_dir, True)
        nginx = Nginx(self, proxy_dir, server.port)
        await server.ready(timeout=60)
        await nginx.ready()
        import aioice.ice

        self.patch(aioice.ice, "get_host_addresses", lambda use_ipv4, use_ipv6: ["127.0.0.1"] if use_ipv4 else [])
        tls = TrustOnly(nginx.pem)
        origin = {"Origin": nginx.base, "X-Forwarded-For": "203.0.113.66"}
        alice, bob = (Client(nginx.base, source=CLIENT_ADDRESS, tls=tls) for _ in range(2))

        for name, client in (("alice", alice), ("bob", bob)):
            reply = await client.post(
                "/api/auth/register", {"username": name, "password": "correct horse"}, headers=origin
            )
            self.assertEqual(reply.status, 201, (reply.body, server.output()[-3000:]))
            cookies = reply.headers.getRawHeaders("set-cookie") or []
            self.assertTrue(cookies and all("Secure" in c for c in cookies), cookies)
        self.assertEqual((await alice.post("/api/auth/logout", headers=origin)).status, 204)
        login = await alice.post("/api/auth/login", {"username": "alice", "password": "correct horse"}, headers=origin)
        self.assertEqual(login.status, 200, login.body)
        asked = await alice.post("/api/friends/requests", {"username": "bob"}, headers=origin)
        self.assertEqual(asked.status, 201, asked.body)
        accepted = await bob.post("/api/friends/requests/alice/accept", headers=origin)
        self.assertEqual(accepted.status, 200, accepted.body)
        # A body larger than nginx keeps in memory goes through its temp file
        # and meets the server's own limit.
        big = await alice.post("/api/friends/requests", raw=b"{" + b" " * 100_000 + b"}", headers=origin)
        self.assertEqual((big.status, big.error_code), (413, "body_too_large"), nginx.errors())
        refused = await alice.post("/api/auth/logout", headers={"Origin": "https://evil.example"})
        self.assertEqual((refused.status, refused.error_code), (403, "bad_origin"))

        # Plain HTTP is sent to HTTPS by the documented site.
        plain = await Agent(reactor).request(b"GET", f"http://localhost:{nginx.plain_port}/login".encode())
        self.assertEqual(plain.code, 301)
        self.assertEqual(plain.headers.getRawHeaders("location"), ["https://localhost/login"])
        await readBody(plain)

        ws = {
            name: await connect_ws(
                self,
                nginx.base,
                client,
                tls=ssl.optionsForClientTLS("localhost", trustRoot=ssl.Certificate.loadPEM(nginx.pem)),
                bind=CLIENT_ADDRESS,
            )
            for name, client in (("alice", alice), ("bob", bob))
        }
        pc, offer = await publisher(self, noisy)
        reply = await ws["alice"].request({"v": 1, "type": "publish", "sdp": offer}, timeout=60)
        self.assertEqual(reply["type"], "answer", reply)
        lpc, loffer, recorder = await listener(self)
        heard = await ws["bob"].request({"v": 1, "type": "listen", "user": "alice", "sdp": loffer}, timeout=30)
        self.assertEqual(heard["type"], "answer", heard)
        await answer(lpc, heard["sdp"])
        await answer(pc, reply["sdp"])
        candidates = re.findall(r"a=candidate:.*", reply["sdp"])
        self.assertTrue(candidates and all(" 127.0.0.1 " in c for c in candidates), candidates)

        seconds = len(clean) / 48000 + 3.0
        await deferLater(reactor, seconds)
        stopped = await ws["alice"].request({"v": 1, "type": "stop"})
        self.assertEqual(stopped["type"], "stopped")
        audio = recorder.audio()
        self.assertGreater(len(audio), len(clean) * 0.7, "bob heard too little through the proxy")
        correlation, _ = best_correlation(audio, clean)
        self.assertGreater(correlation, 0.5, f"envelope correlation {correlation:.2f}")

        log = server.log.read_text()
        self.assertRegex(log, rf'{re.escape(CLIENT_ADDRESS)} "POST /api/auth/login" 200')
        self.assertIn(f"Socket opened for alice from {CLIENT_ADDRESS}", log)
        self.assertNotIn("203.0.113.66", log)
