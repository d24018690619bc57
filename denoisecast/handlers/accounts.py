"""
Accounts and sessions: registration, login, logout, password changes.

Sessions are database rows keyed by the SHA-256 of a random token; the
token itself only ever lives in the client's cookie, so a leaked database
does not hand out live sessions.  Password hashing (argon2id) is slow on
purpose and therefore runs on its own low-priority lanes, never on the
reactor, queued by L{denoisecast.handlers.passwordqueue.PasswordQueue}.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from twisted.internet.defer import ensureDeferred

from denoisecast.errors import DenoiseCastError, bad_request, conflict, forbidden, unauthenticated
from denoisecast.handlers.loginguard import LoginGuard, address_key
from denoisecast.handlers.passwordqueue import PasswordQueue, Priority
from denoisecast.handlers.passwords import validate_password
from denoisecast.runtime.logs import logger
from denoisecast.runtime.ratelimit import FailureLimiter
from denoisecast.storage.passwords import PasswordHashes
from denoisecast.storage.store import Store, User, UsernameTaken

USERNAME_PATTERN = re.compile(r"[a-z0-9_.-]{3,32}\Z")
SESSION_LIFETIME = timedelta(days=30)


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


@dataclass(frozen=True)
class LoggedIn:
    """
    A successful login or registration: the user, the new session's token,
    and the device token that marks this client as known to the account
    next time.
    """

    user: User
    session_token: str
    device_token: str


class Accounts:
    """
    The account logic between the web resources and the store.

    Every password hash and check goes through C{password_queue}, which
    runs it on the hashing lanes (off the reactor thread) with logins ahead
    of registrations, and refuses with 503 when the wait would be too long.
    """

    log = logger()

    def __init__(
        self,
        store: Store,
        clock: Callable[[], datetime],
        password_queue: PasswordQueue,
        login_guard: LoginGuard,
        registration_limiter: FailureLimiter | None,
        password_check_limiter: FailureLimiter,
        hasher: PasswordHasher | None = None,
        hashes: PasswordHashes | None = None,
    ) -> None:
        self._store = store
        self._now = clock
        self._queue = password_queue
        self._guard = login_guard
        self._registrations = registration_limiter
        self._password_checks = password_check_limiter
        self._hasher = hasher or PasswordHasher()
        self._hashes = hashes
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

    async def _hash(self, password: str, priority: Priority) -> str:
        return await self._queue.submit(priority, self._hasher.hash, password)

    async def _verify(self, password_hash: str, password: str) -> bool:
        def verify() -> bool:
            try:
                return self._hasher.verify(password_hash, password)
            except (VerificationError, InvalidHashError):
                return False

        return await self._queue.submit(Priority.LOGIN, verify)

    async def _new_session(self, user: User) -> str:
        token = secrets.token_urlsafe(32)
        now = self._now()
        await self._store.create_session(
            user["id"], hash_token(token), now, now + SESSION_LIFETIME
        )
        return token

    async def register(self, username: str, password: str, address: str) -> LoggedIn:
        """
        Create the account and open a session.  Each client address may
        try a limited number of registrations per hour (the hashing they
        cost is what a flood of them would use up).
        """
        validate_username(username)
        validate_password(password, username)
        if self._registrations is not None:
            key = address_key(address)
            wait = self._registrations.retry_after(key)
            if wait:
                self.log.warn("Registration rate limit hit from {address}", address=address)
                raise DenoiseCastError(
                    429,
                    "rate_limited",
                    "Too many registrations from your address. Try again later.",
                    {"Retry-After": str(wait)},
                )
            self._registrations.record_failure(key)
        if await self._store.get_user_by_name(username) is not None:
            raise conflict("username_taken", "That username is taken.")
        password_hash = await self._hash(password, Priority.REGISTRATION)
        user = await self.create_account(username, password_hash)
        self.log.info("Registered {username}", username=username)
        device = self._guard.registered(username, address)
        return LoggedIn(user, await self._new_session(user), device)

    async def hash_password(self, password: str) -> str:
        """
        The argon2id hash of C{password}, for administration (queued as a
        login: an operator's action should not be refused for sign-ups).
        """
        return await self._hash(password, Priority.LOGIN)

    async def create_account(self, username: str, password_hash: str) -> User:
        try:
            user = await self._store.create_user(username, password_hash, self._now())
        except UsernameTaken:
            raise conflict("username_taken", "That username is taken.") from None
        return user

    async def login(
        self, username: str, password: str, address: str, device_token: str | None = None
    ) -> LoggedIn:
        """
        Check the credentials and open a session.

        Unknown users and wrong passwords give the same error, after the
        same amount of hashing work.  The login guard decides first whether
        this client may try now (L{denoisecast.handlers.loginguard}).
        """
        attempt = self._guard.check(username, address, device_token)
        login = await self._store.get_login(username)
        if login is None:
            if self._decoy_hash is None:
                self._decoy_hash = await self._hash(secrets.token_urlsafe(16), Priority.LOGIN)
            await self._verify(self._decoy_hash, password)
            ok = False
        else:
            ok = await self._verify(login["password_hash"], password)
        if not ok or login is None:
            self._guard.failed(attempt)
            raise unauthenticated("Wrong username or password.")
        device = self._guard.succeeded(attempt)
        if login["disabled"]:
            raise forbidden(
                "account_disabled", "This account is disabled; ask the server's administrator."
            )
        if self._hashes is not None and self._hasher.check_needs_rehash(login["password_hash"]):
            self._upgrade_hash(login["id"], login["password_hash"], password)
        user = {k: v for k, v in login.items() if k not in ("password_hash", "disabled")}
        return LoggedIn(user, await self._new_session(user), device)

    def _upgrade_hash(self, user_id: int, old_hash: str, password: str) -> None:
        """
        Rehash a password stored at an older cost, in the background and
        behind every login in the queue; when the queue is full it is left
        for the next login.
        """
        hashes = self._hashes
        assert hashes is not None

        async def upgrade() -> None:
            try:
                new_hash = await self._hash(password, Priority.REGISTRATION)
            except DenoiseCastError:
                return
            if await hashes.upgrade(user_id, old_hash, new_hash):
                self.log.info("Password hash of user {user_id} moved to the current cost", user_id=user_id)

        ensureDeferred(upgrade()).addErrback(
            lambda failure: self.log.failure("Upgrading a password hash failed", failure)
        )

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
        fresh one for the client that asked.  Wrong current passwords are
        counted per account, so a stolen session cannot be used to guess
        the password (and so take the account over for good).

        @param keep_token: the asking client's session: what was opened with
            it (its WebSockets) stays open; every other session's ends.
        """
        validate_password(new, user["username"])
        key = ("password_check", user["id"])
        wait = self._password_checks.retry_after(key)
        if wait:
            self.log.warn("Password check rate limit hit for {username}", username=user["username"])
            raise DenoiseCastError(
                429,
                "rate_limited",
                "Too many wrong current passwords. Try again later.",
                {"Retry-After": str(wait)},
            )
        stored = await self._store.get_password_hash(user["id"])
        if stored is None or not await self._verify(stored, current):
            self._password_checks.record_failure(key)
            raise DenoiseCastError(403, "wrong_password", "The current password is wrong.")
        self._password_checks.reset(key)
        await self._store.set_password(
            user["id"], await self._hash(new, Priority.LOGIN), self._now()
        )
        self._sessions_ended(
            EndedSessions(
                user_id=user["id"],
                except_hash=hash_token(keep_token) if keep_token is not None else None,
            )
        )
        return await self._new_session(user)


def utcnow() -> datetime:
    return datetime.now(UTC)
