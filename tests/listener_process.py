"""
A listener in a process of its own, for tests whose clients must run on
another host (a network namespace, tests/netns_support.py).

    python tests/listener_process.py BASE SESSION USER [SIGNAL [AUDIO]]

It opens ``/ws`` with the session cookie, asks to listen to USER's live
broadcast with aiortc (the SIGNAL given: ``denoised`` or ``raw``; the
server's choice when absent), prints ``candidates {"offer": [...], "answer": [...]}``
(as tests/publisher_process.py does) once the server's answer is applied,
then every half second ``heard SAMPLES RMS``: the 48 kHz mono samples
received so far and the RMS of the last half second.  Every later message
of the server's is printed as ``message {json}`` (``ended`` among them).
With AUDIO, every sample received is appended to that file (float32, 48
kHz mono) as it arrives, for tests that measure what was heard.  A refusal
prints ``refused {reply}`` and ends.
"""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any

import numpy as np

from tests.publisher_process import candidates


async def main(base: str, session: str, user: str, signal: str = "", audio: str = "") -> None:
    import av
    from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
    from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
    from autobahn.asyncio.websocket import WebSocketClientFactory, WebSocketClientProtocol

    inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()

    class Socket(WebSocketClientProtocol):
        def onMessage(self, payload: bytes, isBinary: bool) -> None:
            inbox.put_nowait(json.loads(payload))

    host, port = base.removeprefix("http://").split(":")
    factory = WebSocketClientFactory(
        base.replace("http", "ws", 1) + "/ws", origin=base, headers={"Cookie": f"dc_session={session}"}
    )
    factory.protocol = Socket
    _, socket = await asyncio.get_running_loop().create_connection(factory, host, int(port))
    await socket.is_open
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    pc.addTransceiver("audio", direction="recvonly")
    recent: list[np.ndarray] = []
    total = 0
    saved = open(audio, "ab") if audio else None

    async def record(track: MediaStreamTrack) -> None:
        nonlocal total
        resampler = av.AudioResampler(format="flt", layout="mono", rate=48000)
        try:
            while True:
                frame = await track.recv()
                for out in resampler.resample(frame):
                    samples = out.to_ndarray().reshape(-1)
                    recent.append(samples)
                    if saved is not None:
                        saved.write(samples.astype(np.float32).tobytes())
                        saved.flush()
                    total += len(samples)
        except MediaStreamError:
            pass

    pc.on("track", lambda track: asyncio.ensure_future(record(track)) if track.kind == "audio" else None)
    await pc.setLocalDescription(await pc.createOffer())
    request = {"v": 1, "type": "listen", "user": user, "sdp": pc.localDescription.sdp, "id": "l"}
    if signal:
        request["signal"] = signal
    socket.sendMessage(json.dumps(request).encode())
    while True:
        reply = await inbox.get()
        if reply.get("id") == "l":
            break
    if reply.get("type") != "answer":
        print(f"refused {reply}", flush=True)
        await pc.close()
        return
    await pc.setRemoteDescription(RTCSessionDescription(reply["sdp"], "answer"))
    print("candidates " + json.dumps({"offer": candidates(pc.localDescription.sdp), "answer": candidates(reply["sdp"])}), flush=True)

    async def tell() -> None:
        while True:
            print("message " + json.dumps(await inbox.get()), flush=True)

    telling = asyncio.ensure_future(tell())
    try:
        while True:
            await asyncio.sleep(0.5)
            last = np.concatenate(recent) if recent else np.zeros(1, dtype=np.float32)
            recent.clear()
            print(f"heard {total} {float(np.sqrt(np.mean(last**2))):.5f}", flush=True)
    finally:
        telling.cancel()
        await pc.close()
        if saved is not None:
            saved.close()


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:6]))
