"""
WHIP sessions (RFC 9725): broadcasts published by OBS, ffmpeg or GStreamer
over HTTP rather than by the browser app over the WebSocket.

A WHIP session is a broadcast without a signalling connection
(C{LiveManager.publish(user, None, sdp)}, as the HTTP publish route's), so
it is a broadcast like any other: the same ingest and denoise, presence,
listeners, recording, and the owner's page sets denoise on/off and its
strength while it runs.  What this module adds is what the RFC asks of a
session resource: an id for its C{Location}, an entity tag for its ICE
session, ending on C{DELETE}, and remote candidates trickled with
C{PATCH}, filtered by the same candidate policy as an offer's.

A session ends on C{DELETE}, or when its peer connection fails or closes:
then the broadcast waits the reconnect grace for its owner to publish again
(a new WHIP POST, or the browser), as a browser's broadcast does, and ends.
Its entry here goes when the broadcast it started is gone or replaced.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass

from aiortc import RTCPeerConnection
from aiortc.sdp import SessionDescription, candidate_from_sdp

from denoisecast.errors import DenoiseCastError, bad_request
from denoisecast.live.candidates import CandidatePolicy
from denoisecast.live.manager import LiveManager
from denoisecast.live.offers import check_offer
from denoisecast.live.rtc.seam import aio
from denoisecast.runtime.logs import logger
from denoisecast.storage.store import User

#: Audio codecs the ingest decodes (aiortc's): Opus, and G.711 as the
#: browser path accepts it.
USABLE_CODECS = ("audio/opus", "audio/pcmu", "audio/pcma")
#: Candidate lines one PATCH may carry.
MAX_TRICKLED = 64


def not_acceptable(code: str, message: str) -> DenoiseCastError:
    return DenoiseCastError(406, code, message)


@dataclass(eq=False)
class WhipSession:
    id: str
    user: User
    stream_id: str
    pc: RTCPeerConnection
    #: The entity tag of the ICE session (RFC 9725 section 4.3.1); fixed,
    #: since ICE restarts are not supported.
    etag: str
    #: The offer's ICE credentials and the audio section's mid.
    ufrag: str
    pwd: str
    mid: str | None


def check_whip_offer(sdp: str) -> SessionDescription:
    """
    The parsed offer if the ingest can take it: malformed SDP is a 400
    (L{check_offer}); an offer that sends no audio, or only in codecs the
    ingest cannot decode, is a 406, since the server can make no answer
    the client would accept.
    """
    try:
        description = check_offer(sdp)
    except DenoiseCastError as error:
        if error.code == "no_audio":
            raise not_acceptable("no_audio", "The offer has no audio section; DenoiseCast takes audio only.") from None
        raise
    (audio,) = [section for section in description.media if section.kind == "audio"]
    if audio.port == 0 or audio.direction not in ("sendrecv", "sendonly"):
        raise not_acceptable("no_audio", "The offer's audio section sends nothing (it must be sendonly or sendrecv).")
    names = {codec.mimeType.lower() for codec in audio.rtp.codecs}
    if not names.intersection(USABLE_CODECS):
        offered = ", ".join(sorted(names)) or "none"
        raise not_acceptable(
            "no_usable_codec", f"The offer's audio codecs ({offered}) include no Opus; send Opus (or G.711)."
        )
    return description


class WhipSessions:
    """The WHIP sessions of this server, by id."""

    log = logger()

    def __init__(self, live: LiveManager, policy: CandidatePolicy) -> None:
        self._live = live
        self._policy = policy
        self._sessions: dict[str, WhipSession] = {}
        live.observers.append(self._prune)

    @property
    def own_url(self) -> str:
        """This node's announced base URL ("" if none): a session's Location
        names it, so DELETE and PATCH reach this node behind a balancer."""
        return self._live.own_url

    def __len__(self) -> int:
        self._prune()
        return len(self._sessions)

    def _current(self, session: WhipSession) -> bool:
        """Whether the broadcast C{session} started still runs on its connection."""
        broadcast = self._live.broadcasts.get(session.user["id"])
        return broadcast is not None and broadcast.stream_id == session.stream_id and broadcast.pc is session.pc

    def _prune(self) -> None:
        for session_id, session in list(self._sessions.items()):
            if not self._current(session):
                del self._sessions[session_id]

    async def publish(self, user: User, sdp: str) -> tuple[WhipSession, str]:
        """
        Go live with a WHIP offer: the new session and the SDP answer.
        Refusals are L{DenoiseCastError}s (400 bad SDP, 406 no usable
        audio, 409 already live).
        """
        description = check_whip_offer(sdp)
        (audio,) = [section for section in description.media if section.kind == "audio"]
        reply = await self._live.publish(user, None, sdp)
        broadcast = self._live.broadcasts[user["id"]]
        ice = audio.ice
        assert ice is not None  # check_offer made sure
        session = WhipSession(
            id=secrets.token_urlsafe(18),
            user=user,
            stream_id=broadcast.stream_id,
            pc=broadcast.pc,
            etag='"' + secrets.token_urlsafe(12) + '"',
            ufrag=ice.usernameFragment or "",
            pwd=ice.password or "",
            mid=audio.rtp.muxId or None,
        )
        self._prune()
        self._sessions[session.id] = session
        self.log.info("{user} publishes over WHIP (session {session})", user=user["username"], session=session.id)
        return session, reply["sdp"]

    def find(self, user: User, session_id: str) -> WhipSession | None:
        """C{user}'s running session C{session_id}, or None (ended, unknown, or someone else's)."""
        self._prune()
        session = self._sessions.get(session_id)
        if session is None or session.user["id"] != user["id"]:
            return None
        return session

    async def end(self, session: WhipSession) -> None:
        """End the session's broadcast (its listeners are told, its recording finishes)."""
        self._sessions.pop(session.id, None)
        if self._current(session):
            await self._live.stop(session.user, "stopped")

    async def trickle(self, session: WhipSession, fragment: str) -> int:
        """
        Apply a trickle-ICE SDP fragment (RFC 8840) to the session: its
        remote candidates, filtered by the candidate policy, and its
        end-of-candidates.  New ICE credentials would be an ICE restart,
        which is not supported (422, per RFC 9725 section 4.3.1).

        @return: how many candidates were added.
        """
        ufrag = pwd = None
        mid = session.mid
        candidates: list[str] = []
        end = False
        for raw in fragment.splitlines():
            line = raw.strip()
            if line.startswith("a=ice-ufrag:"):
                ufrag = line[len("a=ice-ufrag:"):]
            elif line.startswith("a=ice-pwd:"):
                pwd = line[len("a=ice-pwd:"):]
            elif line.startswith("a=mid:"):
                mid = line[len("a=mid:"):]
            elif line.startswith("a=candidate:"):
                candidates.append(line[len("a=candidate:"):])
            elif line == "a=end-of-candidates":
                end = True
        if (ufrag is not None and ufrag != session.ufrag) or (pwd is not None and pwd != session.pwd):
            raise DenoiseCastError(
                422, "ice_restart_unsupported", "ICE restarts are not supported; end the session and publish again."
            )
        if len(candidates) > MAX_TRICKLED:
            raise bad_request(f"At most {MAX_TRICKLED} candidates per PATCH.", "bad_sdpfrag")
        parsed = []
        for text in candidates:
            try:
                candidate = candidate_from_sdp(text)
            except (AssertionError, ValueError, IndexError):
                raise bad_request(f"Not an ICE candidate: {text[:80]!r}.", "bad_sdpfrag") from None
            if not self._policy.permits(candidate.ip):
                self.log.info("Ignored a trickled candidate outside the allowed networks: {address}", address=candidate.ip)
                continue
            candidate.sdpMid = mid
            if mid is None:
                candidate.sdpMLineIndex = 0  # the offer's only audio section
            parsed.append(candidate)
        for candidate in parsed:
            await aio(session.pc.addIceCandidate(candidate))
        if end:
            await aio(session.pc.addIceCandidate(None))
        return len(parsed)
