"""
Accounts over HTTP: registration, login, logout, sessions, passwords, CSRF,
login rate limiting.  Each test runs a real server in-process on a loopback
port with a fresh SQLite database.
"""

from __future__ import annotations

from sqlalchemy import select
from twisted.trial.unittest import SkipTest, TestCase

from denoisecast.handlers.accounts import hash_token
from denoisecast.handlers.passwordqueue import Priority
from denoisecast.storage.tables import sessions, users
from tests.support import start_server


class RegistrationTests(TestCase):
    async def test_register_logs_in(self) -> None:
        """
        Registering creates the account, opens a session and GET /api/me
        names the new user.
        """
        running = await start_server(self)
        alice = running.client()
        reply = await alice.register("alice")
        self.assertEqual(reply.body["user"]["username"], "alice")
        me = await alice.get("/api/me")
        self.assertEqual(me.status, 200)
        self.assertEqual(me.body["user"]["username"], "alice")

    async def test_session_cookie_flags(self) -> None:
        """
        The session cookie is HttpOnly and SameSite=Lax, and not Secure over
        plain HTTP.
        """
        running = await start_server(self)
        reply = await running.client().register("alice")
        cookies = [c for c in reply.headers.getRawHeaders("set-cookie") if c.startswith("dc_session=")]
        self.assertEqual(len(cookies), 1)
        self.assertIn("HttpOnly", cookies[0])
        self.assertIn("SameSite=lax", cookies[0])
        self.assertNotIn("Secure", cookies[0])

    async def test_usernames_validated(self) -> None:
        """
        Usernames must be 3 to 32 characters of [a-z0-9_.-]; anything else
        is a 400 invalid_username and creates nothing.
        """
        running = await start_server(self)
        client = running.client()
        for bad in ["ab", "x" * 33, "Alice", "al ice", "al/ice", "ålice", "a\x00b", ""]:
            reply = await client.post("/api/auth/register", {"username": bad, "password": "longenough"})
            self.assertEqual((reply.status, reply.error_code), (400, "invalid_username"), bad)
        for good in ["abc", "a.b-c_d", "x" * 32, "007"]:
            reply = await client.post("/api/auth/register", {"username": good, "password": "longenough"})
            self.assertEqual(reply.status, 201, good)
        count = await running.server.database.read(
            lambda c: len(c.execute(select(users.c.id)).all())
        )
        self.assertEqual(count, 4)

    async def test_short_password_refused(self) -> None:
        """
        Passwords under 8 characters are refused with 400 weak_password.
        """
        running = await start_server(self)
        reply = await running.client().post(
            "/api/auth/register", {"username": "alice", "password": "1234567"}
        )
        self.assertEqual((reply.status, reply.error_code), (400, "weak_password"))

    async def test_common_password_refused(self) -> None:
        """
        Registering with one of the commonest passwords is a 400
        common_password that says why, and creates no account.
        """
        running = await start_server(self)
        client = running.client()
        for common in ["password", "12345678"]:
            reply = await client.post("/api/auth/register", {"username": "alice", "password": common})
            self.assertEqual((reply.status, reply.error_code), (400, "common_password"), common)
            self.assertIn("most commonly used", reply.body["error"]["message"])
        self.assertEqual((await client.login("alice", "password")).status, 401)

    async def test_username_unique(self) -> None:
        """
        A taken username gets 409 username_taken, whatever the case of the
        login attempt afterwards.
        """
        running = await start_server(self)
        await running.client().register("alice")
        reply = await running.client().post(
            "/api/auth/register", {"username": "alice", "password": "whatever123"}
        )
        self.assertEqual((reply.status, reply.error_code), (409, "username_taken"))
        login = await running.client().login("ALICE")
        self.assertEqual(login.status, 200)

    async def test_password_hashed_with_argon2id(self) -> None:
        """
        The stored password is an argon2id hash, never the password.
        """
        running = await start_server(self)
        await running.client().register("alice", "correct horse")
        stored = await running.server.database.read(
            lambda c: c.execute(select(users.c.password_hash)).scalar_one()
        )
        self.assertTrue(stored.startswith("$argon2id$"), stored)
        self.assertNotIn("correct horse", stored)


