"""
A second, independent WHEP player: GStreamer's ``webrtcbin`` driven from
Python, receiving Opus and writing what it decodes as raw 48 kHz mono
float32.  It shares no code with DenoiseCast or with aiortc (libnice,
GStreamer's DTLS, RTP and Opus decoder), so a WHEP endpoint that only
works with aiortc would fail it.

Run with Debian's python3, which has PyGObject (python3-gi) and the
GStreamer typelibs (scripts/setup.sh installs them)::

    /usr/bin/python3 tests/gst_whep_client.py ENDPOINT TOKEN OUT.f32 SECONDS

It prints one JSON object per line: ``answered`` (status, Location, ETag),
``connected``, ``audio`` (the decoder's pad is linked), ``deleted``
(status), or ``error``; it listens for SECONDS after connecting, then
DELETEs the session, and exits 0 when that answered 200.  ICE uses
127.0.0.1 only, so the media stays on loopback.
"""

from __future__ import annotations

import json
import sys
import urllib.error
import urllib.request
from urllib.parse import urljoin

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstWebRTC", "1.0")
gi.require_version("GstSdp", "1.0")
gi.require_version("Nice", "0.1")
from gi.repository import GLib, Gst, GstSdp, GstWebRTC, Nice  # noqa: E402

OPUS = "application/x-rtp,media=audio,encoding-name=OPUS,payload=111,clock-rate=48000"
DECODE = "rtpopusdepay ! opusdec ! audioconvert ! audioresample ! audio/x-raw,format=F32LE,rate=48000,channels=1 ! filesink location={out}"
#: Seconds the whole run may take beyond the listening time.
SLACK = 60


def say(event: str, **fields: object) -> None:
    print(json.dumps({"event": event, **fields}), flush=True)


def request(method: str, url: str, token: str, body: bytes | None = None, content_type: str | None = None):
    headers = {"Authorization": f"Bearer {token}"}
    if content_type:
        headers["Content-Type"] = content_type
    req = urllib.request.Request(url, data=body, method=method, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=30) as response:
            return response.status, response.headers, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.headers, error.read()
    except OSError as error:
        return 0, {}, str(error).encode()


