"""
The admin JSON API over HTTP against a real in-process server: only admins
may use it (everyone else 403), each action does what it says and writes
an audit event, and disabling an account ends its sessions and sockets at
once.  The storage side runs on SQLite here and on PostgreSQL in
tests/test_admin_storage.py.
"""

from __future__ import annotations

import json
from typing import Any

from twisted.logger import globalLogPublisher
from twisted.trial.unittest import TestCase

from denoisecast.handlers.admin import DEMO_PASSWORD, DEMO_USERS
from denoisecast.protocols.socket import CLOSE_SESSION_ENDED
from denoisecast.recordings.recorder import recording_paths
from denoisecast.web.routes.admin import AdminRoutes
from tests.support import Client, RunningServer, start_server
from tests.ws_support import connect_ws

NEW_PASSWORD = "a fresh passphrase"


def audit_events(test: TestCase) -> list[dict[str, Any]]:
    """Every audit event published while the test runs."""
    events: list[dict[str, Any]] = []

    def observe(event: dict[str, Any]) -> None:
        if event.get("log_namespace") == "denoisecast.audit":
            events.append(event)

    globalLogPublisher.addObserver(observe)
    test.addCleanup(globalLogPublisher.removeObserver, observe)
    return events


async def with_admin(test: TestCase, **config: Any) -> tuple[RunningServer, Client]:
    """A server and a logged-in client whose account is an admin."""
    running = await start_server(test, **config)
    root = running.client()
    await root.register("root")
    account = await running.server.admin_store.get_account("root")
    await running.server.admin_store.set_admin(account["id"], True)
    return running, root


class AccessTests(TestCase):
    async def test_non_admins_get_403_everywhere(self) -> None:
        """
        Every admin route answers a logged-in non-admin with 403 not_admin
        (and an anonymous client with 401), and nothing changes.
        """
        running, _ = await with_admin(self)
        mallory = running.client()
        await mallory.register("mallory")
        anonymous = running.client()
        routes = AdminRoutes(running.server.administration).routes()
        self.assertGreaterEqual(len(routes), 10)
        bodies = {"POST": {"username": "x", "password": "y", "admin": True, "disabled": True}}
        for route in routes:
            path = (
                route.template.replace("{username}", "root").replace("{id}", "abc")
            )
            reply = await mallory.request(route.method, path, bodies.get(route.method))
            self.assertEqual((reply.status, reply.error_code), (403, "not_admin"), route)
            reply = await anonymous.request(route.method, path, bodies.get(route.method))
            self.assertEqual(reply.status, 401, route)
        users = await running.server.admin_store.list_accounts()
        self.assertEqual([(u["username"], u["is_admin"], u["disabled"]) for u in users],
                         [("mallory", False, False), ("root", True, False)])

    async def test_unmade_admin_loses_access(self) -> None:
        """
        An admin whose flag is removed is refused from the next request on.
        """
        running, root = await with_admin(self)
        second = running.client()
        await second.register("second")
        reply = await root.post("/api/admin/users/second/admin", {"admin": True})
        self.assertEqual((reply.status, reply.body["user"]["is_admin"]), (200, True))
        self.assertEqual((await second.get("/api/admin/users")).status, 200)
        await root.post("/api/admin/users/second/admin", {"admin": False})
        self.assertEqual((await second.get("/api/admin/users")).status, 403)


