"""
The OpenAPI document tells the truth: it is a valid OpenAPI 3.1 document,
it lists exactly the routes the server has, and real responses of every
route, success and error, match the schema documented for their status.
"""

from __future__ import annotations

from typing import Any

from jsonschema import Draft202012Validator
from openapi_spec_validator import validate
from twisted.trial.unittest import TestCase

from denoisecast.web.openapi import DOCUMENT
from denoisecast.web.routes import listen
from tests.support import Reply, start_server
from tests.test_recordings import record


def documented_routes() -> set[tuple[str, str]]:
    return {
        (method.upper(), path)
        for path, operations in DOCUMENT["paths"].items()
        for method in operations
    }


class DocumentTests(TestCase):
    def test_valid_openapi(self) -> None:
        """
        The document validates as OpenAPI 3.1.
        """
        validate(DOCUMENT)

    async def test_routes_match_document(self) -> None:
        """
        Every route the server dispatches is documented, and every
        documented operation is a route.
        """
        running = await start_server(self)
        served = {(route.method, route.template) for route in running.server.routes}
        # The Ogg stream is a resource of its own, beside the API's route table.
        served |= set(listen.ROUTES)
        self.assertEqual(served, documented_routes())

    async def test_served(self) -> None:
        """
        GET /api/openapi.json serves the document without logging in.
        """
        running = await start_server(self)
        reply = await running.client().get("/api/openapi.json")
        self.assertEqual(reply.status, 200)
        self.assertEqual(reply.body["paths"].keys(), DOCUMENT["paths"].keys())