class Player:
    def __init__(self, endpoint: str, token: str, out: str, seconds: float) -> None:
        self.endpoint, self.token, self.out, self.seconds = endpoint, token, out, seconds
        self.loop = GLib.MainLoop()
        self.pipeline = Gst.Pipeline.new("whep")
        self.webrtc = Gst.ElementFactory.make("webrtcbin", "webrtc")
        self.webrtc.set_property("bundle-policy", GstWebRTC.WebRTCBundlePolicy.MAX_BUNDLE)
        self.pipeline.add(self.webrtc)
        # Kept for the whole run (see tests/gst_whip_client.py: GStreamer 1.22 and PyGObject).
        self.ice = self.webrtc.get_property("ice-agent")
        self.agent = self.ice.get_property("agent")
        loopback = Nice.Address.new()
        loopback.set_from_string("127.0.0.1")
        self.agent.add_local_address(loopback)
        self.location: str | None = None
        self.failed: str | None = None
        self.webrtc.connect("on-negotiation-needed", self.negotiate)
        self.webrtc.connect("notify::ice-gathering-state", self.gathered)
        self.webrtc.connect("notify::connection-state", self.connection)
        self.webrtc.connect("pad-added", self.pad_added)
        self.webrtc.emit(
            "add-transceiver", GstWebRTC.WebRTCRTPTransceiverDirection.RECVONLY, Gst.Caps.from_string(OPUS)
        )
        bus = self.pipeline.get_bus()
        bus.add_signal_watch()
        bus.connect("message", self.message)
        GLib.timeout_add_seconds(int(seconds + SLACK), self.fail, "deadline passed")

    def fail(self, why: str) -> bool:
        self.failed = why
        say("error", message=why)
        self.loop.quit()
        return False

    def negotiate(self, element: Gst.Element) -> None:
        promise = Gst.Promise.new_with_change_func(self.offered, element, None)
        element.emit("create-offer", None, promise)

    def offered(self, promise: Gst.Promise, element: Gst.Element, _: object) -> None:
        reply = promise.get_reply()
        offer = reply.get_value("offer") if reply is not None and reply.has_field("offer") else None
        if offer is None:
            GLib.idle_add(self.fail, f"webrtcbin made no offer: {reply.to_string() if reply else None}")
            return
        element.emit("set-local-description", offer, Gst.Promise.new())

    def gathered(self, element: Gst.Element, _: object) -> None:
        if element.get_property("ice-gathering-state") == GstWebRTC.WebRTCICEGatheringState.COMPLETE:
            GLib.idle_add(self.post)

    def post(self) -> bool:
        if self.location is not None:
            return False
        sdp = self.webrtc.get_property("local-description").sdp.as_text()
        status, headers, body = request("POST", self.endpoint, self.token, sdp.encode(), "application/sdp")
        if not status:
            return self.fail(f"POST failed: {body.decode()}")
        kind = (headers.get("Content-Type") or "").split(";")[0]
        location, etag = headers.get("Location"), headers.get("ETag")
        say("answered", status=status, content_type=kind, location=location, etag=etag)
        if status != 201 or kind != "application/sdp" or not location or not etag:
            return self.fail(f"POST answered {status} {kind} {body[:200]!r}")
        if "a=sendonly" not in body.decode():
            return self.fail("the answer does not send audio")
        self.location = urljoin(self.endpoint, location)
        ok, message = GstSdp.SDPMessage.new_from_text(body.decode())
        if ok != GstSdp.SDPResult.OK:
            return self.fail("the answer is not SDP")
        answer = GstWebRTC.WebRTCSessionDescription.new(GstWebRTC.WebRTCSDPType.ANSWER, message)
        self.webrtc.emit("set-remote-description", answer, Gst.Promise.new())
        return False

    def connection(self, element: Gst.Element, _: object) -> None:
        state = element.get_property("connection-state")
        if state == GstWebRTC.WebRTCPeerConnectionState.CONNECTED:
            say("connected")
            GLib.timeout_add(int(self.seconds * 1000), self.delete)
        elif state == GstWebRTC.WebRTCPeerConnectionState.FAILED:
            GLib.idle_add(self.fail, "the peer connection failed")

    def pad_added(self, element: Gst.Element, pad: Gst.Pad) -> None:
        if pad.get_direction() != Gst.PadDirection.SRC:
            return
        decode = Gst.parse_bin_from_description(DECODE.format(out=self.out), True)
        self.pipeline.add(decode)
        decode.sync_state_with_parent()
        pad.link(decode.get_static_pad("sink"))
        say("audio")

    def message(self, bus: Gst.Bus, message: Gst.Message) -> None:
        if message.type == Gst.MessageType.ERROR:
            error, debug = message.parse_error()
            GLib.idle_add(self.fail, f"{error.message} {debug}")

    def delete(self) -> bool:
        if self.location is None:
            return self.fail("no session to end")
        status, _, body = request("DELETE", self.location, self.token)
        say("deleted", status=status)
        if status != 200:
            return self.fail(f"DELETE answered {status} {body[:200]!r}")
        self.loop.quit()
        return False

    def run(self) -> int:
        self.pipeline.set_state(Gst.State.PLAYING)
        try:
            self.loop.run()
        finally:
            self.pipeline.set_state(Gst.State.NULL)
        return 1 if self.failed else 0


def main() -> int:
    Gst.init(None)
    missing = [name for name in ("webrtcbin", "nicesrc", "opusdec", "rtpopusdepay")
               if Gst.ElementFactory.find(name) is None]
    if missing:
        say("error", message=f"missing GStreamer elements: {', '.join(missing)}")
        return 2
    if len(sys.argv) == 2 and sys.argv[1] == "--check":
        say("ready")
        return 0
    endpoint, token, out, seconds = sys.argv[1:5]
    return Player(endpoint, token, out, float(seconds)).run()


if __name__ == "__main__":
    sys.exit(main())
