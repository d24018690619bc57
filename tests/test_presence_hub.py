"""
The presence hub's logic without sockets: a connection that closes while its
friend list loads is never counted online.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred, ensureDeferred
from twisted.trial.unittest import SynchronousTestCase

from denoisecast.handlers.presence import PresenceHub


class FakeConnection:
    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []
        self.still_open = True

    def send_message(self, message: dict[str, Any]) -> None:
        self.sent.append(message)


class SlowStore:
    def __init__(self) -> None:
        self.pending: Deferred[list[dict[str, Any]]] = Deferred()

    def list_friends(self, user_id: int) -> Deferred[list[dict[str, Any]]]:
        return self.pending


class HubTests(SynchronousTestCase):
    def test_closed_while_loading_is_not_online(self) -> None:
        """
        The socket closes before the friend list arrives: the user does not
        become (and stay) online, and nothing is sent to the dead socket.
        """
        store = SlowStore()
        hub = PresenceHub(store)  # type: ignore[arg-type]
        connection = FakeConnection()
        done = ensureDeferred(hub.connect({"id": 1, "username": "alice"}, connection))
        connection.still_open = False
        hub.disconnect(1, connection)
        store.pending.callback([{"id": 2, "username": "bob"}])
        self.successResultOf(done)
        self.assertFalse(hub.is_online(1))
        self.assertEqual(connection.sent, [])

    def test_snapshot_and_changes(self) -> None:
        """
        A friend's status goes to the online friend only; several
        connections of one user count once.
        """
        store = SlowStore()
        store.pending.callback([{"id": 2, "username": "bob"}])
        live: dict[int, dict] = {}
        hub = PresenceHub(store, live.get)  # type: ignore[arg-type]
        alice1, alice2 = FakeConnection(), FakeConnection()
        self.successResultOf(ensureDeferred(hub.connect({"id": 1, "username": "alice"}, alice1)))
        self.successResultOf(ensureDeferred(hub.connect({"id": 1, "username": "alice"}, alice2)))
        self.assertEqual(hub.online_count(), 1)
        self.assertEqual(alice1.sent[0]["friends"][0]["username"], "bob")
        live[2] = {"live_since": None, "denoise": True, "atten_lim_db": 100.0, "listeners": 0}
        hub.changed(2)
        self.assertTrue(alice1.sent[-1]["friend"]["live"])
        self.assertTrue(alice2.sent[-1]["friend"]["live"])
        hub.changed(3)  # a stranger: nobody hears of it
        self.assertEqual(len(alice1.sent), 2)
