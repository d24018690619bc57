"""
A publisher in a process of its own, for tests that make it vanish
(SIGSTOP: no goodbye, no TCP close, no media, no answers to pings).

    python tests/publisher_process.py BASE SESSION WAV

It opens ``/ws`` with the session cookie, publishes the WAV file (looped)
with aiortc, prints ``live`` once the server's answer is applied, then one
line ``candidates {"offer": [...], "answer": [...]}`` (the address and port
of every ICE candidate on each side, for tests of where media goes), then
``answered T``, T being when the answer arrived on this machine's monotonic
clock (which every network namespace shares, so a test can time what other
hosts see against it), and keeps sending until it is stopped or killed.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from typing import Any


async def main(base: str, session: str, wav: str) -> None:
    from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
    from aiortc.contrib.media import MediaPlayer
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
    pc.addTrack(MediaPlayer(wav, loop=True).audio)
    await pc.setLocalDescription(await pc.createOffer())
    socket.sendMessage(json.dumps({"v": 1, "type": "publish", "sdp": pc.localDescription.sdp, "id": "p"}).encode())
    while True:
        reply = await inbox.get()
        if reply.get("id") == "p":
            break
    if reply.get("type") != "answer":
        print(f"refused {reply}", flush=True)
        return
    answered = time.monotonic()
    await pc.setRemoteDescription(RTCSessionDescription(reply["sdp"], "answer"))
    print("live", flush=True)
    print("candidates " + json.dumps({"offer": candidates(pc.localDescription.sdp), "answer": candidates(reply["sdp"])}), flush=True)
    print(f"answered {answered:.6f}", flush=True)
    await asyncio.sleep(3600)


def candidates(sdp: str) -> list[list[str]]:
    """[address, port, type] of each a=candidate line of C{sdp}."""
    found = []
    for line in sdp.splitlines():
        if line.startswith("a=candidate:"):
            fields = line.split()
            found.append([fields[4], fields[5], fields[7]])
    return found


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:4]))