class ResponseConformanceTests(TestCase):
    """
    Drive every route through success and error cases and check each reply.
    """

    def check(self, method: str, template: str, reply: Reply) -> None:
        operation = DOCUMENT["paths"][template][method.lower()]
        documented = operation["responses"].get(str(reply.status))
        self.assertIsNotNone(
            documented, f"{method} {template} answered {reply.status}, which is undocumented"
        )
        assert documented is not None
        self.seen.add((method, template))
        content = documented.get("content")
        if content is None:
            self.assertIn(reply.body, (b"", None), f"{method} {template} has an undocumented body")
            return
        if "application/json" not in content:
            # WHIP's SDP: the body is text of the documented type.
            kind = (reply.header("content-type") or "").split(";")[0]
            self.assertIn(kind, content, f"{method} {template} {reply.status}")
            self.assertIsInstance(reply.body, bytes)
            return
        schema: dict[str, Any] = {**content["application/json"]["schema"], "components": DOCUMENT["components"]}
        errors = sorted(Draft202012Validator(schema).iter_errors(reply.body), key=str)
        self.assertEqual(errors, [], f"{method} {template} {reply.status}")

    async def call(
        self, client: Any, method: str, template: str, path: str | None = None, body: Any = None, **kw: Any
    ) -> Reply:
        reply = await client.request(method, path or template, body, **kw)
        self.check(method, template, reply)
        return reply

    async def admin_routes(self, running: Any, admin: Any, other: Any, anon: Any) -> None:
        """Success and error replies of the admin routes (C{admin} is made one)."""
        account = await running.server.admin_store.get_account("alice")
        await running.server.admin_store.set_admin(account["id"], True)
        await self.call(other, "GET", "/api/admin/users")
        await self.call(anon, "GET", "/api/admin/users")
        await self.call(admin, "GET", "/api/admin/users")
        new = {"username": "carol", "password": "carol's passphrase"}
        await self.call(admin, "POST", "/api/admin/users", body={**new, "admin": False})
        await self.call(admin, "POST", "/api/admin/users", body=new)
        await self.call(admin, "POST", "/api/admin/users", body={**new, "username": "c"})
        await self.call(admin, "POST", "/api/admin/users/{username}/password", "/api/admin/users/carol/password",
                        body={"password": "another passphrase"})
        await self.call(admin, "POST", "/api/admin/users/{username}/password", "/api/admin/users/nobody/password",
                        body={"password": "another passphrase"})
        await self.call(admin, "POST", "/api/admin/users/{username}/admin", "/api/admin/users/carol/admin", body={"admin": True})
        await self.call(admin, "POST", "/api/admin/users/{username}/admin", "/api/admin/users/nobody/admin", body={"admin": True})
        await self.call(admin, "POST", "/api/admin/users/{username}/disabled", "/api/admin/users/carol/disabled",
                        body={"disabled": True})
        await self.call(other, "POST", "/api/admin/users/{username}/disabled", "/api/admin/users/carol/disabled",
                        body={"disabled": False})
        await self.call(admin, "GET", "/api/admin/users/{username}/recordings", "/api/admin/users/alice/recordings")
        await self.call(admin, "GET", "/api/admin/users/{username}/recordings", "/api/admin/users/nobody/recordings")
        await self.call(admin, "DELETE", "/api/admin/recordings/{id}", "/api/admin/recordings/nosuchid")
        await self.call(admin, "GET", "/api/admin/broadcasts")
        await self.call(admin, "DELETE", "/api/admin/broadcasts/{username}", "/api/admin/broadcasts/bob")
        await self.call(admin, "POST", "/api/admin/demo")
        await self.call(other, "POST", "/api/admin/demo")

    async def token_routes(self, anon: Any) -> None:
        """WHEP and the Ogg stream: their refusals and preflights (success is SDP or audio, tests/test_listen_twistd.py)."""
        sdp = {"Content-Type": "application/sdp"}
        for method, template, path, headers in (
            ("GET", "/listen/{username}.ogg", "/listen/alice.ogg", {}),
            ("GET", "/listen/{username}.ogg", "/listen/alice.ogg?signal=loud", {}),
            ("POST", "/whep/{username}", "/whep/alice", sdp),
            ("POST", "/whep/{username}", "/whep/alice", {"Content-Type": "text/plain"}),
            ("OPTIONS", "/whep/{username}", "/whep/alice", {}),
            ("DELETE", "/whep/{username}/{session}", "/whep/alice/nosuchsession", {}),
            ("OPTIONS", "/whep/{username}/{session}", "/whep/alice/nosuchsession", {}),
        ):
            reply = await anon.request(method, path, raw=b"v=0\r\n" if method == "POST" else None, headers=headers, csrf=False)
            self.check(method, template, reply)

    async def whip_routes(self, running: Any, alice: Any, anon: Any) -> None:
        """WHIP's routes: SDP in and out, the JSON error shape for refusals."""
        from aiortc import RTCPeerConnection

        from denoisecast.live.rtc.seam import aio

        token = (await alice.post("/api/tokens", {"name": "OBS", "scope": "publish"})).body["secret"]
        sdp = {"Content-Type": "application/sdp", "Authorization": f"Bearer {token}"}
        pc = RTCPeerConnection()
        self.addCleanup(lambda: aio(pc.close()))
        pc.addTransceiver("audio", direction="sendonly")
        await aio(pc.setLocalDescription(await aio(pc.createOffer())))
        offer = pc.localDescription.sdp.encode()
        await self.call(anon, "OPTIONS", "/whip/{username}", "/whip/alice")
        await self.call(anon, "POST", "/whip/{username}", "/whip/alice", raw=offer, headers={"Content-Type": "application/sdp"})
        await self.call(anon, "POST", "/whip/{username}", "/whip/alice", raw=b"v=0 nonsense", headers=sdp)
        made = await self.call(anon, "POST", "/whip/{username}", "/whip/alice", raw=offer, headers=sdp)
        self.assertEqual(made.status, 201)
        session = made.header("location")
        await self.call(anon, "OPTIONS", "/whip/{username}/{session}", session)
        fragment = {**sdp, "Content-Type": "application/trickle-ice-sdpfrag"}
        await self.call(anon, "PATCH", "/whip/{username}/{session}", session, raw=b"a=end-of-candidates\r\n", headers=fragment)
        await self.call(anon, "PATCH", "/whip/{username}/{session}", session, raw=b"a=ice-ufrag:new\r\n", headers=fragment)
        await self.call(anon, "DELETE", "/whip/{username}/{session}", session, headers=sdp)
        await self.call(anon, "DELETE", "/whip/{username}/{session}", session, headers=sdp)

    async def test_every_route(self) -> None:
        """
        Success and typical error replies of every route match the document.
        """
        self.seen: set[tuple[str, str]] = set()
        running = await start_server(self)
        alice, bob, anon = running.client(), running.client(), running.client()
        creds = {"username": "alice", "password": "correct horse"}
        await self.call(anon, "GET", "/api/openapi.json")
        await self.call(anon, "GET", "/api/health")
        await self.call(anon, "GET", "/api/csrf")
        await self.call(anon, "GET", "/api/me")
        await self.call(alice, "POST", "/api/auth/register", body=creds)
        await self.call(bob, "POST", "/api/auth/register", body={**creds, "username": "bob"})
        await self.call(anon, "POST", "/api/auth/register", body=creds)
        await self.call(anon, "POST", "/api/auth/register", body={"username": 1})
        await self.call(anon, "POST", "/api/auth/login", body={**creds, "password": "wrong pass"})
        await self.call(alice, "POST", "/api/auth/login", body=creds)
        await self.call(alice, "GET", "/api/me")
        await self.call(alice, "GET", "/api/users", "/api/users?q=b")
        await self.call(alice, "POST", "/api/friends/requests", body={"username": "bob"})
        await self.call(alice, "POST", "/api/friends/requests", body={"username": "bob"})
        await self.call(alice, "POST", "/api/friends/requests", body={"username": "nobody"})
        await self.call(bob, "GET", "/api/friends/requests")
        await self.call(bob, "POST", "/api/friends/requests/{username}/reject", "/api/friends/requests/alice/reject")
        await self.call(bob, "POST", "/api/friends/requests/{username}/reject", "/api/friends/requests/alice/reject")
        await self.call(alice, "POST", "/api/friends/requests", body={"username": "bob"})
        await self.call(alice, "DELETE", "/api/friends/requests/{username}", "/api/friends/requests/bob")
        await self.call(alice, "DELETE", "/api/friends/requests/{username}", "/api/friends/requests/bob")
        await self.call(bob, "POST", "/api/friends/requests", body={"username": "alice"})
        await self.call(alice, "POST", "/api/friends/requests/{username}/accept", "/api/friends/requests/bob/accept")
        await self.call(alice, "POST", "/api/friends/requests/{username}/accept", "/api/friends/requests/bob/accept")
        await self.call(alice, "GET", "/api/friends")
        await self.call(alice, "GET", "/api/streams/{username}", "/api/streams/bob")
        await self.call(alice, "GET", "/api/streams/{username}", "/api/streams/nobody")
        await self.call(alice, "DELETE", "/api/streams/{username}", "/api/streams/alice")
        await self.call(alice, "POST", "/api/streams/{username}", "/api/streams/bob", body={"sdp": "v=0"})
        await self.call(alice, "POST", "/api/streams/{username}", "/api/streams/alice", body={"sdp": "garbage"})
        await self.call(alice, "POST", "/api/streams/{username}", "/api/streams/alice", body={"offer": "v=0"})
        await self.call(alice, "POST", "/api/streams/{username}/listen", "/api/streams/bob/listen", body={"sdp": "v=0"})
        await self.call(
            alice, "POST", "/api/streams/{username}/listen", "/api/streams/bob/listen", body={"sdp": "v=0", "signal": "x"}
        )
        await self.call(alice, "DELETE", "/api/streams/{username}/listen", "/api/streams/bob/listen")
        await self.call(alice, "DELETE", "/api/streams/{username}", "/api/streams/bob")
        await self.call(alice, "DELETE", "/api/friends/{username}", "/api/friends/bob")
        await self.call(alice, "DELETE", "/api/friends/{username}", "/api/friends/bob")
        made = await record(running, "alice", 1.0)
        rid = made.public_id
        await self.call(alice, "GET", "/api/recordings")
        await self.call(bob, "GET", "/api/recordings")
        await self.call(alice, "GET", "/api/recordings", "/api/recordings?cursor=%25%25")
        await self.call(alice, "GET", "/api/recordings/{id}", f"/api/recordings/{rid}")
        await self.call(bob, "GET", "/api/recordings/{id}", f"/api/recordings/{rid}")
        await self.call(alice, "GET", "/api/recordings/{id}/waveform", f"/api/recordings/{rid}/waveform")
        await self.call(bob, "GET", "/api/recordings/{id}/waveform", f"/api/recordings/{rid}/waveform")
        audio = await alice.request("GET", f"/api/recordings/{rid}/audio", headers={"Range": "bytes=0-3"})
        self.assertEqual((audio.status, audio.body), (206, b"OggS"))
        self.seen.add(("GET", "/api/recordings/{id}/audio"))
        self.assertIn("206", DOCUMENT["paths"]["/api/recordings/{id}/audio"]["get"]["responses"])
        await self.call(alice, "GET", "/api/recordings/{id}/audio", f"/api/recordings/{rid}/audio?track=x")
        await self.call(alice, "DELETE", "/api/recordings/{id}", f"/api/recordings/{rid}")
        await self.call(alice, "DELETE", "/api/recordings/{id}", f"/api/recordings/{rid}")
        await self.admin_routes(running, alice, bob, anon)
        await self.call(alice, "GET", "/api/tokens")
        await self.call(anon, "GET", "/api/tokens")
        made = await self.call(alice, "POST", "/api/tokens", body={"name": "OBS", "scope": "publish"})
        await self.call(alice, "POST", "/api/tokens", body={"name": "OBS", "scope": "everything"})
        await self.call(alice, "DELETE", "/api/tokens/{id}", f"/api/tokens/{made.body['token']['id']}")
        await self.call(alice, "DELETE", "/api/tokens/{id}", f"/api/tokens/{made.body['token']['id']}")
        await self.whip_routes(running, alice, anon)
        await self.token_routes(anon)
        await self.call(alice, "POST", "/api/auth/password", body={"current_password": "correct horse", "new_password": "battery staple"})
        await self.call(alice, "POST", "/api/auth/logout")
        await self.call(alice, "POST", "/api/auth/logout")
        self.assertEqual(self.seen, documented_routes())


class LimitTests(TestCase):
    def test_limits_are_the_codes(self) -> None:
        """
        The document states the limits the code enforces: each schema
        below accepts exactly what the server's own check accepts.
        """
        from denoisecast.handlers.accounts import USERNAME_PATTERN
        from denoisecast.handlers.passwords import PASSWORD_MAX, PASSWORD_MIN
        from denoisecast.web.routes.auth import credentials as credentials_schema

        credentials = Draft202012Validator(credentials_schema())
        for name in ("ab", "abc", "a" * 32, "a" * 33, "Alice", "al ice", "al.i-c_e9"):
            document_says = credentials.is_valid({"username": name, "password": "x" * PASSWORD_MIN})
            self.assertEqual(document_says, bool(USERNAME_PATTERN.match(name)), name)
        for length in (PASSWORD_MIN - 1, PASSWORD_MIN, PASSWORD_MAX, PASSWORD_MAX + 1):
            document_says = credentials.is_valid({"username": "alice", "password": "x" * length})
            self.assertEqual(document_says, PASSWORD_MIN <= length <= PASSWORD_MAX, length)