class SessionTests(TestCase):
    async def test_login_logout(self) -> None:
        """
        Logging in opens a session; logging out ends it server-side, so even
        a client that kept the old cookie is logged out.
        """
        running = await start_server(self)
        await running.client().register("alice")
        client = running.client()
        self.assertEqual((await client.get("/api/me")).status, 401)
        self.assertEqual((await client.login("alice")).status, 200)
        token = client.cookie("dc_session")
        self.assertEqual((await client.get("/api/me")).status, 200)
        self.assertEqual((await client.post("/api/auth/logout")).status, 204)
        self.assertEqual((await client.get("/api/me")).status, 401)
        replay = running.client()
        await replay.get("/api/csrf")
        reply = await replay.get("/api/me", headers={"Cookie": f"dc_session={token}"})
        self.assertEqual(reply.status, 401)

    async def test_tokens_stored_hashed(self) -> None:
        """
        The sessions table holds the SHA-256 of the token, not the token.
        """
        running = await start_server(self)
        client = running.client()
        await client.register("alice")
        token = client.cookie("dc_session")
        stored = await running.server.database.read(
            lambda c: c.execute(select(sessions.c.token_hash)).scalars().all()
        )
        self.assertEqual(stored, [hash_token(token)])

    async def test_no_user_enumeration(self) -> None:
        """
        A wrong password and an unknown user get exactly the same answer.
        """
        running = await start_server(self)
        await running.client().register("alice")
        wrong = await running.client().login("alice", "wrong password")
        unknown = await running.client().login("nobody", "wrong password")
        self.assertEqual(wrong.status, 401)
        self.assertEqual((wrong.status, wrong.body), (unknown.status, unknown.body))

    async def test_failed_logins_rate_limited(self) -> None:
        """
        After 5 failed logins for a name, further attempts from clients the
        account does not know, even with the right password, get 429 with a
        Retry-After header.
        """
        running = await start_server(self)
        await running.client().register("alice")
        client = running.client("127.0.0.9")  # not where alice registered
        for _ in range(5):
            self.assertEqual((await client.login("alice", "wrong password")).status, 401)
        limited = await client.login("alice", "correct horse")
        self.assertEqual((limited.status, limited.error_code), (429, "rate_limited"))
        retry = int(limited.header("retry-after"))
        self.assertTrue(1 <= retry <= 300, retry)
        # Other accounts are not affected by alice's limit.
        await running.client().register("bob")
        self.assertEqual((await running.client().login("bob")).status, 200)

    async def test_guessing_does_not_lock_out_the_owner(self) -> None:
        """
        An attacker's five wrong passwords stop unknown clients, but the
        owner still logs in from the browser (device cookie) and from the
        address they logged in from before.
        """
        running = await start_server(self)
        await running.client().register("alice")
        laptop = running.client("127.0.0.2")
        self.assertEqual((await laptop.login("alice")).status, 200)
        self.assertIsNotNone(laptop.cookie("dc_device"))
        self.assertEqual((await laptop.post("/api/auth/logout")).status, 204)
        # The browser that registered is known from the start.
        phone = running.client("127.0.0.8")
        await phone.register("bob")
        self.assertEqual((await phone.post("/api/auth/logout")).status, 204)
        attacker = running.client("127.0.0.3")
        for _ in range(5):
            self.assertEqual((await attacker.login("bob", "wrong password")).status, 401)
        self.assertEqual((await phone.login("bob")).status, 200)
        for _ in range(5):
            self.assertEqual((await attacker.login("alice", "wrong password")).status, 401)
        self.assertEqual((await attacker.login("alice")).status, 429)
        self.assertEqual((await running.client("127.0.0.4").login("alice")).status, 429)
        self.assertEqual((await laptop.login("alice")).status, 200)
        self.assertEqual((await running.client("127.0.0.2").login("alice")).status, 200)

    async def test_shared_address_does_not_lock_out_everyone(self) -> None:
        """
        Twenty failures from one address (everyone behind one proxy) stop
        unknown clients there, but a browser that logged in before still
        gets in through the same address.
        """
        running = await start_server(self)
        await running.client().register("alice")
        browser = running.client("127.0.0.5")
        self.assertEqual((await browser.login("alice")).status, 200)
        guesser = running.client("127.0.0.5")
        for n in range(20):
            self.assertEqual((await guesser.login(f"user{n}", "wrong password")).status, 401)
        self.assertEqual((await guesser.login("user0", "wrong password")).status, 429)
        self.assertEqual((await browser.login("alice")).status, 200)

    async def test_registrations_limited_per_address(self) -> None:
        """
        Each client address may attempt a limited number of registrations
        per hour (here 3): the next gets 429 with Retry-After and creates
        nothing; another address is not affected.
        """
        running = await start_server(self, registrations_per_hour=3)
        client = running.client("127.0.0.6")
        for name in ["alice", "bob", "carol"]:
            self.assertEqual((await client.register(name)).status, 201)
        limited = await client.post("/api/auth/register", {"username": "dave", "password": "correct horse"})
        self.assertEqual((limited.status, limited.error_code), (429, "rate_limited"))
        self.assertTrue(3000 < int(limited.header("retry-after")) <= 3600)
        self.assertEqual((await client.login("dave")).status, 401)
        self.assertEqual((await running.client("127.0.0.7").register("dave")).status, 201)

    async def test_change_password_ends_sessions(self) -> None:
        """
        Changing the password ends every session (another device is logged
        out), keeps the changing client logged in, and the old password
        stops working.
        """
        running = await start_server(self)
        laptop = running.client()
        await laptop.register("alice", "old password")
        phone = running.client()
        self.assertEqual((await phone.login("alice", "old password")).status, 200)
        wrong = await laptop.post(
            "/api/auth/password", {"current_password": "nope nope", "new_password": "new password"}
        )
        self.assertEqual((wrong.status, wrong.error_code), (403, "wrong_password"))
        common = await laptop.post(
            "/api/auth/password", {"current_password": "old password", "new_password": "password1"}
        )
        self.assertEqual((common.status, common.error_code), (400, "common_password"))
        changed = await laptop.post(
            "/api/auth/password",
            {"current_password": "old password", "new_password": "new password"},
        )
        self.assertEqual(changed.status, 204)
        self.assertEqual((await phone.get("/api/me")).status, 401)
        self.assertEqual((await laptop.get("/api/me")).status, 200)
        self.assertEqual((await running.client().login("alice", "old password")).status, 401)
        self.assertEqual((await running.client().login("alice", "new password")).status, 200)


    async def test_password_check_rate_limited(self) -> None:
        """
        Five wrong current passwords on /api/auth/password, and the next
        attempt, even with the right one, gets 429: a stolen session cannot
        be used to guess the password.
        """
        running = await start_server(self)
        client = running.client()
        await client.register("alice", "old password")
        body = {"current_password": "not it at all", "new_password": "new password"}
        for _ in range(5):
            reply = await client.post("/api/auth/password", body)
            self.assertEqual((reply.status, reply.error_code), (403, "wrong_password"))
        right = {"current_password": "old password", "new_password": "new password"}
        limited = await client.post("/api/auth/password", right)
        self.assertEqual((limited.status, limited.error_code), (429, "rate_limited"))
        self.assertIsNotNone(limited.header("retry-after"))
        self.assertEqual((await running.client().login("alice", "old password")).status, 200)


