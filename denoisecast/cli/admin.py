"""
``denoisecast-admin``: administration from the command line, on the
configured database, also while the server runs.

It reads the same ``--database-url`` / ``--data-dir`` options and
``DENOISECAST_*`` variables as the server and works on the database
directly (the same code as the admin API: L{denoisecast.handlers.admin}).  A
running server notices what it did to sessions within its session sweep
(``denoisecast.handlers.sessionsweep``, a few seconds): the sockets of a disabled
account or of a reset password close then.  Live broadcasts exist only in
the running server, so ``broadcasts`` and ``end-broadcast`` ask it over its
admin API (``--server``, by default the ``--listen`` address), with a
session of five minutes opened in the database for an admin account
(``--as``, by default the first admin) and deleted afterwards.

Each action writes its audit event to standard error; results go to
standard output, one line per item.
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import secrets
import sys
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from twisted.logger import (
    FilteringLogObserver,
    ILogFilterPredicate,
    LogEvent,
    LogLevel,
    PredicateResult,
    globalLogBeginner,
    textFileLogObserver,
)
from twisted.web.http_headers import Headers
from zope.interface import implementer

from denoisecast.app.config import Config, ConfigError

#: How long the session the command opens to ask a running server lives.
CLI_SESSION_LIFETIME = timedelta(minutes=5)


class CommandError(Exception):
    """A problem the command reports in one line, exiting 1."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="denoisecast-admin",
        description="Administer a DenoiseCast server's accounts, recordings and broadcasts.",
    )
    parser.add_argument("--database-url", help="as the server's option (default: DENOISECAST_DATABASE_URL, "
                        "or the SQLite file in the data directory)")
    parser.add_argument("--data-dir", help="as the server's option (default: DENOISECAST_DATA_DIR or ./denoisecast-data)")
    parser.add_argument("--server", help="the running server's URL for broadcasts and end-broadcast "
                        "(default: from --listen / DENOISECAST_LISTEN)")
    parser.add_argument("--listen", help="the server's listen endpoint, to find it (default as the server's)")
    parser.add_argument("--as", dest="actor", help="the admin account broadcasts and end-broadcast act as "
                        "(default: the first admin)")
    parser.add_argument("--password-stdin", action="store_true",
                        help="read the new password from the first line of standard input instead of a prompt")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    create = commands.add_parser("create-user", help="create an account")
    create.add_argument("username")
    create.add_argument("--admin", action="store_true", help="make it an admin")
    for name, text in [
        ("reset-password", "set a new password (ends every session of the account)"),
        ("make-admin", "give an account the admin role"),
        ("unmake-admin", "take the admin role away"),
        ("disable", "disable an account: its sessions, sockets and broadcast end; it cannot log in"),
        ("enable", "enable a disabled account again"),
        ("recordings", "list an account's recordings"),
        ("end-broadcast", "end an account's live broadcast (asks the running server)"),
    ]:
        commands.add_parser(name, help=text).add_argument("username")
    commands.add_parser("users", help="list accounts with their role, state and storage use")
    commands.add_parser("delete-recording", help="delete a recording (row and files)").add_argument("id")
    commands.add_parser("broadcasts", help="list live broadcasts (asks the running server)")
    commands.add_parser("demo", help="create demo users (alice, bob, carol, dave) with friendships")
    return parser


def read_password(args: argparse.Namespace) -> str:
    if args.password_stdin:
        line = sys.stdin.readline()
        if not line:
            raise CommandError("No password on standard input.")
        return line.rstrip("\r\n")
    if not sys.stdin.isatty():
        raise CommandError("Give the password with --password-stdin or run in a terminal.")
    first = getpass.getpass("New password: ")
    if getpass.getpass("Again: ") != first:
        raise CommandError("The two passwords differ.")
    return first


def server_url(listen: str) -> str:
    """
    The URL of a server listening on C{listen} (an endpoint string), seen
    from this machine.
    """
    parts = listen.split(":")
    kind = parts[0]
    if kind not in ("tcp", "ssl") or len(parts) < 2 or not parts[1].isdigit():
        raise CommandError(f"Cannot tell the server's URL from --listen {listen!r}; give --server.")
    options = dict(p.split("=", 1) for p in parts[2:] if "=" in p)
    host = options.get("interface", "127.0.0.1")
    if host in ("0.0.0.0", "::", ""):
        host = "127.0.0.1"
    if ":" in host:
        host = f"[{host}]"
    return f"{'https' if kind == 'ssl' else 'http'}://{host}:{parts[1]}"


def _show(item: Any) -> str:
    return json.dumps(item, default=str, sort_keys=True)


@implementer(ILogFilterPredicate)
class _AuditAndWarnings:
    """Audit events, and warnings or worse from anywhere; nothing else."""

    def __call__(self, event: LogEvent) -> PredicateResult:
        if event.get("log_namespace") == "denoisecast.audit":
            return PredicateResult.yes
        level = event.get("log_level", LogLevel.info)
        return PredicateResult.maybe if level >= LogLevel.warn else PredicateResult.no