class ActionTests(TestCase):
    async def test_create_user_and_reset_password(self) -> None:
        """
        An admin creates an account (which can log in), resets its
        password (the old one stops working, its sessions end), with one
        audit event each naming the admin and the account.
        """
        events = audit_events(self)
        running, root = await with_admin(self)
        created = await root.post("/api/admin/users", {"username": "newbie", "password": "first passphrase"})
        self.assertEqual(created.status, 201)
        self.assertEqual(created.body["user"]["is_admin"], False)
        newbie = running.client()
        self.assertEqual((await newbie.login("newbie", "first passphrase")).status, 200)
        common = await root.post("/api/admin/users/newbie/password", {"password": "password"})
        self.assertEqual((common.status, common.error_code), (400, "common_password"))
        reset = await root.post("/api/admin/users/newbie/password", {"password": NEW_PASSWORD})
        self.assertEqual(reset.status, 204)
        self.assertEqual((await newbie.get("/api/me")).status, 401)
        self.assertEqual((await running.client().login("newbie", "first passphrase")).status, 401)
        self.assertEqual((await running.client().login("newbie", NEW_PASSWORD)).status, 200)
        missing = await root.post("/api/admin/users/nobody/password", {"password": NEW_PASSWORD})
        self.assertEqual((missing.status, missing.error_code), (404, "no_such_user"))
        taken = await root.post("/api/admin/users", {"username": "newbie", "password": NEW_PASSWORD})
        self.assertEqual(taken.status, 409)
        self.assertEqual(
            [(e["action"], e["actor"], e["target"]) for e in events],
            [("create_user", "root", "newbie"), ("reset_password", "root", "newbie")],
        )

    async def test_disable_ends_sessions_and_sockets_at_once(self) -> None:
        """
        Disabling an account ends its sessions and closes its open
        WebSocket at once (close code 4001); it cannot log in (403
        account_disabled) until it is enabled again.
        """
        events = audit_events(self)
        running, root = await with_admin(self)
        alice = running.client()
        await alice.register("alice")
        socket = await connect_ws(self, running.base, alice)
        await socket.expect("hello")
        reply = await root.post("/api/admin/users/alice/disabled", {"disabled": True})
        self.assertEqual((reply.status, reply.body["user"]["disabled"]), (200, True))
        self.assertEqual(await socket.factory.closed.addTimeout(5, _reactor()), CLOSE_SESSION_ENDED)
        self.assertEqual((await alice.get("/api/me")).status, 401)
        refused = await running.client().login("alice")
        self.assertEqual((refused.status, refused.error_code), (403, "account_disabled"))
        wrong = await running.client().login("alice", "not the password")
        self.assertEqual(wrong.status, 401)  # says nothing about the account without the password
        await root.post("/api/admin/users/alice/disabled", {"disabled": False})
        self.assertEqual((await running.client().login("alice")).status, 200)
        self.assertEqual([e["action"] for e in events], ["disable", "enable"])
        self.assertEqual((events[0]["sessions_ended"], events[0]["sockets_closed"]), (1, 1))

    async def test_sweep_closes_sockets_of_sessions_ended_elsewhere(self) -> None:
        """
        When another process (denoisecast-admin) deletes an account's
        session rows, this server's next sweep closes the socket that was
        opened with that session, and only that one.
        """
        running, root = await with_admin(self)
        alice = running.client()
        await alice.register("alice")
        socket = await connect_ws(self, running.base, alice)
        await socket.expect("hello")
        root_socket = await connect_ws(self, running.base, root)
        await root_socket.expect("hello")
        account = await running.server.admin_store.get_account("alice")
        from denoisecast.handlers.accounts import utcnow
        from denoisecast.storage.admin import thd_set_disabled

        await running.server.database.write(thd_set_disabled, account["id"], utcnow())
        # The server's own periodic sweep (every SWEEP_SECONDS) notices.
        self.assertEqual(await socket.factory.closed.addTimeout(20, _reactor()), CLOSE_SESSION_ENDED)
        self.assertEqual(await running.server.socket_sessions.sweep(), 0)
        self.assertFalse(root_socket.factory.closed.called)

    async def test_recordings_listed_and_deleted_with_storage_use(self) -> None:
        """
        An admin lists any user's recordings and storage use and deletes a
        recording: the row and both files go, the storage use drops.
        """
        events = audit_events(self)
        running, root = await with_admin(self)
        alice = running.client()
        await alice.register("alice")
        server = running.server
        account = await server.admin_store.get_account("alice")
        from denoisecast.handlers.accounts import utcnow

        timeline = json.dumps([{"t": 0, "denoise": True, "atten_lim_db": 100.0}])
        await server.store.create_recording("rec0001", account["id"], utcnow(), "dfn3", timeline)
        await server.store.update_recording("rec0001", status="complete", denoised_bytes=1000, raw_bytes=500, duration_seconds=2.0)
        files = recording_paths(server.config.data_dir, account["id"], "rec0001")
        for path in files:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(b"OggS")
        users = {u["username"]: u for u in (await root.get("/api/admin/users")).body["users"]}
        self.assertEqual((users["alice"]["recordings"], users["alice"]["bytes"]), (1, 1500))
        self.assertEqual((users["root"]["recordings"], users["root"]["bytes"]), (0, 0))
        listed = await root.get("/api/admin/users/alice/recordings")
        self.assertEqual([r["id"] for r in listed.body["recordings"]], ["rec0001"])
        self.assertEqual((await root.delete("/api/admin/recordings/rec0001")).status, 204)
        self.assertFalse(any(path.exists() for path in files))
        self.assertEqual((await root.get("/api/admin/users/alice/recordings")).body["recordings"], [])
        gone = await root.delete("/api/admin/recordings/rec0001")
        self.assertEqual((gone.status, gone.error_code), (404, "no_such_recording"))
        self.assertEqual([(e["action"], e["target"], e["recording"]) for e in events],
                         [("delete_recording", "alice", "rec0001")])

    async def test_broadcasts_and_demo(self) -> None:
        """
        The live broadcast list is empty on an idle server and ending a
        broadcast nobody runs is a 404; demo creates the demo users, who
        can log in and are friends, and a second demo creates nothing.
        """
        running, root = await with_admin(self)
        self.assertEqual((await root.get("/api/admin/broadcasts")).body, {"broadcasts": []})
        reply = await root.delete("/api/admin/broadcasts/root")
        self.assertEqual((reply.status, reply.error_code), (404, "not_live"))
        demo = await root.post("/api/admin/demo")
        self.assertEqual((demo.status, demo.body["created"]), (201, list(DEMO_USERS)))
        alice = running.client()
        self.assertEqual((await alice.login("alice", DEMO_PASSWORD)).status, 200)
        friends = (await alice.get("/api/friends")).body
        names = sorted(f["username"] for f in friends["friends"])
        self.assertEqual(names, ["bob", "carol"])
        self.assertEqual((await root.post("/api/admin/demo")).body["created"], [])


