"""
HTTP listener benchmark: what one Ogg/Opus HTTP listener
(``/listen/<username>.ogg``) costs the server, next to what a publisher
costs.  A real ``twistd denoisecast`` on loopback (``media.start_server``),
one publisher (``media.py``'s, in its own process), then N listeners that
read the stream with one listen token (in one more process, at lower
priority, reading and counting pages).

    .venv/bin/python bench/http_listeners.py --listeners 50 --seconds 20

Prints the server's CPU (from /proc) with the publisher alone and with the
listeners added, the CPU per listener as a share of the publisher's, and
what the listeners received.  The goal (docs/performance.md): a listener
costs under a tenth of a publisher.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from media import Http, busy_share, machine_busy, metric, server_cpu, start_server  # noqa: E402


def friend_with_token(base: str, host: Http, user: str) -> str:
    """Register C{user}, befriend C{host}'s user (pub0), make a listen token; the token."""
    client = Http(base)
    client.call("POST", "/api/auth/register", {"username": user, "password": "bench-password"})
    host.call("POST", "/api/friends/requests", {"username": user})
    client.call("POST", "/api/friends/requests/pub0/accept")
    request = urllib.request.Request(
        base + "/api/tokens", data=json.dumps({"name": "bench", "scope": "listen"}).encode(), method="POST",
        headers={"Content-Type": "application/json", "X-CSRF-Token": client.cookie("dc_csrf")},
    )
    with client.opener.open(request) as reply:
        return str(json.loads(reply.read())["secret"])


def pages_in(buffer: bytearray) -> list[list[bytes]]:
    """Take the whole Ogg pages off the front of C{buffer}; their packets."""
    pages = []
    while len(buffer) >= 27 and buffer[:4] == b"OggS":
        count = buffer[26]
        if len(buffer) < 27 + count:
            break
        table = buffer[27 : 27 + count]
        size = 27 + count + sum(table)
        if len(buffer) < size:
            break
        body, packets, start, length = bytes(buffer[27 + count : size]), [], 0, 0
        for lace in table:
            length += lace
            if lace < 255:
                packets.append(body[start : start + length])
                start, length = start + length, 0
        pages.append(packets)
        del buffer[:size]
    return pages


