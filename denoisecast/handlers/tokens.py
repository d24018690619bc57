"""
Publish and listen tokens: how clients that are not browsers prove who
they are.

OBS, ffmpeg or GStreamer publish over WHIP, and a player (VLC, a phone)
listens over WHEP or the HTTP stream; none of them carries DenoiseCast's
session cookie.  Their owner makes a token for each in the settings page
(or the API), names it after the device, and revokes it when the device is
lost.

- A token is 32 random bytes, URL-safe base64, after a prefix that says
  its scope (C{dcp_} publish, C{dcl_} listen) so a person can tell them
  apart.  It is shown once, when made; the database keeps only its SHA-256
  (like sessions, L{denoisecast.handlers.accounts.hash_token}), so a leaked
  database hands out nothing.
- A publish token lets its owner go live (and nothing else).
- A listen token belongs to the listener and lets them listen to any of
  their friends, and to no one else: whether they are friends is asked at
  every use (L{Tokens.listener}), so the token stops working for a
  broadcaster the moment that friendship ends, and a listener who is
  unfriended while listening is dropped by the live manager as a browser
  listener is.  It is not tied to one friend: ending one friendship must not
  silence the listener's other friends.
- A disabled account's tokens stop working with its sessions.
- A user has at most L{MAX_TOKENS} tokens and makes at most
  L{CREATIONS_PER_HOUR} an hour (a leaked session cannot mint thousands).
"""

from __future__ import annotations

import re
import secrets
import unicodedata
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from twisted.internet.defer import Deferred, ensureDeferred, succeed

from denoisecast.errors import DenoiseCastError, bad_request, conflict, not_found
from denoisecast.handlers.access import Access
from denoisecast.handlers.accounts import hash_token
from denoisecast.runtime.logs import logger
from denoisecast.runtime.ratelimit import FailureLimiter
from denoisecast.storage.store import Store, TooManyTokens, User

PUBLISH = "publish"
LISTEN = "listen"
SCOPES = (PUBLISH, LISTEN)
_PREFIX = {PUBLISH: "dcp_", LISTEN: "dcl_"}
#: Random bytes in a token.
TOKEN_BYTES = 32
#: Tokens one user may hold, both scopes together.
MAX_TOKENS = 20
#: Tokens one user may make per hour (revoking does not give any back).
CREATIONS_PER_HOUR = 30
#: How stale a token's "last used" may be: a use within it writes nothing.
LAST_USED_PRECISION = timedelta(minutes=1)
#: Longest token name, in characters (after NFC normalisation).
NAME_MAX = 64
#: What a presented token may look like at all; anything else is not looked up.
_TOKEN_SHAPE = re.compile(r"[A-Za-z0-9_-]{16,128}\Z")
#: A token's public id, as the API's URLs carry it.
_PUBLIC_ID = re.compile(r"[0-9a-f]{32}\Z")
#: Characters that reorder the text around them (bidirectional embeddings,
#: overrides and isolates): a name holding them can display as another name.
_BIDI_CONTROLS = set("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u200e\u200f\u061c")


def validate_name(name: str) -> str:
    """
    The name as kept: NFC-normalised and trimmed; 1 to L{NAME_MAX}
    characters, any letters, digits, punctuation, symbols (emoji too) and
    spaces, but no control, private-use, unassigned or line-breaking
    characters and no bidirectional controls.
    """
    name = unicodedata.normalize("NFC", name).strip()
    if not name:
        raise bad_request("Give the token a name, such as the device it is for.", "invalid_name")
    if len(name) > NAME_MAX:
        raise bad_request(f"A token's name is at most {NAME_MAX} characters.", "invalid_name")
    for character in name:
        category = unicodedata.category(character)
        if category in ("Cc", "Cs", "Co", "Cn", "Zl", "Zp") or character in _BIDI_CONTROLS:
            raise bad_request(
                f"A token's name cannot hold the character U+{ord(character):04X}.", "invalid_name"
            )
    return name


