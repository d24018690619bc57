"""
The store against real databases: every test runs on SQLite and on a real
PostgreSQL server.  Covers the migrations, the database-level constraints
that make duplicates impossible, the friend operations, and that database
work never runs on the reactor thread nor stalls it.
"""

from __future__ import annotations

import threading
import time
import warnings
from datetime import datetime, timedelta, timezone

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import insert, select
from sqlalchemy.exc import IntegrityError
from twisted.internet import reactor
from twisted.internet.task import LoopingCall, deferLater
from twisted.python.threadable import isInIOThread
from twisted.trial.unittest import TestCase

from denoisecast.storage.database import Database
from alembic.script import ScriptDirectory

from denoisecast.storage.migrations import alembic_config, thd_upgrade
from denoisecast.storage.store import (
    AlreadyFriends,
    NoSuchRequest,
    NotFriends,
    RequestExists,
    Store,
    UsernameTaken,
)
from denoisecast.storage.tables import friend_requests, friendships, metadata, node_leases, users
from tests.support import postgres_url, sqlite_url, start_server

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=timezone.utc)


class StoreTestsMixin:
    """
    Store behaviour; subclasses choose the database.
    """

    def database_url(self) -> str:
        raise NotImplementedError

    async def setUp(self) -> None:
        self.database = Database(self.database_url(), reactor)
        self.database.start()
        self.addCleanup(self.database.stop)
        await self.database.run(thd_upgrade, self.database.engine)
        self.store = Store(self.database)

    async def make_users(self, *names: str) -> list[dict]:
        return [await self.store.create_user(name, "hash", NOW) for name in names]

    async def test_migrations_match_tables(self) -> None:
        """
        The migrated schema is exactly what tables.py declares, so the code
        and the migrations cannot drift apart.
        """

        def diff(connection):
            with warnings.catch_warnings():
                # SQLite cannot reflect the lower(username) index; PostgreSQL
                # compares it.
                warnings.simplefilter("ignore")
                return compare_metadata(MigrationContext.configure(connection), metadata)

        self.assertEqual(await self.database.read(diff), [])

    async def test_node_leases_run_out(self) -> None:
        """
        A node's lease is live for its own seconds after each renewal (on
        the database's clock), then runs out; renewing brings it back, a
        withdrawn lease or an unknown node has none, and a lease run out
        for over a day is deleted by the next renewal.
        """
        await self.store.renew_node_lease("short", 0.3)
        await self.store.renew_node_lease("long", 60.0)
        self.assertEqual(await self.store.live_node_leases(["short", "long", "never"]), {"short", "long"})
        self.assertEqual(await self.store.live_node_leases([]), set())
        for _ in range(100):
            if await self.store.live_node_leases(["short", "long"]) == {"long"}:
                break
            await deferLater(reactor, 0.05)
        self.assertEqual(await self.store.live_node_leases(["short", "long"]), {"long"})
        await self.store.renew_node_lease("short", 60.0)
        await self.store.drop_node_lease("long")
        self.assertEqual(await self.store.live_node_leases(["short", "long"]), {"short"})
        long_ago = datetime.now(timezone.utc) - timedelta(days=2)
        await self.database.write(
            lambda conn: conn.execute(insert(node_leases).values(node_id="old", renewed_at=long_ago, seconds=6.0))
        )
        await self.store.renew_node_lease("short", 60.0)
        rows = await self.database.read(lambda conn: [row.node_id for row in conn.execute(select(node_leases.c.node_id))])
        self.assertEqual(sorted(rows), ["short"])

    async def test_migrations_idempotent(self) -> None:
        """
        Upgrading an up-to-date database is a no-op that keeps the data.
        """
        await self.make_users("alice")
        revision = await self.database.run(thd_upgrade, self.database.engine)
        head = ScriptDirectory.from_config(alembic_config(self.database.engine)).get_current_head()
        self.assertEqual(revision, head)
        self.assertIsNotNone(await self.store.get_user_by_name("alice"))

    async def test_usernames_unique_ignoring_case_in_database(self) -> None:
        """
        The database itself refuses a username differing only in case.
        """
        await self.make_users("alice")
        with self.assertRaises(UsernameTaken):
            await self.store.create_user("alice", "hash", NOW)

        def raw_insert(connection):
            connection.execute(
                insert(users).values(
                    username="ALICE", password_hash="x", created_at=NOW, password_changed_at=NOW
                )
            )

        with self.assertRaises(IntegrityError):
            await self.database.write(raw_insert)

    async def test_duplicates_impossible_in_database(self) -> None:
        """
        Raw inserts bypassing the code still cannot create a duplicate
        request, a self-request, a reversed friendship pair or a duplicate
        friendship.
        """
        alice, bob = await self.make_users("alice", "bob")
        await self.store.send_request(alice["id"], bob["id"], NOW)

        def insert_row(table, **values):
            def thd(connection):
                connection.execute(insert(table).values(created_at=NOW, **values))

            return self.database.write(thd)

        with self.assertRaises(IntegrityError):
            await insert_row(friend_requests, from_user_id=alice["id"], to_user_id=bob["id"])
        with self.assertRaises(IntegrityError):
            await insert_row(friend_requests, from_user_id=alice["id"], to_user_id=alice["id"])
        low, high = sorted([alice["id"], bob["id"]])
        await insert_row(friendships, user_low_id=low, user_high_id=high)
        with self.assertRaises(IntegrityError):
            await insert_row(friendships, user_low_id=low, user_high_id=high)
        with self.assertRaises(IntegrityError):
            await insert_row(friendships, user_low_id=high, user_high_id=low)

    async def test_friend_lifecycle(self) -> None:
        """
        Request, accept, list on both sides, unfriend; errors for repeats.
        """
        alice, bob = await self.make_users("alice", "bob")
        self.assertEqual(await self.store.send_request(alice["id"], bob["id"], NOW), "requested")
        with self.assertRaises(RequestExists):
            await self.store.send_request(alice["id"], bob["id"], NOW)
        requests = await self.store.list_requests(bob["id"])
        self.assertEqual([r["username"] for r in requests["incoming"]], ["alice"])
        await self.store.accept_request(bob["id"], alice["id"], NOW)
        with self.assertRaises(NoSuchRequest):
            await self.store.accept_request(bob["id"], alice["id"], NOW)
        self.assertTrue(await self.store.are_friends(alice["id"], bob["id"]))
        self.assertTrue(await self.store.are_friends(bob["id"], alice["id"]))
        with self.assertRaises(AlreadyFriends):
            await self.store.send_request(bob["id"], alice["id"], NOW)
        self.assertEqual([f["username"] for f in await self.store.list_friends(alice["id"])], ["bob"])
        self.assertEqual([f["username"] for f in await self.store.list_friends(bob["id"])], ["alice"])
        await self.store.unfriend(bob["id"], alice["id"])
        with self.assertRaises(NotFriends):
            await self.store.unfriend(alice["id"], bob["id"])
        self.assertEqual(await self.store.list_friends(alice["id"]), [])

    async def test_crossed_requests(self) -> None:
        """
        B asking A after A asked B makes them friends and leaves no request.
        """
        alice, bob = await self.make_users("alice", "bob")
        await self.store.send_request(alice["id"], bob["id"], NOW)
        self.assertEqual(await self.store.send_request(bob["id"], alice["id"], NOW), "friends")
        self.assertEqual(await self.store.list_requests(alice["id"]), {"incoming": [], "outgoing": []})

    async def test_concurrent_crossed_requests(self) -> None:
        """
        Many simultaneous opposite requests between pairs end, for each
        pair, in exactly one friendship and no leftover request.
        """
        people = await self.make_users(*[f"user{i}" for i in range(8)])
        sends = []
        for a, b in zip(people[0::2], people[1::2]):
            sends.append(self.store.send_request(a["id"], b["id"], NOW))
            sends.append(self.store.send_request(b["id"], a["id"], NOW))
        from twisted.internet.defer import DeferredList

        results = await DeferredList(sends, consumeErrors=True)
        for a, b in zip(people[0::2], people[1::2]):
            self.assertTrue(await self.store.are_friends(a["id"], b["id"]))
            self.assertEqual(await self.store.list_requests(a["id"]), {"incoming": [], "outgoing": []})
        self.assertTrue(all(ok for ok, _ in results), results)

    async def test_sessions_expire(self) -> None:
        """
        A session is found until it expires, then not, and the sweep removes it.
        """
        (alice,) = await self.make_users("alice")
        await self.store.create_session(alice["id"], "a" * 64, NOW, NOW + timedelta(hours=1))
        found = await self.store.get_session_user("a" * 64, NOW)
        self.assertEqual(found["username"], "alice")
        self.assertEqual(found["created_at"], NOW)
        later = NOW + timedelta(hours=2)
        self.assertIsNone(await self.store.get_session_user("a" * 64, later))
        self.assertEqual(await self.store.delete_expired_sessions(later), 1)

    async def test_never_on_reactor_thread(self) -> None:
        """
        Every store call runs its SQL on a pool thread, never the reactor's.
        """
        threads = []
        original = Database._transaction

        def spy(database, writes, fn, *args):
            threads.append(isInIOThread())
            return original(database, writes, fn, *args)

        self.patch(Database, "_transaction", spy)
        (alice,) = await self.make_users("alice")
        await self.store.get_user_by_name("alice")
        await self.store.search_users(alice["id"], "a", None, 5)
        await self.store.ping()
        self.assertEqual(threads, [False] * 4)

    async def test_slow_query_does_not_stall(self) -> None:
        """
        While one transaction is held open, the reactor keeps ticking and
        other queries are answered.  The slow transaction is released by the
        reactor itself, after the fast query and a run of ticks: had it run
        on the reactor thread, nothing could release it and it would report
        that it waited in vain, whatever the machine's speed.
        """
        (alice,) = await self.make_users("alice")
        started = threading.Event()
        release = threading.Event()

        def slow(connection):
            connection.exec_driver_sql("SELECT 1")
            started.set()
            return "released" if release.wait(30) else "never released"

        ticks = []
        ticker = LoopingCall(lambda: ticks.append(time.monotonic()))
        ticker.clock = reactor
        ticker.start(0.01)
        self.addCleanup(lambda: ticker.running and ticker.stop())
        self.addCleanup(release.set)
        slow_done = self.database.read(slow)
        while not started.is_set():
            await deferLater(reactor, 0.01)
        found = await self.store.get_user_by_name("alice")
        self.assertFalse(slow_done.called, "the fast query waited for the slow one")
        self.assertEqual(found["username"], "alice")
        ticked = len(ticks)
        while len(ticks) < ticked + 10:
            await deferLater(reactor, 0.01)
        self.assertFalse(slow_done.called)
        release.set()
        self.assertEqual(await slow_done, "released")


