"""
The login guard on a fake clock: guessing is slowed per account, per
address and per device, without locking out an account's owner.
"""

from __future__ import annotations

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from denoisecast.errors import DenoiseCastError
from denoisecast.handlers.loginguard import KnownClients, LoginGuard, address_key


class GuardTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.guard = LoginGuard(
            self.clock, account_failures=5, address_failures=20, device_failures=10, window=300
        )

    def fail(self, username: str, address: str, device: str | None = None) -> None:
        self.guard.failed(self.guard.check(username, address, device))

    def limited(self, username: str, address: str, device: str | None = None) -> int:
        with self.assertRaises(DenoiseCastError) as caught:
            self.guard.check(username, address, device)
        self.assertEqual((caught.exception.status, caught.exception.code), (429, "rate_limited"))
        return int(caught.exception.headers["Retry-After"])

    def test_owner_device_not_locked_out(self) -> None:
        """
        Five wrong passwords from an attacker's address stop unknown
        clients for that account, but not the owner's browser, which holds
        the device token of an earlier login, even from a new address.
        """
        owner = self.guard.succeeded(self.guard.check("alice", "10.0.0.1", None))
        for _ in range(5):
            self.fail("alice", "203.0.113.9")
        self.assertEqual(self.limited("alice", "203.0.113.9"), 300)
        self.assertEqual(self.limited("Alice", "198.51.100.7"), 300)
        attempt = self.guard.check("alice", "198.51.100.7", owner)
        self.assertEqual(attempt.trust, "device")

    def test_owner_address_not_locked_out(self) -> None:
        """
        An address that logged in to the account before is not stopped by
        the account's budget either.
        """
        self.guard.succeeded(self.guard.check("alice", "10.0.0.1", None))
        for _ in range(5):
            self.fail("alice", "203.0.113.9")
        self.limited("alice", "203.0.113.9")
        self.assertEqual(self.guard.check("alice", "10.0.0.1", None).trust, "address")
        # A device token for another account does not count for this one.
        bob = self.guard.succeeded(self.guard.check("bob", "10.0.0.2", None))
        self.limited("alice", "198.51.100.7", bob)

    def test_shared_address_does_not_lock_out_known_devices(self) -> None:
        """
        Behind one shared address (a proxy), 20 failures stop that address
        for every unknown client, but a browser that logged in before still
        gets in.
        """
        owner = self.guard.succeeded(self.guard.check("alice", "127.0.0.1", None))
        for n in range(20):
            self.fail(f"user{n}", "127.0.0.1")
        self.limited("carol", "127.0.0.1")
        self.limited("alice", "127.0.0.1")  # known address, but the address budget is spent
        self.assertEqual(self.guard.check("alice", "127.0.0.1", owner).trust, "device")

    def test_device_has_its_own_budget(self) -> None:
        """
        A known device token still allows only ten wrong passwords per
        window, so a stolen one does not open unlimited guessing; a correct
        login resets it.
        """
        token = self.guard.succeeded(self.guard.check("alice", "10.0.0.1", None))
        for _ in range(10):
            self.fail("alice", "10.9.9.9", token)
        self.limited("alice", "10.9.9.9", token)
        self.clock.advance(300)
        self.guard.check("alice", "10.9.9.9", token)

    def test_window_expires(self) -> None:
        """
        The account budget comes back when the failures leave the window.
        """
        for _ in range(5):
            self.fail("alice", "203.0.113.9")
        self.clock.advance(299)
        self.assertEqual(self.limited("alice", "192.0.2.1"), 1)
        self.clock.advance(1)
        self.assertEqual(self.guard.check("alice", "192.0.2.1", None).trust, "none")

    def test_ipv6_counts_per_64(self) -> None:
        """
        IPv6 addresses in one /64 share a budget; IPv4-mapped addresses
        count as their IPv4 address.
        """
        self.assertEqual(address_key("2001:db8:1:2::1"), address_key("2001:db8:1:2:ffff::9"))
        self.assertNotEqual(address_key("2001:db8:1:2::1"), address_key("2001:db8:1:3::1"))
        self.assertEqual(address_key("::ffff:192.0.2.1"), "192.0.2.1")
        self.assertEqual(address_key("unknown"), "unknown")
        for n in range(20):
            self.fail(f"user{n}", f"2001:db8:1:2::{n + 1:x}")
        self.limited("someone", "2001:db8:1:2::abcd")


class KnownClientsTests(SynchronousTestCase):
    def test_bounded(self) -> None:
        """
        Memory stays bounded: per account the oldest entries go first, and
        the least recently seen accounts are forgotten.
        """
        known = KnownClients(per_account=2, accounts=2)
        known.remember("a", "x", "y", "z")
        self.assertFalse(known.knows("a", "x"))
        self.assertTrue(known.knows("a", "z"))
        known.remember("b", "x")
        known.remember("c", "x")
        self.assertFalse(known.knows("a", "z"))
        self.assertTrue(known.knows("c", "x"))