def audit_to_stderr() -> None:
    observer = FilteringLogObserver(textFileLogObserver(sys.stderr), [_AuditAndWarnings()])
    globalLogBeginner.beginLoggingTo([observer], redirectStandardIO=False)


async def run(reactor: Any, args: argparse.Namespace, config: Config) -> list[Any]:
    from denoisecast.app.server import DenoiseCastServer
    from denoisecast.app.service import DatabaseService
    from denoisecast.handlers.accounts import hash_token, utcnow
    from denoisecast.handlers.admin import Administration

    server = DenoiseCastServer(config, reactor)
    database = DatabaseService(server.database)
    database.startService()
    server.password_pool.start()
    try:
        await database.ready
        admin = Administration(
            server.store, server.admin_store, server.accounts, config.data_dir, utcnow
        )
        actor = "cli:" + getpass.getuser()
        command = args.command
        if command == "create-user":
            return [await admin.create_user(actor, args.username, read_password(args), args.admin)]
        if command == "reset-password":
            await admin.reset_password(actor, args.username, read_password(args))
            return []
        if command in ("make-admin", "unmake-admin"):
            return [await admin.set_admin(actor, args.username, command == "make-admin")]
        if command in ("disable", "enable"):
            return [await admin.set_disabled(actor, args.username, command == "disable")]
        if command == "users":
            return await admin.accounts()
        if command == "recordings":
            return await admin.recordings(args.username)
        if command == "delete-recording":
            row = await admin.delete_recording(actor, args.id)
            return [{"deleted": row["public_id"], "owner": row["owner"]}]
        if command == "demo":
            created = await admin.demo(actor)
            from denoisecast.handlers.admin import DEMO_PASSWORD

            return [{"created": name, "password": DEMO_PASSWORD} for name in created]
        # broadcasts, end-broadcast: ask the running server as an admin.
        accounts = [a for a in await admin.accounts() if a["is_admin"] and not a["disabled"]]
        if args.actor:
            accounts = [a for a in accounts if a["username"] == args.actor.lower()]
        if not accounts:
            raise CommandError("No (such) admin account to act as; create one with create-user --admin.")
        acting = accounts[0]
        token = secrets.token_urlsafe(32)
        now = utcnow()
        await server.store.create_session(acting["id"], hash_token(token), now, now + CLI_SESSION_LIFETIME)
        try:
            base = args.server or server_url(args.listen or config.listen)
            if command == "broadcasts":
                reply = await _call(reactor, base, token, "GET", "/api/admin/broadcasts")
                return list(reply["broadcasts"])
            await _call(reactor, base, token, "DELETE", f"/api/admin/broadcasts/{args.username}")
            return [{"ended": args.username}]
        finally:
            await server.store.delete_session(hash_token(token))
    finally:
        server.password_pool.stop()
        database.stopService()


async def _call(reactor: Any, base: str, token: str, method: str, path: str) -> Any:
    from twisted.web.client import Agent, readBody

    csrf = secrets.token_urlsafe(24)
    headers = Headers(
        {"X-CSRF-Token": [csrf], "Cookie": [f"dc_session={token}; dc_csrf={csrf}"]}
    )
    try:
        response = await Agent(reactor, connectTimeout=30).request(
            method.encode(), (base + path).encode(), headers
        )
        body = await readBody(response)
    except Exception as error:
        raise CommandError(f"Cannot reach the server at {base}: {error}") from None
    if response.code >= 400:
        try:
            message = json.loads(body)["error"]["message"]
        except (ValueError, KeyError, TypeError):
            message = body.decode("utf-8", "replace")[:200]
        raise CommandError(f"The server answered {response.code}: {message}")
    return json.loads(body) if body else None


def main(argv: Sequence[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    try:
        config = Config.resolve(
            {"database-url": args.database_url, "data-dir": args.data_dir, "listen": args.listen},
            os.environ,
        )
    except ConfigError as error:
        raise SystemExit(f"denoisecast-admin: {error}") from None
    audit_to_stderr()
    from twisted.internet import reactor
    from twisted.internet.defer import ensureDeferred

    from denoisecast.errors import DenoiseCastError

    outcome: dict[str, Any] = {}

    async def go() -> None:
        try:
            outcome["items"] = await run(reactor, args, config)
        except (CommandError, DenoiseCastError) as error:
            outcome["error"] = getattr(error, "message", None) or str(error)
        except Exception as error:  # a database that cannot be reached, say
            outcome["error"] = f"{type(error).__name__}: {error}"

    done = ensureDeferred(go())
    running: Any = reactor  # the global reactor's type names no interface

    def stop(_: object) -> None:
        running.stop()

    done.addBoth(stop)
    running.run()
    if "error" in outcome:
        print(f"denoisecast-admin: {outcome['error']}", file=sys.stderr)
        raise SystemExit(1)
    for item in outcome.get("items", []):
        print(_show(item))


if __name__ == "__main__":
    main()