def bearer_token(authorization: str | None) -> str | None:
    """
    The token of an C{Authorization: Bearer <token>} header (RFC 6750), or
    None when there is none or it cannot be a token (nothing to look up).
    """
    if not authorization:
        return None
    scheme, _, token = authorization.strip().partition(" ")
    if scheme.lower() != "bearer":
        return None
    token = token.strip()
    return token if _TOKEN_SHAPE.match(token) else None


class Tokens:
    """
    Making, listing, revoking and checking tokens.
    """

    log = logger()

    def __init__(
        self,
        store: Store,
        clock: Callable[[], datetime],
        access: Access,
        creations: FailureLimiter,
    ) -> None:
        self._store = store
        self._now = clock
        self._access = access
        self._creations = creations

    async def create(self, me: User, name: str, scope: str) -> tuple[dict[str, Any], str]:
        """
        A new token for C{me}: its listing and the token itself, which is
        never shown again.
        """
        if scope not in SCOPES:
            raise bad_request(f"scope is one of {', '.join(SCOPES)}.", "invalid_scope")
        name = validate_name(name)
        wait = self._creations.retry_after(me["id"])
        if wait is not None:
            raise DenoiseCastError(
                429,
                "too_many_tokens_made",
                f"You made {self._creations.max_failures} tokens within the hour; try again in {wait} s.",
                {"Retry-After": str(wait)},
            )
        secret = _PREFIX[scope] + secrets.token_urlsafe(TOKEN_BYTES)
        try:
            listed = await self._store.create_token(
                me["id"], secrets.token_hex(16), scope, name, hash_token(secret), self._now(), MAX_TOKENS
            )
        except TooManyTokens:
            raise conflict(
                "too_many_tokens", f"You have {MAX_TOKENS} tokens; revoke one you no longer use first."
            ) from None
        self._creations.record_failure(me["id"])
        self.log.info("{user} made a {scope} token {token}", user=me["username"], scope=scope, token=listed["id"])
        return listed, secret

    async def list(self, me: User) -> list[dict[str, Any]]:
        return await self._store.list_tokens(me["id"])

    async def revoke(self, me: User, token_id: str) -> None:
        """
        Delete one of C{me}'s tokens.  Unknown ids and other people's
        tokens get the same 404, so ids cannot be probed.
        """
        if not _PUBLIC_ID.match(token_id) or not await self._store.delete_token(me["id"], token_id):
            raise not_found("no_such_token", "You have no such token.")
        self.log.info("{user} revoked token {token}", user=me["username"], token=token_id)

    def check(self, token: str | None, scope: str) -> "Deferred[User | None]":
        """
        The user a presented token speaks for, or None.

        This is the one check every token-authenticated endpoint makes
        (WHIP with C{scope="publish"}; WHEP and the HTTP stream with
        C{scope="listen"}, then L{Access.listenable} or L{listener} for
        the friendship).  C{token} is the token as presented (see
        L{bearer_token} for the C{Authorization} header); None, a malformed
        token, a revoked one, one of another scope, and a disabled
        account's all give None.  Runs one read on the database pool
        (and a write to note the token's use, at most once a minute per
        token); fires with the user dict
        (C{id}, C{username}, C{created_at}).
        """
        if scope not in SCOPES:
            raise ValueError(f"no such token scope: {scope!r}")
        if token is None or not _TOKEN_SHAPE.match(token):
            return succeed(None)
        return ensureDeferred(self._check(token, scope))

    async def _check(self, token: str, scope: str) -> User | None:
        found = await self._store.token_user(hash_token(token), scope)
        if found is None:
            return None
        now = self._now()
        last = found["last_used_at"]
        if last is None or now - last >= LAST_USED_PRECISION:
            await self._store.touch_token(found["token_id"], now)
        user: User = found["user"]
        return user

    async def listener(self, token: str | None, username: str) -> tuple[User, User] | None:
        """
        With a listen token, the listener and the broadcaster C{username}
        if the two are friends now; None otherwise (a bad token, an unknown
        name, a stranger, oneself: the same answer, so nothing is learnt).
        """
        holder = await self.check(token, LISTEN)
        if holder is None:
            return None
        broadcaster = await self._access.listenable(holder, username)
        if broadcaster is None:
            return None
        return holder, broadcaster
