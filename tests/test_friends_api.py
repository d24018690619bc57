"""
Friendship over HTTP: search, requests in both directions, accepting,
rejecting, cancelling and unfriending, and the errors of each.
"""

from __future__ import annotations

from twisted.trial.unittest import TestCase

from tests.support import Client, start_server


async def names(client: Client, path: str, key: str) -> list[str]:
    reply = await client.get(path)
    assert reply.status == 200, reply
    return [entry["username"] for entry in reply.body[key]]


class FriendshipTests(TestCase):
    async def setUp(self) -> None:
        self.running = await start_server(self)
        self.alice = self.running.client()
        self.bob = self.running.client()
        await self.alice.register("alice")
        await self.bob.register("bob")

    async def test_request_accept_unfriend(self) -> None:
        """
        alice asks bob; both see the pending request on their side; bob
        accepts; both list each other as friends; alice unfriends and both
        lists are empty again.
        """
        sent = await self.alice.post("/api/friends/requests", {"username": "bob"})
        self.assertEqual((sent.status, sent.body), (201, {"status": "requested"}))
        self.assertEqual(await names(self.alice, "/api/friends/requests", "outgoing"), ["bob"])
        self.assertEqual(await names(self.bob, "/api/friends/requests", "incoming"), ["alice"])
        accepted = await self.bob.post("/api/friends/requests/alice/accept")
        self.assertEqual((accepted.status, accepted.body), (200, {"status": "friends"}))
        self.assertEqual(await names(self.alice, "/api/friends", "friends"), ["bob"])
        self.assertEqual(await names(self.bob, "/api/friends", "friends"), ["alice"])
        self.assertEqual(await names(self.bob, "/api/friends/requests", "incoming"), [])
        self.assertEqual((await self.alice.delete("/api/friends/bob")).status, 204)
        self.assertEqual(await names(self.alice, "/api/friends", "friends"), [])
        self.assertEqual(await names(self.bob, "/api/friends", "friends"), [])
        again = await self.alice.delete("/api/friends/bob")
        self.assertEqual((again.status, again.error_code), (404, "not_friends"))

    async def test_crossed_requests_make_friends(self) -> None:
        """
        Sending a request to someone who already asked you makes you
        friends at once, with no request left over.
        """
        await self.alice.post("/api/friends/requests", {"username": "bob"})
        reply = await self.bob.post("/api/friends/requests", {"username": "ALICE"})
        self.assertEqual((reply.status, reply.body), (200, {"status": "friends"}))
        self.assertEqual(await names(self.alice, "/api/friends", "friends"), ["bob"])
        self.assertEqual(await names(self.alice, "/api/friends/requests", "outgoing"), [])

    async def test_duplicates_refused(self) -> None:
        """
        A second identical request is 409 request_exists; a request to a
        friend is 409 already_friends.
        """
        await self.alice.post("/api/friends/requests", {"username": "bob"})
        dup = await self.alice.post("/api/friends/requests", {"username": "bob"})
        self.assertEqual((dup.status, dup.error_code), (409, "request_exists"))
        await self.bob.post("/api/friends/requests/alice/accept")
        again = await self.alice.post("/api/friends/requests", {"username": "bob"})
        self.assertEqual((again.status, again.error_code), (409, "already_friends"))
        back = await self.bob.post("/api/friends/requests", {"username": "alice"})
        self.assertEqual((back.status, back.error_code), (409, "already_friends"))

    async def test_reject_and_cancel(self) -> None:
        """
        bob rejects alice's request; alice cancels a new one; each leaves no
        request behind, and doing it twice is a 404 no_such_request.
        """
        await self.alice.post("/api/friends/requests", {"username": "bob"})
        self.assertEqual((await self.bob.post("/api/friends/requests/alice/reject")).status, 204)
        self.assertEqual(await names(self.alice, "/api/friends/requests", "outgoing"), [])
        twice = await self.bob.post("/api/friends/requests/alice/reject")
        self.assertEqual((twice.status, twice.error_code), (404, "no_such_request"))
        await self.alice.post("/api/friends/requests", {"username": "bob"})
        self.assertEqual((await self.alice.delete("/api/friends/requests/bob")).status, 204)
        self.assertEqual(await names(self.bob, "/api/friends/requests", "incoming"), [])
        gone = await self.alice.delete("/api/friends/requests/bob")
        self.assertEqual((gone.status, gone.error_code), (404, "no_such_request"))

    async def test_only_the_receiver_accepts(self) -> None:
        """
        The sender cannot accept their own request on the receiver's behalf.
        """
        await self.alice.post("/api/friends/requests", {"username": "bob"})
        reply = await self.alice.post("/api/friends/requests/bob/accept")
        self.assertEqual((reply.status, reply.error_code), (404, "no_such_request"))
        self.assertEqual(await names(self.alice, "/api/friends", "friends"), [])

    async def test_unknown_and_self(self) -> None:
        """
        Requests to unknown users are 404 no_such_user; to yourself 400.
        """
        unknown = await self.alice.post("/api/friends/requests", {"username": "carol"})
        self.assertEqual((unknown.status, unknown.error_code), (404, "no_such_user"))
        own = await self.alice.post("/api/friends/requests", {"username": "alice"})
        self.assertEqual((own.status, own.error_code), (400, "cannot_befriend_self"))
        accept = await self.alice.post("/api/friends/requests/nobody/accept")
        self.assertEqual((accept.status, accept.error_code), (404, "no_such_user"))

    async def test_logged_out_refused(self) -> None:
        """
        Every friend route needs a session: 401 without one.
        """
        stranger = self.running.client()
        for method, path in [
            ("GET", "/api/friends"),
            ("GET", "/api/friends/requests"),
            ("GET", "/api/users?q=a"),
            ("POST", "/api/friends/requests/alice/accept"),
            ("DELETE", "/api/friends/alice"),
        ]:
            reply = await stranger.request(method, path)
            self.assertEqual((reply.status, reply.error_code), (401, "unauthenticated"), path)


