"""
The server's DTLS role: answer an offer that lets either side lead
(C{a=setup:actpass}) as the DTLS server (C{a=setup:passive}).

aiortc answers such offers as the DTLS client, and as a client it offers
only ECDSA cipher suites (its certificate is ECDSA).  A peer whose own
certificate is RSA, GStreamer 1.22's ``webrtcbin`` (and so GStreamer's WHIP
clients) among them, then fails the handshake with "no shared cipher".  As
the server, aiortc presents its ECDSA certificate and the peer's client
hello, which lists ECDSA suites as well as RSA ones, finds a match.
Browsers and libdatachannel (OBS) take either role, as RFC 8842 asks of
every offerer that says actpass.
"""

from __future__ import annotations

from aiortc import RTCPeerConnection

from denoisecast.runtime.logs import logger

log = logger()


def answer_as_dtls_server(pc: RTCPeerConnection) -> bool:
    """
    After the remote offer is applied and before the answer is made: take
    the DTLS server role on every transport the offer left to the server
    (role "auto"); an offer that chose a role keeps it.  Returns whether
    aiortc's transports were as expected (else nothing changes).
    """
    expected = True
    for transceiver in pc.getTransceivers():
        transport = getattr(transceiver.receiver, "transport", None)
        role = getattr(transport, "_role", None)
        setter = getattr(transport, "_set_role", None)
        if role is None or setter is None:
            expected = False
            continue
        if role == "auto":
            setter("server")
    return expected
