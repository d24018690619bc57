"""
Presence over the WebSocket: snapshots, pushes only to friends, several
tabs counting once, and unfriending stopping updates at once.
"""

from __future__ import annotations

from typing import Any

from twisted.trial.unittest import TestCase

from tests.support import Client, RunningServer, start_server
from tests.ws_support import connect_ws


async def befriend(a: Client, b: Client, b_name: str, a_name: str) -> None:
    await a.post("/api/friends/requests", {"username": b_name})
    reply = await b.post(f"/api/friends/requests/{a_name}/accept")
    assert reply.status == 200, reply


async def people(test: TestCase) -> tuple[RunningServer, dict[str, Client]]:
    """alice and bob are friends; carol is nobody's friend."""
    running = await start_server(test)
    clients = {}
    for name in ("alice", "bob", "carol"):
        clients[name] = running.client()
        await clients[name].register(name)
    await befriend(clients["alice"], clients["bob"], "bob", "alice")
    return running, clients


def by_name(friends: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {f["username"]: f for f in friends}


class PresenceTests(TestCase):
    timeout = 20
    async def test_snapshot_and_pushes_to_friends_only(self) -> None:
        """
        A connecting user gets hello and a snapshot of their friends; a
        friend coming online is pushed to friends within 1 s, not to others.
        """
        running, c = await people(self)
        bob = await connect_ws(self, running.base, c["bob"])
        hello = await bob.expect("hello")
        self.assertEqual(hello["user"], "bob")
        self.assertEqual(hello["ice_servers"], [])
        snapshot = await bob.expect("presence")
        alice_status = by_name(snapshot["friends"])["alice"]
        self.assertEqual(
            alice_status,
            {"username": "alice", "online": False, "live": False, "live_since": None,
             "denoise": None, "atten_lim_db": None, "listeners": 0},
        )
        carol = await connect_ws(self, running.base, c["carol"])
        self.assertEqual((await carol.expect("presence"))["friends"], [])
        self.assertEqual((await carol.next())["type"], "me")  # carol's own state comes next
        alice = await connect_ws(self, running.base, c["alice"])
        update = await bob.expect("friend", timeout=1.0)
        self.assertEqual(update["friend"]["username"], "alice")
        self.assertTrue(update["friend"]["online"])
        alice_snapshot = await alice.expect("presence")
        self.assertTrue(by_name(alice_snapshot["friends"])["bob"]["online"])
        self.assertEqual(await carol.silent(0.3), [])
        await alice.close()
        update = await bob.expect("friend", timeout=1.0)
        self.assertFalse(update["friend"]["online"])
        self.assertEqual(await carol.silent(0.2), [])

    async def test_several_tabs_count_once(self) -> None:
        """
        A second tab does not push "online" again, and closing one of two
        tabs keeps the user online; closing the last pushes "offline".
        """
        running, c = await people(self)
        bob = await connect_ws(self, running.base, c["bob"])
        await bob.expect("presence")
        await bob.expect("me")  # bob's own state follows his snapshot; it is not news about alice
        tab1 = await connect_ws(self, running.base, c["alice"])
        self.assertTrue((await bob.expect("friend"))["friend"]["online"])
        tab2 = await connect_ws(self, running.base, c["alice"])
        await tab2.expect("presence")
        await tab1.close()
        self.assertEqual(await bob.silent(0.3), [])
        await tab2.close()
        self.assertFalse((await bob.expect("friend", timeout=1.0))["friend"]["online"])

    async def test_unfriend_stops_updates_at_once(self) -> None:
        """
        Unfriending tells both sides at once and no later change of either
        reaches the other; befriending again starts the updates again.
        """
        running, c = await people(self)
        alice = await connect_ws(self, running.base, c["alice"])
        bob = await connect_ws(self, running.base, c["bob"])
        await alice.expect("friend")  # bob came online
        reply = await c["alice"].delete("/api/friends/bob")
        self.assertEqual(reply.status, 204)
        self.assertEqual((await bob.expect("friend_removed", timeout=1.0))["username"], "alice")
        self.assertEqual((await alice.expect("friend_removed", timeout=1.0))["username"], "bob")
        await alice.close()
        self.assertEqual(await bob.silent(0.3), [])
        alice = await connect_ws(self, running.base, c["alice"])
        self.assertEqual((await alice.expect("presence"))["friends"], [])
        await befriend(c["bob"], c["alice"], "alice", "bob")
        update = await alice.expect("friend", timeout=1.0)
        self.assertEqual(update["friend"]["username"], "bob")
        self.assertTrue(update["friend"]["online"])
