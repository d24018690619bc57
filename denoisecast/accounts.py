"""
Accounts and sessions: registration, login, logout, password changes.

Sessions are database rows keyed by the SHA-256 of a random token; the
token itself only ever lives in the client's cookie, so a leaked database
does not hand out live sessions.  Password hashing (argon2id) is slow on
purpose and therefore runs on a worker thread, never on the reactor.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from twisted.internet.defer import Deferred

from denoisecast.errors import DenoiseCastError, bad_request, conflict, unauthenticated
from denoisecast.logs import logger
from denoisecast.ratelimit import FailureLimiter
from denoisecast.storage.store import Store, User, UsernameTaken

T = TypeVar("T")

USERNAME_PATTERN = re.compile(r"[a-z0-9_.-]{3,32}\Z")
PASSWORD_MIN = 8
PASSWORD_MAX = 1024
SESSION_LIFETIME = timedelta(days=30)

BlockingRunner = Callable[..., "Deferred[Any]"]


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("ascii")).hexdigest()


@dataclass(frozen=True)
class EndedSessions:
    """
    Sessions that just ended: exactly one (C{token_hash}), or every session
    of C{user_id} except C{except_hash} (a password change keeps the
    session that made it).  Whatever was opened with them, WebSockets
    above all, must end too: they were authorised once, at their start.
    """

    token_hash: str | None = None
    user_id: int | None = None
    except_hash: str | None = None

    def covers(self, user_id: int, token_hash: str) -> bool:
        if self.token_hash is not None:
            return token_hash == self.token_hash
        return user_id == self.user_id and token_hash != self.except_hash


def validate_username(username: str) -> str:
    if not USERNAME_PATTERN.match(username):
        raise bad_request(
            "Usernames are 3 to 32 characters of lowercase letters, digits, "
            "'_', '.' and '-'.",
            "invalid_username",
        )
    return username


def validate_password(password: str) -> str:
    if len(password) < PASSWORD_MIN:
        raise bad_request(
            f"Passwords are at least {PASSWORD_MIN} characters long.", "weak_password"
        )
    if len(password) > PASSWORD_MAX:
        raise bad_request(
            f"Passwords are at most {PASSWORD_MAX} characters long.", "invalid_password"
        )
    return password


class Accounts:
    """
    The account logic between the web resources and the store.

    @param run_blocking: runs a blocking callable off the reactor thread
        and returns a Deferred of its result (C{deferToThread} in the
        server; a synchronous stand-in in unit tests).
    """

    log = logger()

    def __init__(
        self,
        store: Store,
        clock: Callable[[], datetime],
        run_blocking: BlockingRunner,
        login_limiter: FailureLimiter,
        address_limiter: FailureLimiter,
        hasher: PasswordHasher | None = None,
    ) -> None:
        self._store = store
        self._now = clock
        self._run_blocking = run_blocking
        self._login_limiter = login_limiter
        self._address_limiter = address_limiter
        self._hasher = hasher or PasswordHasher()
        # Verified against when the username is unknown, so that a login
        # for a missing account takes as long as one for an existing one.
        self._decoy_hash: str | None = None
        #: Told of every L{EndedSessions}, after the database has forgotten them.
        self.session_observers: list[Callable[[EndedSessions], None]] = []

    def _sessions_ended(self, ended: EndedSessions) -> None:
        for observer in self.session_observers:
            try:
                observer(ended)
            except Exception:
                self.log.failure("A session observer failed")

    async def _hash(self, password: str) -> str:
        return await self._run_blocking(self._hasher.hash, password)

    async def _verify(self, password_hash: str, password: str) -> bool:
        def verify() -> bool:
            try:
                return self._hasher.verify(password_hash, password)
            except (VerificationError, InvalidHashError):
                return False

        return await self._run_blocking(verify)

    async def _new_session(self, user: User) -> str:
        token = secrets.token_urlsafe(32)
        now = self._now()
        await self._store.create_session(
            user["id"], hash_token(token), now, now + SESSION_LIFETIME
        )
        return token

    async def register(self, username: str, password: str) -> tuple[User, str]:
        validate_username(username)
        validate_password(password)
        password_hash = await self._hash(password)
        try:
            user = await self._store.create_user(username, password_hash, self._now())
        except UsernameTaken:
            raise conflict("username_taken", "That username is taken.") from None
        self.log.info("Registered {username}", username=username)
        return user, await self._new_session(user)

    async def login(self, username: str, password: str, address: str) -> tuple[User, str]:
        """
        Check the credentials and open a session.

        Unknown users and wrong passwords give the same error, after the
        same amount of hashing work.
        """
        name_key = ("login", username.lower())
        address_key = ("address", address)
        wait = max(
            self._login_limiter.retry_after(name_key) or 0,
            self._address_limiter.retry_after(address_key) or 0,
        )
        if wait:
            self.log.warn(
                "Login rate limit hit for {username} from {address}",
                username=username,
                address=address,
            )
            raise DenoiseCastError(
                429,
                "rate_limited",
                "Too many failed logins. Try again later.",
                {"Retry-After": str(wait)},
            )
        login = await self._store.get_login(username)
        if login is None:
            if self._decoy_hash is None:
                self._decoy_hash = await self._hash(secrets.token_urlsafe(16))
            await self._verify(self._decoy_hash, password)
            ok = False
        else:
            ok = await self._verify(login["password_hash"], password)
        if not ok or login is None:
            self._login_limiter.record_failure(name_key)
            self._address_limiter.record_failure(address_key)
            raise unauthenticated("Wrong username or password.")
        self._login_limiter.reset(name_key)
        user = {k: v for k, v in login.items() if k != "password_hash"}
        return user, await self._new_session(user)

    async def user_for_token(self, token: str) -> User | None:
        return await self._store.get_session_user(hash_token(token), self._now())

    async def logout(self, token: str) -> None:
        await self._store.delete_session(hash_token(token))
        self._sessions_ended(EndedSessions(token_hash=hash_token(token)))

    async def change_password(
        self, user: User, current: str, new: str, keep_token: str | None = None
    ) -> str:
        """
        Replace the password, end every session of the user, and open a
        fresh one for the client that asked.

        @param keep_token: the asking client's session: what was opened with
            it (its WebSockets) stays open; every other session's ends.
        """
        validate_password(new)
        stored = await self._store.get_password_hash(user["id"])
        if stored is None or not await self._verify(stored, current):
            raise DenoiseCastError(403, "wrong_password", "The current password is wrong.")
        await self._store.set_password(user["id"], await self._hash(new), self._now())
        self._sessions_ended(
            EndedSessions(
                user_id=user["id"],
                except_hash=hash_token(keep_token) if keep_token is not None else None,
            )
        )
        return await self._new_session(user)


def utcnow() -> datetime:
    return datetime.now(UTC)
