"""
The one check of where a browser request comes from and whose session it
carries, for the HTTP API and the WebSocket alike.

Origin: a browser names the page that sent the request.  It must be this
server's own host, over http or https: a TLS-terminating proxy in front
serves the pages as https while this process sees plain http, and the host
is what tells one site from another.  The HTTP API lets a request without
an Origin through (a non-browser client; its state-changing requests still
need the CSRF header), the WebSocket does not (a browser always sends one
there, and a WebSocket has no CSRF header: the cookie alone would do).

Session: the ``dc_session`` cookie's value, 1 to 128 visible ASCII
characters (a hostile client can send any bytes in a Cookie header: such a
value is simply not a session, rather than something that fails later when
hashed); how it
is read from the headers is each transport's (twisted.web parses HTTP
cookies, the WebSocket handshake has the raw header).
"""

from __future__ import annotations

import re

SESSION_COOKIE = b"dc_session"
#: Longer session cookies are not looked up at all.
MAX_SESSION_TOKEN = 128
_SESSION_TOKEN = re.compile(rf"[\x21-\x7e]{{1,{MAX_SESSION_TOKEN}}}\Z")


def origin_allowed(origin: str | None, host: str, *, required: bool) -> bool:
    """Whether a request with this Origin (None: without one) to this Host may go on."""
    if origin is None or origin == "":
        return not required
    return bool(host) and origin in (f"http://{host}", f"https://{host}")


def session_token(raw: bytes | str | None) -> str | None:
    """The session cookie's value if it can be a session token, else None (look nothing up)."""
    if isinstance(raw, bytes):
        try:
            raw = raw.decode("ascii")
        except UnicodeDecodeError:
            return None
    if not raw or not _SESSION_TOKEN.match(raw):
        return None
    return raw