async def one_listener(
    base: str, target: str, token: str, seconds: float, counts: dict[str, Any], clicks: list[float] | None
) -> None:
    """
    One player: reads the stream and counts it; with C{clicks}, it listens
    to the raw signal, decodes each page as it arrives and notes when a
    publisher's click comes out (the HTTP path's latency, with no player
    buffer).
    """
    import av
    import numpy as np

    host, port = base.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    query = "?signal=raw" if clicks is not None else ""
    writer.write(
        f"GET /listen/{target}.ogg{query} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {token}\r\n\r\n".encode()
    )
    await writer.drain()
    head = await reader.readuntil(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.1 200"):
        raise SystemExit(f"listener refused: {head[:200]!r}")
    decoder = None
    if clicks is not None:
        decoder = av.CodecContext.create("libopus", "r")
        decoder.format, decoder.layout, decoder.sample_rate = "s16", "mono", 48000
    buffer, last_click = bytearray(), 0.0
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        data = await reader.read(65536)
        if not data:
            break
        now = time.monotonic()
        counts["bytes"] += len(data)
        counts["pages"] += data.count(b"OggS")
        if decoder is None or clicks is None:
            continue
        # Chunked framing: sizes between chunks; the pages' bytes are whole inside each.
        buffer += data
        while True:
            start = buffer.find(b"OggS")
            if start < 0:
                buffer.clear()
                break
            del buffer[:start]
            pages = pages_in(buffer)
            if not pages:
                break
            for packets in pages:
                for packet in packets:
                    if packet.startswith((b"OpusHead", b"OpusTags")):
                        continue
                    for frame in decoder.decode(av.Packet(packet)):
                        if float(np.abs(frame.to_ndarray()).max()) > 12000 and now - last_click > 0.5:
                            clicks.append(now)
                            last_click = now
    writer.close()


async def listeners(base: str, target: str, tokens: list[str], seconds: float, out: Path) -> None:
    counts: dict[str, Any] = {"bytes": 0, "pages": 0}
    clicks: list[float] = []
    out.with_suffix(".ready").touch()
    await asyncio.gather(
        *(one_listener(base, target, token, seconds, counts, clicks if i == 0 else None) for i, token in enumerate(tokens))
    )
    out.write_text(json.dumps({**counts, "clicks": clicks}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--listeners", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=20.0, help="length of each phase")
    parser.add_argument("--role", choices=["listeners"], help=argparse.SUPPRESS)
    parser.add_argument("--base", help=argparse.SUPPRESS)
    parser.add_argument("--tokens", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.role == "listeners":
        os.nice(10)  # stands in for other machines: yields the cores to the server
        tokens = Path(args.tokens).read_text().split()
        asyncio.run(listeners(args.base, "pub0", tokens, args.seconds, Path(args.out)))
        return

    work = Path(tempfile.mkdtemp(prefix="denoisecast-bench-http-"))
    server, base = start_server(work)
    procs: list[subprocess.Popen[bytes]] = []
    try:
        time.sleep(3)  # the engine loads in the background
        host = Http(base)
        host.call("POST", "/api/auth/register", {"username": "pub0", "password": "bench-password"})
        tokens = work / "tokens.txt"
        tokens.write_text("\n".join(friend_with_token(base, host, f"fan{i}") for i in range(args.listeners)))
        media = str(Path(__file__).with_name("media.py"))
        procs.append(subprocess.Popen([sys.executable, media, "--base", base, "--role", "publisher", "--users", "pub0",
                                       "--seconds", "600", "--out", str(work / "pub0.json")]))
        time.sleep(4)
        c0, t0, m0 = server_cpu(server.pid), time.monotonic(), machine_busy()
        time.sleep(args.seconds)
        publisher_cpu = (server_cpu(server.pid) - c0) / (time.monotonic() - t0)
        machine_publisher = busy_share(m0, machine_busy())
        out = work / "listeners.json"
        procs.append(subprocess.Popen([sys.executable, __file__, "--role", "listeners", "--base", base, "--tokens", str(tokens),
                                       "--listeners", str(args.listeners), "--seconds", str(args.seconds + 4),
                                       "--out", str(out)]))
        while not out.with_suffix(".ready").exists():
            time.sleep(0.1)
        time.sleep(2)  # all connected
        c1, t1, m1 = server_cpu(server.pid), time.monotonic(), machine_busy()
        time.sleep(args.seconds)
        with_listeners = (server_cpu(server.pid) - c1) / (time.monotonic() - t1)
        machine_listeners = busy_share(m1, machine_busy())
        dropped = metric(base, "denoisecast_live_listener_packets_dropped_total")
        procs[-1].wait(30)
        counts: dict[str, Any] = json.loads(out.read_text())
    finally:
        (work / "pub0.stop").touch()
        for proc in procs:
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
        server.terminate()
        server.wait(15)
    sent = json.loads((work / "pub0.json").read_text())["clicks"]
    latencies = sorted(
        arrival - before[-1]
        for arrival in counts["clicks"]
        if (before := [s for s in sent if s < arrival]) and arrival - before[-1] < 1.0
    )
    per_listener = (with_listeners - publisher_cpu) / args.listeners
    load = os.getloadavg()
    print(f"machine: {os.cpu_count()} cores, load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}; "
          f"whole machine busy {machine_publisher * 100:.0f} % (publisher phase), {machine_listeners * 100:.0f} % (listeners)")
    print(f"server CPU, one publisher: {publisher_cpu * 100:.1f} % of a core")
    print(f"server CPU with {args.listeners} HTTP listeners: {with_listeners * 100:.1f} % of a core")
    print(f"per HTTP listener: {per_listener * 100:.2f} % of a core = "
          f"{per_listener / max(publisher_cpu, 1e-9):.3f} of a publisher (goal < 0.1)")
    print(f"listeners received {counts['bytes'] / 1024:.0f} KiB in {counts['pages']} pages "
          f"({counts['bytes'] / args.listeners / (args.seconds + 4) * 8 / 1000:.1f} kb/s each); "
          f"packets dropped for slow listeners: {dropped:.0f}")
    if latencies:
        print(f"click latency publisher -> HTTP listener (raw signal, decoded as pages arrive, no player buffer): "
              f"median {latencies[len(latencies) // 2] * 1000:.0f} ms ({latencies[0] * 1000:.0f}-{latencies[-1] * 1000:.0f}), "
              f"{len(latencies)} clicks")


if __name__ == "__main__":
    main()
