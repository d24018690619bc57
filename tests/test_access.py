"""
The one visibility rule (denoisecast.handlers.access): who sees whom, who
listens to whom, and the store's SQL form of the same rule.
"""

from __future__ import annotations

from datetime import UTC, datetime

from twisted.internet import reactor
from twisted.trial.unittest import SynchronousTestCase, TestCase

from denoisecast.handlers.access import Access, can_listen, can_see
from denoisecast.storage.database import Database
from denoisecast.storage.migrations import thd_upgrade
from denoisecast.storage.store import Store
from tests.support import sqlite_url

NOW = datetime(2026, 1, 1, tzinfo=UTC)


class RuleTests(SynchronousTestCase):
    def test_can_see(self) -> None:
        """One sees oneself and one's friends, never a stranger."""
        self.assertTrue(can_see(1, 1, False))
        self.assertTrue(can_see(1, 2, True))
        self.assertFalse(can_see(1, 2, False))

    def test_can_listen(self) -> None:
        """One listens to a friend only: not to a stranger, not to oneself."""
        self.assertTrue(can_listen(1, 2, True))
        self.assertFalse(can_listen(1, 2, False))
        self.assertFalse(can_listen(1, 1, False))


class AccessTests(TestCase):
    async def setUp(self) -> None:
        self.database = Database(sqlite_url(self), reactor)
        self.database.start()
        self.addCleanup(self.database.stop)
        await self.database.run(thd_upgrade, self.database.engine)
        self.store = Store(self.database)
        self.alice, self.bob, self.carol = [
            await self.store.create_user(name, "hash", NOW) for name in ("alice", "bob", "carol")
        ]
        await self.store.send_request(self.alice["id"], self.bob["id"], NOW)
        await self.store.accept_request(self.bob["id"], self.alice["id"], NOW)
        self.access = Access(self.store)

    async def test_usernames(self) -> None:
        """
        Access applies the rule to usernames: a friend and oneself are
        visible, a stranger and an unknown name look the same (None); only
        a friend can be listened to.
        """
        seen = [await self.access.visible(self.alice, name) for name in ("alice", "bob", "carol", "nobody")]
        self.assertEqual([u["username"] if u else None for u in seen], ["alice", "bob", None, None])
        heard = [await self.access.listenable(self.alice, name) for name in ("alice", "bob", "carol", "nobody")]
        self.assertEqual([u["username"] if u else None for u in heard], [None, "bob", None, None])

    async def test_store_agrees_with_can_see(self) -> None:
        """
        The store's SQL condition for recordings gives the same answer as
        can_see for every viewer and owner: the rule, not a second one.
        """
        people = (self.alice, self.bob, self.carol)
        for owner in people:
            await self.store.create_recording(f"rec-{owner['username']}", owner["id"], NOW, "m", "[]")
        for viewer in people:
            listed = await self.store.list_visible_recordings(viewer["id"], None, None, 10)
            visible = {row["public_id"] for row in listed}
            for owner in people:
                friends = await self.store.are_friends(viewer["id"], owner["id"])
                expected = can_see(viewer["id"], owner["id"], friends)
                self.assertEqual(f"rec-{owner['username']}" in visible, expected, (viewer["username"], owner["username"]))
                single = await self.store.get_visible_recording(f"rec-{owner['username']}", viewer["id"])
                self.assertEqual(single is not None, expected)