def _reactor() -> Any:
    from twisted.internet import reactor

    return reactor


class LiveControlTests(TestCase):
    async def test_end_broadcast_and_disable_end_the_broadcast(self) -> None:
        """
        Ending a broadcast goes to the live side and is audited; disabling
        a live user ends their broadcast too (live side stood in for: the
        real one needs WebRTC peers, see tests/test_live_manager.py).
        """
        from denoisecast.handlers.accounts import utcnow
        from denoisecast.handlers.admin import Administration, LiveControl

        events = audit_events(self)
        running, _ = await with_admin(self)
        await running.client().register("alice")
        server = running.server
        live = {"alice": True}
        ended: list[tuple[int, str]] = []

        async def end(user_id: int, reason: str) -> bool:
            ended.append((user_id, reason))
            return live.pop("alice", False)

        admin = Administration(
            server.store, server.admin_store, server.accounts, server.config.data_dir, utcnow,
            LiveControl(broadcasts=lambda: [{"user": "alice"}], end_broadcast=end, close_sockets=lambda u, r: 0),
        )
        self.assertEqual(admin.broadcasts(), [{"user": "alice"}])
        await admin.end_broadcast("root", "alice")
        with self.assertRaises(Exception) as caught:
            await admin.end_broadcast("root", "alice")
        self.assertEqual(getattr(caught.exception, "code", None), "not_live")
        live["alice"] = True
        await admin.set_disabled("root", "alice", True)
        self.assertEqual([reason for _, reason in ended],
                         ["ended by an administrator", "ended by an administrator", "account disabled"])
        self.assertEqual([(e["action"], e.get("broadcast_ended")) for e in events],
                         [("end_broadcast", None), ("disable", True)])
