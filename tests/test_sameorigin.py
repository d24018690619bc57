"""
The one Origin and session-cookie check (denoisecast.web.sameorigin) that
the HTTP API and the WebSocket both use.
"""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from denoisecast.web.sameorigin import MAX_SESSION_TOKEN, origin_allowed, session_token


class OriginTests(SynchronousTestCase):
    def test_own_host_over_either_scheme(self) -> None:
        """This server's host is allowed over http and https (a TLS proxy may sit in front)."""
        for required in (False, True):
            self.assertTrue(origin_allowed("http://dc.example:8080", "dc.example:8080", required=required))
            self.assertTrue(origin_allowed("https://dc.example:8080", "dc.example:8080", required=required))

    def test_other_sites_refused(self) -> None:
        """Another host, another port, a null origin or a missing Host header is refused."""
        for origin, host in (
            ("http://evil.example", "dc.example"),
            ("http://dc.example:81", "dc.example:8080"),
            ("http://dc.example.evil.example", "dc.example"),
            ("null", "dc.example"),
            ("http://", ""),
        ):
            self.assertFalse(origin_allowed(origin, host, required=False), origin)
            self.assertFalse(origin_allowed(origin, host, required=True), origin)

    def test_missing_origin(self) -> None:
        """Without an Origin, HTTP goes on (the CSRF header guards it); the WebSocket does not."""
        self.assertTrue(origin_allowed(None, "dc.example", required=False))
        self.assertFalse(origin_allowed(None, "dc.example", required=True))
        self.assertFalse(origin_allowed("", "dc.example", required=True))


class SessionTokenTests(SynchronousTestCase):
    def test_token(self) -> None:
        """A cookie value is a token up to the length limit; empty and longer ones are not looked up."""
        self.assertEqual(session_token(b"abc"), "abc")
        self.assertEqual(session_token("abc"), "abc")
        self.assertEqual(session_token("x" * MAX_SESSION_TOKEN), "x" * MAX_SESSION_TOKEN)
        self.assertIsNone(session_token("x" * (MAX_SESSION_TOKEN + 1)))
        self.assertIsNone(session_token(b""))
        self.assertIsNone(session_token(None))