class SearchTests(TestCase):
    async def test_prefix_pagination_never_self(self) -> None:
        """
        Search is a case-insensitive prefix match, paginated with a cursor,
        never lists the searcher, and shows the relationship.
        """
        running = await start_server(self)
        me = running.client()
        await me.register("anna")
        for name in ["andy", "ann", "annabel", "annie", "bert", "an.x"]:
            await running.client().register(name)
        await me.post("/api/friends/requests", {"username": "annie"})
        first = await me.get("/api/users?q=AN&limit=2")
        self.assertEqual([u["username"] for u in first.body["users"]], ["an.x", "andy"])
        self.assertEqual(first.body["next"], "andy")
        second = await me.get("/api/users?q=an&limit=2&after=andy")
        self.assertEqual([u["username"] for u in second.body["users"]], ["ann", "annabel"])
        third = await me.get(f"/api/users?q=an&limit=2&after={second.body['next']}")
        self.assertEqual([(u["username"], u["relationship"]) for u in third.body["users"]], [("annie", "outgoing")])
        self.assertIsNone(third.body["next"])
        everyone = await me.get("/api/users?limit=50")
        self.assertNotIn("anna", [u["username"] for u in everyone.body["users"]])
        self.assertEqual(len(everyone.body["users"]), 6)

    async def test_like_wildcards_are_literal(self) -> None:
        """
        '%' and '_' in the query match themselves, not anything.
        """
        running = await start_server(self)
        me = running.client()
        await me.register("zed")
        await running.client().register("a_b")
        await running.client().register("axb")
        reply = await me.get("/api/users?q=a_")
        self.assertEqual([u["username"] for u in reply.body["users"]], ["a_b"])
        reply = await me.get("/api/users?q=%25")
        self.assertEqual(reply.body["users"], [])

    async def test_bad_query_parameters(self) -> None:
        """
        Out-of-range or non-numeric limits and over-long queries are 400s.
        """
        running = await start_server(self)
        me = running.client()
        await me.register("zed")
        for query in ["limit=0", "limit=51", "limit=abc", "limit=-1", "limit=%C2%B2", "q=" + "a" * 33, "q=a&q=b"]:
            reply = await me.get("/api/users?" + query)
            self.assertEqual((reply.status, reply.error_code), (400, "invalid_query"), query)
