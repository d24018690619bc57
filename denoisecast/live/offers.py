"""
Checking a client's SDP offer before the server answers it.

aiortc accepts offers it cannot carry through: one without a DTLS
fingerprint is answered and fails later in the background (the broadcast
looked live for seconds and left an empty recording), and one whose audio
section is repeated fails inside the answer as an unexpected error.  What
DenoiseCast needs of an offer is checked here, before any peer connection
state changes, and every shortfall is a 400 naming it.
"""

from __future__ import annotations

from aiortc.sdp import SessionDescription

from denoisecast.errors import bad_request

#: Media sections an offer may have: the browser app sends one audio
#: section; a few more (a data channel, a video a client added) are ignored.
MAX_MEDIA_SECTIONS = 4


def _bad(message: str) -> Exception:
    return bad_request(message, "bad_sdp")


def check_offer(sdp: str) -> SessionDescription:
    """
    The parsed offer, if DenoiseCast can answer it.

    @raise DenoiseCastError: 400 C{bad_sdp} (not SDP, too many media
        sections, more than one audio section, a repeated mid, no ICE
        credentials or no DTLS fingerprint) or C{no_audio}.
    """
    if not sdp.lstrip().startswith("v=0"):
        raise _bad("The offer is not SDP (it starts with v=0).")
    try:
        description = SessionDescription.parse(sdp)
    except Exception as error:  # aiortc's parser raises whatever it meets, asserts included
        raise _bad(f"The offer is not usable SDP: {type(error).__name__} {error}".strip()) from None
    media = description.media
    if len(media) > MAX_MEDIA_SECTIONS:
        raise _bad(f"The offer has {len(media)} media sections; at most {MAX_MEDIA_SECTIONS} are accepted.")
    audio = [section for section in media if section.kind == "audio"]
    if not audio:
        raise bad_request("The offer has no audio.", "no_audio")
    if len(audio) > 1:
        raise _bad(f"The offer has {len(audio)} audio sections; send exactly one audio section.")
    mids = [section.rtp.muxId for section in media if section.rtp.muxId]
    if len(mids) != len(set(mids)):
        raise _bad("The offer repeats a media section id (a=mid).")
    for section in media:
        if section.port == 0:
            continue  # rejected or stopped: nothing is negotiated for it
        if section.dtls is None or not section.dtls.fingerprints:
            raise _bad(
                f"The offer's {section.kind} section has no DTLS fingerprint (a=fingerprint) "
                "or no a=setup; media cannot be encrypted without them."
            )
        if section.ice is None or not section.ice.usernameFragment or not section.ice.password:
            raise _bad(f"The offer's {section.kind} section has no ICE credentials (a=ice-ufrag, a=ice-pwd).")
    return description