class SQLiteStoreTests(StoreTestsMixin, TestCase):
    def database_url(self) -> str:
        return sqlite_url(self)


class PostgresStoreTests(StoreTestsMixin, TestCase):
    def database_url(self) -> str:
        return postgres_url(self)


class PostgresApiTests(TestCase):
    async def test_api_on_postgres(self) -> None:
        """
        The whole server works on PostgreSQL: register, befriend, search.
        """
        running = await start_server(self, database_url=postgres_url(self))
        alice, bob = running.client(), running.client()
        await alice.register("alice")
        await bob.register("bob")
        self.assertEqual((await alice.post("/api/friends/requests", {"username": "bob"})).status, 201)
        self.assertEqual((await bob.post("/api/friends/requests/alice/accept")).status, 200)
        friends = await alice.get("/api/friends")
        self.assertEqual([f["username"] for f in friends.body["friends"]], ["bob"])
        found = await alice.get("/api/users?q=B")
        self.assertEqual([(u["username"], u["relationship"]) for u in found.body["users"]], [("bob", "friend")])



class DenoisePreferenceTests(TestCase):
    async def test_denoise_preferences_default_and_remembered(self) -> None:
        """
        A new user has denoise on with no limit; a stored choice comes back.
        """
        from tests.support import sqlite_url
        from denoisecast.storage.database import Database
        from denoisecast.app.service import DatabaseService
        from denoisecast.storage.store import Store
        from datetime import datetime, timezone

        database = Database(sqlite_url(self), reactor)
        service = DatabaseService(database)
        service.startService()
        self.addCleanup(service.stopService)
        await service.ready
        store = Store(database)
        now = datetime.now(timezone.utc)
        user = await store.create_user("prefs", "x", now)
        self.assertEqual(await store.get_denoise_prefs(user["id"]), {"denoise": True, "atten_lim_db": 100.0})
        await store.set_denoise_prefs(user["id"], False, 12.0)
        self.assertEqual(await store.get_denoise_prefs(user["id"]), {"denoise": False, "atten_lim_db": 12.0})


class ConcurrentMigrationTests(TestCase):
    def test_nodes_starting_at_once_migrate_once(self) -> None:
        """
        Three node processes starting at the same moment on one empty
        PostgreSQL database all come up at the newest revision (an advisory
        lock lets one migrate; without it the others fail on duplicate
        tables).
        """
        import subprocess
        import sys

        url = postgres_url(self)
        script = (
            "import sys; from sqlalchemy import create_engine; "
            "from denoisecast.storage.migrations import thd_upgrade; "
            "engine = create_engine(sys.argv[1]); print(thd_upgrade(engine)); engine.dispose()"
        )
        processes = [
            subprocess.Popen([sys.executable, "-c", script, url], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            for _ in range(3)
        ]
        results = []
        for process in processes:
            out, err = process.communicate(timeout=120)
            results.append((process.returncode, out.decode().strip().splitlines()[-1:] or err.decode()[-300:]))
        from sqlalchemy import create_engine

        engine = create_engine(url)
        head = ScriptDirectory.from_config(alembic_config(engine)).get_current_head()
        engine.dispose()
        self.assertEqual(results, [(0, [head])] * 3)