class CsrfTests(TestCase):
    async def test_state_change_needs_token(self) -> None:
        """
        POST without the X-CSRF-Token header, or with a wrong one, is a 403
        csrf_failed and changes nothing.
        """
        running = await start_server(self)
        client = running.client()
        await client.get("/api/csrf")
        body = {"username": "alice", "password": "correct horse"}
        missing = await client.post("/api/auth/register", body, csrf=False)
        self.assertEqual((missing.status, missing.error_code), (403, "csrf_failed"))
        forged = await client.post(
            "/api/auth/register", body, csrf=False, headers={"X-CSRF-Token": "guessed-token-123456"}
        )
        self.assertEqual((forged.status, forged.error_code), (403, "csrf_failed"))
        self.assertEqual((await client.login("alice")).status, 401)

    async def test_cross_origin_refused(self) -> None:
        """
        A state-changing request from another Origin is refused even with
        the token.
        """
        running = await start_server(self)
        client = running.client()
        await client.register("alice")
        reply = await client.post("/api/auth/logout", headers={"Origin": "http://evil.example"})
        self.assertEqual((reply.status, reply.error_code), (403, "bad_origin"))
        self.assertEqual((await client.get("/api/me")).status, 200)


class PasswordWorkTests(TestCase):
    """
    Password hashing is kept to a few cores: at most ``password_lanes``
    hashes at a time (a quarter of the cores, at least one) on the server's
    own pool, one argon2 lane each, so a login storm queues instead of
    taking the cores live audio needs.
    """

    async def test_hashing_runs_one_at_a_time_on_its_pool(self) -> None:
        import threading
        import time

        from twisted.internet.defer import gatherResults

        server = (await start_server(self)).server
        seen: list[tuple[str, int]] = []
        active = [0]
        lock = threading.Lock()

        def work() -> None:
            with lock:
                active[0] += 1
                seen.append((threading.current_thread().name, active[0]))
            time.sleep(0.02)
            with lock:
                active[0] -= 1

        await gatherResults([server.password_queue.submit(Priority.LOGIN, work) for _ in range(4)])
        self.assertEqual(len(seen), 4)
        self.assertLessEqual(max(count for _, count in seen), server.password_lanes)
        self.assertTrue(all("denoisecast-passwords" in name for name, _ in seen), seen)

    async def test_hashing_runs_at_low_priority(self) -> None:
        """
        On Linux the password thread is nicer than the reactor thread, so
        the kernel gives live audio the CPU first; the reactor thread's own
        priority is untouched.
        """
        import os
        import sys
        import threading

        from denoisecast.runtime.background import NICENESS

        if not sys.platform.startswith("linux"):
            raise SkipTest("per-thread nice values are Linux's")
        server = (await start_server(self)).server
        before = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
        seen = await server.password_queue.submit(Priority.LOGIN,
            lambda: os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
        )
        self.assertEqual(seen, min(19, before + NICENESS))
        self.assertEqual(os.getpriority(os.PRIO_PROCESS, threading.get_native_id()), before)
        again = await server.password_queue.submit(Priority.LOGIN,
            lambda: os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
        )
        self.assertEqual(again, seen)  # lowered once per thread, not once per job

    async def test_older_hashes_move_to_the_current_cost(self) -> None:
        """
        A password stored at another argon2 cost still logs in, and is then
        rehashed at the server's cost in the background; sessions stay.
        """
        from argon2 import PasswordHasher
        from twisted.internet import reactor
        from twisted.internet.task import deferLater

        from denoisecast.handlers.accounts import utcnow

        running = await start_server(self)
        server = running.server
        old = PasswordHasher(time_cost=2, memory_cost=16, parallelism=1).hash("correct horse")
        await server.store.create_user("alice", old, utcnow())
        client = running.client()
        self.assertEqual((await client.login("alice")).status, 200)
        stored = old
        for _ in range(100):
            stored = await server.store.get_password_hash((await server.store.get_user_by_name("alice"))["id"])
            if stored != old:
                break
            await deferLater(reactor, 0.1)
        self.assertFalse(server.password_hasher.check_needs_rehash(stored), stored)
        self.assertEqual((await client.get("/api/me")).status, 200)
        self.assertEqual((await running.client().login("alice")).status, 200)

    async def test_full_queue_answers_503_at_once(self) -> None:
        """
        While the hashing lanes are busy and the queue's expected wait is
        past its limit, a login is answered 503 busy with Retry-After at
        once (not after a timeout); once the lanes are free it succeeds.
        """
        import threading

        from twisted.internet.threads import deferToThread

        running = await start_server(self)
        await running.client().register("alice")
        server = running.server
        queue = server.password_queue
        release = threading.Event()
        blockers = [queue.submit(Priority.LOGIN, release.wait, 30) for _ in range(server.password_lanes)]
        queue.job_seconds = 100.0  # as if each hash now took 100 s
        try:
            reply = await running.client().login("alice")
            self.assertEqual((reply.status, reply.error_code), (503, "busy"))
            self.assertGreaterEqual(int(reply.header("retry-after")), 100)
            self.assertEqual(queue.refused, 1)
        finally:
            await deferToThread(release.set)
            for blocker in blockers:
                await blocker
        queue.job_seconds = 0.01
        self.assertEqual((await running.client().login("alice")).status, 200)

    def test_argon2_releases_the_gil(self) -> None:
        """
        While a pool thread hashes a password, the calling thread keeps
        running Python through the whole hash: argon2-cffi releases the GIL
        around the C call, so hashing on threads takes no time from the
        reactor thread's Python work (otherwise a subprocess pool would be
        needed).  Were the GIL held, this thread could run only in the few
        milliseconds around the call's start and end.
        """
        import threading
        import time

        from argon2 import PasswordHasher

        hasher = PasswordHasher(time_cost=40, memory_cost=8 * 1024, parallelism=1)
        state: dict[str, float] = {}

        def work() -> None:
            state["start"] = time.perf_counter()
            hasher.hash("pw-123456")
            state["end"] = time.perf_counter()

        thread = threading.Thread(target=work)
        thread.start()
        while "start" not in state:
            pass
        first = last = time.perf_counter()
        while "end" not in state:
            last = time.perf_counter()
        thread.join()
        hashing = state["end"] - state["start"]
        self.assertGreater(hashing, 0.05)
        # This thread ran from the hash's start to its end.
        self.assertGreater(last - first, 0.5 * hashing, (last - first, hashing))

    def test_default_hasher_uses_one_lane(self) -> None:
        from pathlib import Path

        from twisted.internet import reactor

        from denoisecast.app.config import Config
        from denoisecast.app.server import DenoiseCastServer

        server = DenoiseCastServer(Config(data_dir=Path(self.mktemp())), reactor)
        self.assertEqual(server.password_hasher.parallelism, 1)
        # OWASP's first choice for argon2id: 19 MiB, two passes.
        self.assertEqual(server.password_hasher.memory_cost, 19 * 1024)
        self.assertEqual(server.password_hasher.time_cost, 2)
        self.assertTrue(server.password_hasher.verify(server.password_hasher.hash("pw-123456"), "pw-123456"))
