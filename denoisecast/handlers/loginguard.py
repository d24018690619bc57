"""
Slowing password guessing without locking an account's owner out.

A plain "five wrong passwords lock the account" rule hands anyone who knows
a username a way to keep its owner out, and keying it on the client address
behind a proxy locks out everyone at once.  This follows the approach of
OWASP's "device cookies" and the "familiar location" rule of smart-lockout
systems:

- every client address has its own failure budget (``address``), whatever
  account it tries (IPv6 addresses count per /64, which one host usually
  owns whole);
- every account has a failure budget too (``account``), but it only stops
  clients the account does not know.  A client is known when it carries a
  device cookie handed out at an earlier successful login of that account,
  or when it comes from an address that logged in to the account before;
- a known device has its own budget (``device``) instead of the account's
  and the address's, so a stolen device cookie does not open unlimited
  guessing, and an owner behind a shared address (a proxy, a NAT) whose
  address is being abused still gets in from their own browser.

Kept in memory, like the other limits, and shared with the other nodes
over the live bus (failures, resets and clients becoming known:
L{denoisecast.live.cluster.share_login_guard}).  With Redis, both are also
stored there, so a node started later, or restarted, knows the failures
and the owner's clients alike (were the failures alone stored, an attacker's
guesses would lock the owner out of such a node).  Without Redis, after a
restart the owner meets the ordinary account budget until they next log
in, which slows them at worst, never locks them out for longer than the
window.
"""

from __future__ import annotations

import hashlib
import ipaddress
import secrets
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from twisted.internet.interfaces import IReactorTime

from denoisecast.errors import DenoiseCastError
from denoisecast.runtime.logs import logger
from denoisecast.runtime.ratelimit import FailureLimiter

#: Failed logins allowed per window: per account (for clients it does not
#: know), per client address, and per known device.
ACCOUNT_FAILURES = 5
ADDRESS_FAILURES = 20
DEVICE_FAILURES = 10
WINDOW_SECONDS = 300.0
#: Known devices and addresses remembered per account, and accounts remembered.
KNOWN_PER_ACCOUNT = 16
KNOWN_ACCOUNTS = 100_000
#: The device cookie's lifetime (renewed at each login), and how long a
#: known client is remembered where it outlives a node.
DEVICE_LIFETIME_SECONDS = 365 * 24 * 3600


def address_key(address: str) -> str:
    """
    The rate-limit key of a client address: the address itself, or its /64
    for IPv6 (a single host is routinely handed a whole /64).
    """
    try:
        parsed = ipaddress.ip_address(address)
    except ValueError:
        return address
    if isinstance(parsed, ipaddress.IPv6Address):
        if parsed.ipv4_mapped is not None:
            return str(parsed.ipv4_mapped)
        return str(ipaddress.IPv6Network((parsed, 64), strict=False))
    return str(parsed)


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "replace")).hexdigest()


@dataclass(frozen=True)
class LoginAttempt:
    """
    What the guard decided about one login before the password was checked.

    @ivar trust: C{"device"}, C{"address"} or C{"none"}: how the client is
        known to the account.
    """

    account: str
    address: str
    device: str | None
    trust: str


class KnownClients:
    """
    Per account, the device-cookie digests and addresses of earlier
    successful logins, most recent last, bounded in both directions.
    """

    def __init__(self, per_account: int = KNOWN_PER_ACCOUNT, accounts: int = KNOWN_ACCOUNTS) -> None:
        self._per_account = per_account
        self._accounts = accounts
        self._known: OrderedDict[str, OrderedDict[str, None]] = OrderedDict()

    def remember(self, account: str, *entries: str) -> None:
        known = self._known.pop(account, None) or OrderedDict()
        for entry in entries:
            known.pop(entry, None)
            known[entry] = None
        while len(known) > self._per_account:
            known.popitem(last=False)
        self._known[account] = known
        while len(self._known) > self._accounts:
            self._known.popitem(last=False)

    def knows(self, account: str, entry: str) -> bool:
        known = self._known.get(account)
        return known is not None and entry in known

    def entries(self, account: str) -> list[str]:
        """The account's known clients, oldest first."""
        return list(self._known.get(account, ()))


class LoginGuard:
    log = logger()

    def __init__(
        self,
        clock: IReactorTime,
        account_failures: int = ACCOUNT_FAILURES,
        address_failures: int = ADDRESS_FAILURES,
        device_failures: int = DEVICE_FAILURES,
        window: float = WINDOW_SECONDS,
    ) -> None:
        self._accounts = FailureLimiter(clock, account_failures, window)
        self._addresses = FailureLimiter(clock, address_failures, window)
        self._devices = FailureLimiter(clock, device_failures, window)
        self._known = KnownClients()
        #: Told (account, address, device) of each client that became known here.
        self.known_observers: list[Callable[[str, str, str], None]] = []

    def limiters(self) -> dict[str, FailureLimiter]:
        """The budgets, by name (for sharing them between nodes)."""
        return {"login-account": self._accounts, "login-address": self._addresses, "login-device": self._devices}

    def remember(self, account: str, *entries: str) -> None:
        """
        Clients (addresses and device digests, oldest first) another node
        came to know (see L{succeeded}), or loaded from where they outlive a node.
        """
        self._known.remember(account, *entries)

    def known(self, account: str) -> list[str]:
        """The clients the account knows (addresses and device digests), oldest first."""
        return self._known.entries(account)

    def check(self, username: str, address: str, device_token: str | None) -> LoginAttempt:
        """
        May this client try a password for this account now?  Raises the
        429 if not; otherwise says how the client is known.
        """
        account = username.lower()
        where = "address:" + address_key(address)
        device = None if not device_token else "device:" + _digest(device_token)
        if device is not None and self._known.knows(account, device):
            attempt = LoginAttempt(account, where, device, "device")
            wait = self._devices.retry_after(device)
        elif self._known.knows(account, where):
            attempt = LoginAttempt(account, where, None, "address")
            wait = self._addresses.retry_after(where)
        else:
            attempt = LoginAttempt(account, where, None, "none")
            wait = max(
                self._accounts.retry_after(account) or 0,
                self._addresses.retry_after(where) or 0,
            )
        if wait:
            self.log.warn(
                "Login rate limit hit for {username} from {address} (known by {trust})",
                username=account,
                address=address,
                trust=attempt.trust,
            )
            raise DenoiseCastError(
                429,
                "rate_limited",
                "Too many failed logins. Try again later.",
                {"Retry-After": str(wait)},
            )
        return attempt

    def failed(self, attempt: LoginAttempt) -> None:
        """
        Count a wrong password against the budgets the attempt used.
        """
        if attempt.device is not None:
            self._devices.record_failure(attempt.device)
            return
        self._addresses.record_failure(attempt.address)
        if attempt.trust == "none":
            self._accounts.record_failure(attempt.account)

    def registered(self, username: str, address: str) -> str:
        """
        A new account's first client is known to it: return its device token.
        """
        return self.succeeded(LoginAttempt(username.lower(), "address:" + address_key(address), None, "none"))

    def succeeded(self, attempt: LoginAttempt) -> str:
        """
        Remember the client as known to the account; return the device
        token to set (a fresh one: each login rotates it).
        """
        token = secrets.token_urlsafe(32)
        device = "device:" + _digest(token)
        self._known.remember(attempt.account, attempt.address, device)
        for observer in self.known_observers:
            observer(attempt.account, attempt.address, device)
        if attempt.device is not None:
            self._devices.reset(attempt.device)
        return token
