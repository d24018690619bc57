"""
The live side's WebRTC peer connections: every one that is open (so that
shutdown closes them all: aiortc's decoder threads keep the process alive
otherwise), the answers to clients' offers, and closing.

A connection that fails or closes leaves the registry by itself and tells
whoever made it; offers are checked and their remote candidates filtered
before aiortc sees them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamTrack

from denoisecast.errors import DenoiseCastError, bad_request
from denoisecast.live.candidates import CandidatePolicy, filter_candidates
from denoisecast.live.mediaports import MediaPlan, PortsExhausted
from denoisecast.live.offers import check_offer
from denoisecast.live.rtc.dtls import answer_as_dtls_server
from denoisecast.live.rtc.hostcandidates import offer_host_candidates
from denoisecast.live.rtc.media import decode_on_the_loop, shorten_receive_buffer
from denoisecast.live.rtc.seam import aio
from denoisecast.live.rtc.sockets import drain_on_read
from denoisecast.runtime.logs import logger


class PeerConnections:
    log = logger()

    def __init__(self, candidate_policy: CandidatePolicy, media: MediaPlan | None = None) -> None:
        """
        C{media}: the configured media addresses and port range, or C{None}
        for aioice's own (every interface, ephemeral ports).
        """
        self._candidate_policy = candidate_policy
        self._media = media
        self._open: set[RTCPeerConnection] = set()

    def new(self, on_gone: Callable[[], None]) -> RTCPeerConnection:
        """A connection that calls C{on_gone} once it has failed or closed."""
        # Explicitly empty: aiortc would otherwise ask a public STUN server,
        # which a self-hosted server must not do unasked.
        pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        self._open.add(pc)

        @pc.on("connectionstatechange")
        def state_changed() -> None:
            if pc.connectionState in ("failed", "closed"):
                self._open.discard(pc)
                on_gone()

        return pc

    async def close(self, pc: RTCPeerConnection) -> None:
        """Close one connection; a failure to close is logged, never raised."""
        self._open.discard(pc)
        try:
            await aio(pc.close())
        except Exception:
            self.log.failure("Closing a peer connection failed")

    async def close_all(self) -> None:
        """(Shutdown.)  Close every connection still open."""
        for pc in list(self._open):
            await aio(pc.close())

    async def answer(self, pc: RTCPeerConnection, sdp: str, want: Callable[[], None] | None = None) -> str:
        """
        Apply a client's offer and return the answer; a bad offer is a 400.
        C{want} adds what the server sends (a listener's track) before the
        answer is made.
        """
        check_offer(sdp)
        sdp, dropped = filter_candidates(sdp, self._candidate_policy)
        if dropped:
            self.log.info(
                "Ignored {count} remote ICE candidates outside the allowed networks: {addresses}",
                count=len(dropped),
                addresses=", ".join(dropped),
            )
        try:
            await aio(pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="offer")))
        except Exception as error:
            raise bad_request(f"The offer is not usable SDP: {error}", "bad_sdp") from None
        if not any(t.kind == "audio" for t in pc.getTransceivers()):
            raise bad_request("The offer has no audio.", "no_audio")
        if want is not None:
            want()
        answer = await aio(pc.createAnswer())
        if self._media is not None and not offer_host_candidates(pc, self._media):
            self.log.error("Cannot put the configured media addresses and ports into aiortc; refusing the connection")
            raise DenoiseCastError(500, "media_unavailable", "The server cannot set up media.")
        try:
            await aio(pc.setLocalDescription(answer))
        except PortsExhausted as exhausted:
            self.log.warn(
                "No free media port: every UDP port in {ports} is in use on {address}; widen --rtc-ports",
                ports=str(exhausted.ports),
                address=exhausted.bind,
                log_id="live.ports_exhausted",
            )
            raise DenoiseCastError(
                503, "no_media_ports", "The server has no free media port; try again later."
            ) from None
        except OSError as error:
            if self._media is None:
                raise
            # A configured local address this machine no longer has (its interface went away).
            self.log.error(
                "Cannot bind a media socket on the configured --media-address: {error}", error=str(error)
            )
            raise DenoiseCastError(500, "media_unavailable", "The server cannot set up media.") from None
        if not drain_on_read(pc):
            self.log.warn("Cannot make the connection's sockets drain on read; asyncio reads one datagram per event")
        return pc.localDescription.sdp

    def _before_publisher_answer(self, pc: RTCPeerConnection) -> None:
        """
        Between a publisher's offer and the answer: take the DTLS server
        role (L{answer_as_dtls_server}), and decline video.  OBS and
        GStreamer offer video beside the audio; accepted, aiortc would
        decode every frame of it on a thread of its own for nothing.
        """
        if not answer_as_dtls_server(pc):
            self.log.warn("Cannot choose the DTLS server role; aiortc answers as the DTLS client")
        for transceiver in pc.getTransceivers():
            if transceiver.kind == "video":
                transceiver.direction = "inactive"

    async def receive(
        self, sdp: str, on_gone: Callable[[RTCPeerConnection], None]
    ) -> tuple[RTCPeerConnection, str, MediaStreamTrack, Any]:
        """
        A peer connection that receives the offer's audio: the answer, the
        track and the inline decoder (C{None} where aiortc's internals were
        not as expected).  Losing it calls C{on_gone} with it.
        """
        tracks: list[MediaStreamTrack] = []
        pc = self.new(lambda: on_gone(pc))
        pc.on("track", tracks.append)
        try:
            answer = await self.answer(pc, sdp, lambda: self._before_publisher_answer(pc))
            audio = [t for t in tracks if t.kind == "audio"]
            if not audio:
                raise bad_request("The offer sends no audio.", "no_audio")
            decoder = None
            for transceiver in pc.getTransceivers():
                if transceiver.kind != "audio":
                    continue
                if not shorten_receive_buffer(transceiver.receiver):
                    self.log.warn("Cannot shorten the receive buffer; aiortc's default applies")
                inline = decode_on_the_loop(transceiver.receiver)
                if inline is None:
                    self.log.warn("Cannot decode on the event loop; aiortc's decoder thread applies")
                elif transceiver.receiver.track is audio[0]:
                    decoder = inline
        except BaseException:
            await self.close(pc)
            raise
        return pc, answer, audio[0], decoder
