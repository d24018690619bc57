"""
The administration queries against real databases: every test runs on
SQLite and on a real PostgreSQL server (as tests/test_storage.py does).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from twisted.internet import reactor
from twisted.trial.unittest import TestCase

from denoisecast.storage.admin import AdminStore
from denoisecast.storage.database import Database
from denoisecast.storage.migrations import thd_upgrade
from denoisecast.storage.passwords import PasswordHashes
from denoisecast.storage.store import Store
from tests.support import postgres_url, sqlite_url

NOW = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)
LATER = NOW + timedelta(days=1)


class AdminStoreMixin:
    def database_url(self) -> str:
        raise NotImplementedError

    async def setUp(self) -> None:
        self.database = Database(self.database_url(), reactor)
        self.database.start()
        self.addCleanup(self.database.stop)  # type: ignore[attr-defined]
        await self.database.run(thd_upgrade, self.database.engine)
        self.store = Store(self.database)
        self.admin = AdminStore(self.database)

    async def test_new_accounts_are_plain(self) -> None:
        """
        A new account is neither admin nor disabled; the flag is set and
        cleared; the lookup ignores case.
        """
        user = await self.store.create_user("alice", "hash", NOW)
        account = await self.admin.get_account("ALICE")
        self.assertEqual((account["id"], account["is_admin"], account["disabled"]), (user["id"], False, False))  # type: ignore[attr-defined]
        self.assertFalse(await self.admin.is_admin(user["id"]))  # type: ignore[attr-defined]
        await self.admin.set_admin(user["id"], True)
        self.assertTrue(await self.admin.is_admin(user["id"]))  # type: ignore[attr-defined]
        await self.admin.set_admin(user["id"], False)
        self.assertFalse(await self.admin.is_admin(user["id"]))  # type: ignore[attr-defined]
        self.assertIsNone(await self.admin.get_account("nobody"))  # type: ignore[attr-defined]

    async def test_disable_ends_sessions_and_refuses_them(self) -> None:
        """
        Disabling deletes the account's sessions in the same transaction;
        a disabled admin is no admin; sessions of a disabled account are
        not valid; enabling lets new sessions work again.
        """
        alice = await self.store.create_user("alice", "hash", NOW)
        bob = await self.store.create_user("bob", "hash", NOW)
        await self.admin.set_admin(alice["id"], True)
        for token, user in [("a1", alice), ("a2", alice), ("b1", bob)]:
            await self.store.create_session(user["id"], token, NOW, LATER)
        self.assertEqual(await self.admin.valid_sessions(["a1", "a2", "b1", "zz"], NOW), {"a1", "a2", "b1"})  # type: ignore[attr-defined]
        self.assertEqual(await self.admin.set_disabled(alice["id"], NOW), 2)  # type: ignore[attr-defined]
        self.assertEqual(await self.admin.valid_sessions(["a1", "a2", "b1"], NOW), {"b1"})  # type: ignore[attr-defined]
        self.assertFalse(await self.admin.is_admin(alice["id"]))  # type: ignore[attr-defined]
        self.assertEqual(await self.admin.disabled_among([alice["id"], bob["id"]]), {alice["id"]})  # type: ignore[attr-defined]
        # A session made while disabled (a race with a login) is still refused.
        await self.store.create_session(alice["id"], "a3", NOW, LATER)
        self.assertIsNone(await self.store.get_session_user("a3", NOW))  # type: ignore[attr-defined]
        self.assertTrue((await self.store.get_login("alice"))["disabled"])  # type: ignore[attr-defined]
        await self.admin.set_disabled(alice["id"], None)
        self.assertEqual((await self.store.get_session_user("a3", NOW))["username"], "alice")  # type: ignore[attr-defined]
        self.assertEqual(await self.admin.valid_sessions(["a1"], LATER), set())  # type: ignore[attr-defined]

    async def test_storage_use_and_recordings(self) -> None:
        """
        Storage use per user sums both tracks of every recording; a user
        without recordings shows zero; a user's recordings are listed
        newest first.
        """
        alice = await self.store.create_user("alice", "hash", NOW)
        await self.store.create_user("bob", "hash", NOW)
        for n, (denoised, raw) in enumerate([(100, 50), (1000, 7)]):
            await self.store.create_recording(f"r{n}", alice["id"], NOW + timedelta(minutes=n), "m", "[]")
            await self.store.update_recording(f"r{n}", denoised_bytes=denoised, raw_bytes=raw)
        used = {a["username"]: (a["recordings"], a["bytes"]) for a in await self.admin.list_accounts()}
        self.assertEqual(used, {"alice": (2, 1157), "bob": (0, 0)})  # type: ignore[attr-defined]
        listed = await self.admin.user_recordings(alice["id"])
        self.assertEqual([r["public_id"] for r in listed], ["r1", "r0"])  # type: ignore[attr-defined]
        self.assertEqual((await self.admin.get_recording("r0"))["owner"], "alice")  # type: ignore[attr-defined]

    async def test_demo_creates_missing_users_and_friendships(self) -> None:
        """
        Demo accounts are created once, with friendships among them; an
        existing name is left alone and gets no friendships.
        """
        await self.store.create_user("carol", "hash", NOW)
        created = await self.admin.create_demo(
            [("alice", "h"), ("bob", "h"), ("carol", "h")], [("alice", "bob"), ("bob", "carol")], NOW
        )
        self.assertEqual(created, ["alice", "bob"])  # type: ignore[attr-defined]
        bob = await self.admin.get_account("bob")
        friends = [f["username"] for f in await self.store.list_friends(bob["id"])]
        self.assertEqual(friends, ["alice"])  # type: ignore[attr-defined]
        again = await self.admin.create_demo([("alice", "h")], [], NOW)
        self.assertEqual(again, [])  # type: ignore[attr-defined]


class PasswordHashMixin:
    async def test_upgrade_only_if_unchanged(self) -> None:
        """
        A rehash replaces the stored hash only if it is still the one that
        was verified, and keeps the sessions (the password is the same).
        """
        test: Any = self
        user = await test.store.create_user("alice", "old-hash", NOW)
        await test.store.create_session(user["id"], "s1", NOW, LATER)
        hashes = PasswordHashes(test.database)
        test.assertTrue(await hashes.upgrade(user["id"], "old-hash", "new-hash"))
        test.assertEqual(await test.store.get_password_hash(user["id"]), "new-hash")
        test.assertFalse(await hashes.upgrade(user["id"], "old-hash", "stale-hash"))
        test.assertEqual(await test.store.get_password_hash(user["id"]), "new-hash")
        test.assertIsNotNone(await test.store.get_session_user("s1", NOW))


class SQLiteAdminStoreTests(PasswordHashMixin, AdminStoreMixin, TestCase):
    def database_url(self) -> str:
        return sqlite_url(self)


class PostgresAdminStoreTests(PasswordHashMixin, AdminStoreMixin, TestCase):
    def database_url(self) -> str:
        return postgres_url(self)
