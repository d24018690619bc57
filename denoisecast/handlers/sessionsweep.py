"""
Ending the WebSockets (and broadcasts) of sessions that no longer exist.

A session can end outside this process: ``denoisecast-admin`` disables an
account or resets a password from another process, on the same database,
by deleting the session rows; another node may do the same.  This server
cannot be told directly, so it checks: every ``SWEEP_SECONDS`` it asks the
database which of its open sockets' sessions are still valid (one query for
all of them) and closes the others, and ends the broadcasts of accounts
that have been disabled (a broadcast published over HTTP has no socket).
Inside this process the same ending happens at once, through
L{SocketSessions.close_user}.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING

from denoisecast.handlers.accounts import EndedSessions
from denoisecast.runtime.logs import logger
from denoisecast.storage.admin import AdminStore

if TYPE_CHECKING:
    from denoisecast.live.manager import LiveManager
    from denoisecast.protocols.socket import SignalingFactory

#: How often sockets are checked against the sessions table.
SWEEP_SECONDS = 5.0


class SocketSessions:
    log = logger()

    def __init__(
        self,
        factory: "SignalingFactory",
        live: "LiveManager",
        admin_store: AdminStore,
        clock: Callable[[], datetime],
        end_sessions: Callable[[EndedSessions], None] | None = None,
    ) -> None:
        """
        @param end_sessions: ends sessions' sockets on every node (the live
            bus's route); by default on this node only.
        """
        self._end_sessions = end_sessions or factory.sessions_ended
        self._factory = factory
        self._live = live
        self._admin_store = admin_store
        self._now = clock

    def _open_of(self, user_id: int) -> int:
        return sum(1 for c in list(self._factory.connections) if c.user and c.user["id"] == user_id)

    def close_user(self, user_id: int, reason: str) -> int:
        """
        End every session of the user on every node: their sockets close
        now (close code 4001), and a handshake in flight does not open.
        Returns how many sockets were open on this node.
        """
        count = self._open_of(user_id)
        self.log.info("Ending the sockets of user {user_id}: {reason}", user_id=user_id, reason=reason)
        self._end_sessions(EndedSessions(user_id=user_id))
        return count

    async def end_broadcast(self, user_id: int, reason: str) -> bool:
        """End the user's broadcast on whichever node holds it."""
        return await self._live.end_anywhere(user_id, reason)

    async def sweep(self) -> int:
        """
        Close the sockets whose session has ended and end the broadcasts
        of disabled accounts; return how many sockets were closed.
        """
        open_now = [(c, c.session_hash) for c in list(self._factory.connections) if c.session_hash]
        closed = 0
        if open_now:
            valid = await self._admin_store.valid_sessions({h for _, h in open_now if h}, self._now())
            for connection, session_hash in open_now:
                if session_hash not in valid and connection in self._factory.connections:
                    self._factory.sessions_ended(EndedSessions(token_hash=session_hash))
                    closed += 1
        live_users = list(self._live.broadcasts)
        if live_users:
            for user_id in await self._admin_store.disabled_among(live_users):
                await self.end_broadcast(user_id, "account disabled")
        if closed:
            self.log.info("Closed {count} sockets whose session ended", count=closed)
        return closed
