"""
Live media benchmark: real ``twistd denoisecast`` servers on loopback, N
publishers and M listeners per publisher, each side in its own processes.

    .venv/bin/python bench/media.py --publishers 4 --listeners 8 --seconds 20

Prints the server's CPU per publisher and per listener (from /proc, in a
phase with publishers only and a phase with listeners added), the frames
each listener lost or got late, the chunks passed through raw (denoise did
not keep up) in each phase, the signaling time of publish and listen
requests, and the latency: the publisher injects a
click every second, a listener on the raw signal (delay-matched, so the
same latency as the denoised one) detects it; the total is split into the
engine's own latency (chunk plus model delay) and the rest, and a direct
aiortc publisher -> listener connection without the server gives the
clients' own share, so the server's part can be told apart.  With
``--browser``, one more listener runs in Chromium and reports what its
jitter buffer concealed (the audible side of late or lost packets).

Several nodes and the live bus:

    --nodes N      N twistd processes on their own ports, one fresh PostgreSQL
                   database and one redis-server (started here); publishers
                   are spread over the nodes and each group of listeners
                   connects to a node other than its broadcast's, so listening
                   crosses nodes.  After the listener phase, listen requests
                   are timed one at a time through the broadcast's node and
                   through another node: the difference is what routing over
                   Redis adds to signaling.
    --workers N    one twistd --workers N on one port (SO_REUSEPORT).
    --bus redis    a single node on the Redis bus (against --bus memory).
    --find-limit   publishers only, added --step at a time, until chunks are
                   passed through raw in a measured (steady) phase.

Server CPU is summed over every server process: the nodes, the --workers
supervisor and its workers, and the redis-server.  Media stays on loopback
(the servers' --media-address and the clients' candidates are 127.0.0.1).
"""

from __future__ import annotations

import argparse
import asyncio
import fractions
import http.cookiejar
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from denoisecast.live.rtc.sockets import drain_on_read  # noqa: E402  (clients read their sockets as the server does)

RATE = 48000
FRAME = 960
#: A click every 51 frames (1.02 s): each click falls 20 ms later in the
#: server's 100 ms chunk grid than the one before, so over five clicks one
#: waits for a whole chunk (the slowest), one for almost none.
CLICK_FRAMES = 51
CLICK_EVERY = CLICK_FRAMES * 960 / 48000


NODE_PORTS = 400
"""UDP media ports of each node (``--rtc-ports``): the port of a server's ICE
candidate tells which node holds a peer connection."""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_for_port(port: int, seconds: float = 60.0) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"nothing answered on port {port} within {seconds:g} s")


def process_tree_cpu(roots: list[int]) -> float:
    """CPU seconds of the processes C{roots} and all their descendants (workers, a private Redis)."""
    total, stack, seen = 0.0, list(roots), set()
    while stack:
        pid = stack.pop()
        if pid in seen:
            continue
        seen.add(pid)
        try:
            total += server_cpu(pid)
            for task in Path(f"/proc/{pid}/task").iterdir():
                stack += [int(child) for child in (task / "children").read_text().split()]
        except (FileNotFoundError, ProcessLookupError, ValueError):
            continue
    return total


@dataclass
class Servers:
    """
    What the benchmark runs as its server: one node, N nodes (each a
    ``twistd`` on its own port) or one ``twistd --workers N``, with the
    PostgreSQL database and the Redis server they share when there are
    several.
    """

    procs: list[subprocess.Popen[bytes]]
    #: The URL of each node; with --workers, the one URL all the workers share.
    bases: list[str]
    #: Where each node's /metrics is read (with --workers, each worker's --metrics-listen port).
    metrics_bases: list[str]
    #: The first --rtc-ports port of the whole range (node k has NODE_PORTS from low + k * NODE_PORTS).
    low_port: int
    description: str
    drop_database: Any = None

    def node_of(self, sdp: str) -> int:
        """The node (0-based) whose ICE candidate an answer carries, or -1."""
        for line in sdp.splitlines():
            if line.startswith("a=candidate:"):
                port = int(line.split()[5])
                return (port - self.low_port) // NODE_PORTS
        return -1

    def cpu(self) -> float:
        """CPU seconds of every server process so far: nodes, supervisor, workers, Redis."""
        return process_tree_cpu([proc.pid for proc in self.procs])

    def metric(self, name: str) -> float:
        """A metric summed over the nodes (NaN where none has it)."""
        values = [metric(base, name) for base in self.metrics_bases]
        known = [v for v in values if v == v]
        return sum(known) if known else float("nan")

    def mean_metric(self, name: str) -> float:
        values = [v for v in (metric(base, name) for base in self.metrics_bases) if v == v]
        return sum(values) / len(values) if values else float("nan")

    def lag_buckets(self) -> dict[float, float]:
        merged: dict[float, float] = {}
        for base in self.metrics_bases:
            for bound, count in lag_buckets(base).items():
                merged[bound] = merged.get(bound, 0.0) + count
        return merged

    def stop(self) -> None:
        for proc in reversed(self.procs):
            proc.terminate()
        for proc in reversed(self.procs):
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
        if self.drop_database is not None:
            self.drop_database()


def private_redis(work: Path) -> tuple[subprocess.Popen[bytes], str]:
    """A redis-server of the benchmark's own on loopback (its CPU is then the bench's alone to count)."""
    port = free_port()
    proc = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
         "--dir", str(work)], stdout=subprocess.DEVNULL,
    )
    wait_for_port(port)
    return proc, f"redis://127.0.0.1:{port}/0"


def fresh_postgres(admin_url: str) -> tuple[str, Any]:
    """A new, empty PostgreSQL database on the server of C{admin_url}; its URL and a function that drops it."""
    import uuid

    from sqlalchemy import create_engine, text

    name = "dc_bench_" + uuid.uuid4().hex[:12]
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))

    def drop() -> None:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()

    return f"{admin_url.rpartition('/')[0]}/{name}", drop


DEFAULT_POSTGRES = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"


def start_servers(
    work: Path, nodes: int = 1, workers: int = 1, bus: str = "memory", postgres: str = "",
) -> Servers:
    """
    Real ``twistd denoisecast`` processes in C{work}, on loopback, once each
    node answers: C{nodes} of them on their own ports, or one with
    C{--workers workers}.  Several nodes share a fresh PostgreSQL database
    (made on the server of C{postgres}, or of DEFAULT_POSTGRES) and a
    redis-server the bench starts; C{bus} "redis" puts a single node on such
    a Redis too.  Media stays on loopback: the servers offer 127.0.0.1 only
    and the clients do too (L{loopback_only}).
    """
    procs: list[subprocess.Popen[bytes]] = []
    drop = None
    common = ["--registrations-per-hour", "0", "--data-dir", str(work / "data"),
              # Every client is on loopback, which remote ICE candidates may not name by default.
              "--ice-allow-networks", "127.0.0.0/8", "--media-address", "127.0.0.1"]
    several = nodes > 1 or workers > 1
    if several or postgres:
        url, drop = fresh_postgres(postgres or DEFAULT_POSTGRES)
        common += ["--database-url", url]
    if nodes > 1 or bus == "redis":
        redis, redis_url = private_redis(work)
        procs.append(redis)
        common += ["--redis-url", redis_url]
    # Below the kernel's ephemeral range, so no outgoing connection holds one.
    low = 10000 + (os.getpid() % 10) * 2000
    twistd = str(Path(sys.executable).with_name("twistd"))
    if workers > 1:
        port, metrics_port = free_port(), free_port()
        procs.append(subprocess.Popen(
            [twistd, "-n", "--pidfile=", "--logfile", str(work / "server.log"), "denoisecast", *common,
             "--listen", f"tcp:{port}:interface=127.0.0.1", "--workers", str(workers),
             "--metrics-listen", f"tcp:{metrics_port}:interface=127.0.0.1",
             "--rtc-ports", f"{low}-{low + workers * NODE_PORTS - 1}"], cwd=work,
        ))
        bases = [f"http://127.0.0.1:{port}"]
        metrics_bases = [f"http://127.0.0.1:{metrics_port + k}" for k in range(workers)]
        for k in range(workers):
            wait_for_port(metrics_port + k, 120)
        redis_text = "a redis-server started by the bench" if bus == "redis" else "its own private redis-server"
        description = f"one twistd with --workers {workers} on one port, {redis_text}, PostgreSQL"
    else:
        bases = []
        for k in range(nodes):
            port = free_port()
            base = f"http://127.0.0.1:{port}"
            procs.append(subprocess.Popen(
                [twistd, "-n", "--pidfile=", "--logfile", str(work / f"node{k}.log"), "denoisecast", *common,
                 "--listen", f"tcp:{port}:interface=127.0.0.1",
                 "--rtc-ports", f"{low + k * NODE_PORTS}-{low + (k + 1) * NODE_PORTS - 1}"]
                + (["--node-id", f"node{k}", "--advertise-url", base] if nodes > 1 else []), cwd=work,
            ))
            bases.append(base)
        for base in bases:
            wait_for_port(int(base.rsplit(":", 1)[1]), 120)
        metrics_bases = bases
        description = (
            f"{nodes} twistd nodes on their own ports, one PostgreSQL database and one redis-server" if nodes > 1
            else f"one twistd node, {'Redis' if bus == 'redis' else 'in-process'} bus, "
            f"{'PostgreSQL' if postgres else 'SQLite'}"
        )
    return Servers(procs, bases, metrics_bases, low, description, drop)


def start_server(work: Path) -> tuple[subprocess.Popen[bytes], str]:
    """
    A real ``twistd denoisecast`` in C{work} on a free loopback port, once it
    accepts connections; its base URL.  Shared by the benchmarks, so they
    all run the server the same way.
    """
    servers = start_servers(work)
    return servers.procs[0], servers.bases[0]


def loopback_only() -> None:
    """This process's aiortc peers offer 127.0.0.1 only, as the servers do (aioice never offers it by itself)."""
    import aioice.ice

    aioice.ice.get_host_addresses = lambda use_ipv4, use_ipv6: ["127.0.0.1"] if use_ipv4 else []


# -- HTTP and WebSocket client helpers (plain asyncio, no Twisted) -----------------


class Http:
    def __init__(self, base: str) -> None:
        self.base = base
        self.jar = http.cookiejar.CookieJar()
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(self.jar))
        self.busy = 0

    def cookie(self, name: str) -> str:
        return next((c.value for c in self.jar if c.name == name), "")

    def call(self, method: str, path: str, body: Any = None) -> int:
        """
        The reply's status; a 503 (the server's password queue is full) is
        retried after the Retry-After it names, counted in C{busy}.
        """
        while True:
            status, retry = self._call(method, path, body)
            if status != 503 or retry is None:
                return status
            self.busy += 1
            time.sleep(retry)

    def _call(self, method: str, path: str, body: Any) -> tuple[int, float | None]:
        if not self.cookie("dc_csrf"):
            self.opener.open(self.base + "/api/csrf").read()
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(self.base + path, data=data, method=method)
        request.add_header("Content-Type", "application/json")
        request.add_header("X-CSRF-Token", self.cookie("dc_csrf"))
        try:
            with self.opener.open(request) as reply:
                return reply.status, None
        except urllib.error.HTTPError as error:
            retry = error.headers.get("Retry-After")
            return error.code, float(retry) if retry else None


async def open_socket(base: str, session: str) -> Any:
    from autobahn.asyncio.websocket import WebSocketClientFactory, WebSocketClientProtocol

    inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()

    class Proto(WebSocketClientProtocol):
        def onMessage(self, payload: bytes, isBinary: bool) -> None:
            inbox.put_nowait(json.loads(payload))

    host, port = base.replace("http://", "").split(":")
    factory = WebSocketClientFactory(
        base.replace("http", "ws") + "/ws", origin=base, headers={"Cookie": f"dc_session={session}"}
    )
    factory.protocol = Proto
    _, proto = await asyncio.get_event_loop().create_connection(factory, host, int(port))
    for _ in range(200):
        if proto.state == Proto.STATE_OPEN:
            break
        await asyncio.sleep(0.01)
    proto.inbox = inbox
    return proto


async def request(proto: Any, message: dict[str, Any]) -> dict[str, Any]:
    ref = os.urandom(4).hex()
    proto.sendMessage(json.dumps({**message, "id": ref}).encode())
    while True:
        reply = await asyncio.wait_for(proto.inbox.get(), 30)
        if reply.get("id") == ref:
            return reply


# -- the publisher and listener processes ---------------------------------------------


def make_source(clicks: list[float]) -> Any:
    """
    A 20 ms-paced audio track: faint noise and a click every 1.02 s (times
    noted).  That cycle of audio is encoded to Opus once and its packets
    are replayed (aiortc sends pre-encoded packets as they are): a publisher
    client then costs packetising and SRTP, not an encoder per frame, so
    twenty of them leave the cores to the server they measure.
    """
    import av
    import numpy as np
    from aiortc.mediastreams import MediaStreamTrack

    from denoisecast.audio.opus import OpusStream

    per_second = CLICK_FRAMES
    rng = np.random.default_rng(1)
    second = (rng.standard_normal(per_second * FRAME) * 0.003).astype(np.float32)
    second[:240] = 28000 / 32767
    stream = OpusStream(0)
    packets = stream.encode(np.tile(second, 3))
    # The middle cycle, in steady state: its first packet holds the click.
    loop = [bytes(p) for p in packets if per_second * FRAME <= p.pts < 2 * per_second * FRAME]
    assert len(loop) == per_second

    class Source(MediaStreamTrack):
        kind = "audio"

        def __init__(self) -> None:
            super().__init__()
            self.n = 0
            self.start = 0.0

        async def recv(self) -> av.Packet:
            if not self.start:
                self.start = time.monotonic()
            due = self.start + self.n * FRAME / RATE
            await asyncio.sleep(max(0.0, due - time.monotonic()))
            index = self.n % per_second
            if index == 0 and self.n:
                clicks.append(time.monotonic())
            packet = av.Packet(loop[index])
            packet.pts = self.n * FRAME
            packet.time_base = fractions.Fraction(1, RATE)
            self.n += 1
            return packet

    return Source()


async def baseline(seconds: float) -> list[float]:
    """
    Click latency of a direct aiortc publisher -> listener connection in one
    process (no server): the clients' own share of the latency (encoding, one
    receive buffer), to subtract from the path through the server.
    """
    import numpy as np
    from aiortc import RTCConfiguration, RTCPeerConnection
    from aiortc.mediastreams import MediaStreamError

    clicks: list[float] = []
    arrivals: list[float] = []
    sender = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    receiver = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    sender.addTrack(make_source(clicks))

    async def record(track: Any) -> None:
        last = 0.0
        try:
            while True:
                frame = await track.recv()
                now = time.monotonic()
                if float(np.abs(frame.to_ndarray()).max()) > 12000 and now - last > 0.5:
                    arrivals.append(now)
                    last = now
        except MediaStreamError:
            pass

    receiver.on("track", lambda track: asyncio.ensure_future(record(track)))
    await sender.setLocalDescription(await sender.createOffer())
    await receiver.setRemoteDescription(sender.localDescription)
    await receiver.setLocalDescription(await receiver.createAnswer())
    await sender.setRemoteDescription(receiver.localDescription)
    await asyncio.sleep(seconds)
    await sender.close()
    await receiver.close()
    return [a - max(c for c in clicks if c < a) for a in arrivals if any(c < a for c in clicks)]


async def publisher(base: str, user: str, seconds: float, out: Path) -> None:
    from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription

    clicks: list[float] = []
    source = make_source(clicks)

    client = Http(base)
    client.call("POST", "/api/auth/login", {"username": user, "password": "bench-password"})
    ws = await open_socket(base, client.cookie("dc_session"))
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    pc.addTrack(source)
    await pc.setLocalDescription(await pc.createOffer())
    drain_on_read(pc)
    asked = time.monotonic()
    reply = await request(ws, {"v": 1, "type": "publish", "sdp": pc.localDescription.sdp})
    assert reply["type"] == "answer", reply
    # The conductor reads which node holds the broadcast from the answer's candidates.
    out.with_suffix(".live").write_text(json.dumps({"answer_seconds": time.monotonic() - asked, "sdp": reply["sdp"]}))
    await pc.setRemoteDescription(RTCSessionDescription(reply["sdp"], "answer"))
    cpu0 = time.process_time()
    lags: list[float] = []
    watcher = asyncio.ensure_future(watch_loop_lag(lags))
    stop = out.with_suffix(".stop")
    deadline = time.monotonic() + seconds
    while not stop.exists() and time.monotonic() < deadline:
        await asyncio.sleep(0.2)
    watcher.cancel()
    out.write_text(json.dumps({"clicks": clicks, "cpu": time.process_time() - cpu0, "lag": lag_summary(lags)}))
    await request(ws, {"v": 1, "type": "stop"})
    await pc.close()


async def watch_loop_lag(lags: list[float], interval: float = 0.05) -> None:
    """Notes how late this client's event loop wakes up (a starved client
    answers ICE consent checks late, and the server then drops it)."""
    while True:
        due = time.monotonic() + interval
        await asyncio.sleep(interval)
        lags.append(time.monotonic() - due)


def lag_summary(lags: list[float]) -> dict[str, float]:
    ordered = sorted(lags) or [0.0]
    return {"p99": ordered[int(0.99 * (len(ordered) - 1))], "max": ordered[-1]}


def count_packets_only(pc: Any, got: dict[str, Any]) -> None:
    """
    Makes a listener count the RTP packets that reach its socket (one per
    20 ms frame) instead of decrypting and decoding them; everything else
    (STUN, DTLS, RTCP) goes on to aiortc as usual.  The server's side is
    unchanged (it packetises, encrypts and sends the same); the client's
    SRTP and Opus work is saved, so that hundreds of listeners fit on the
    same cores as the server without starving it.
    """
    connection = pc.getTransceivers()[0].receiver.transport.transport.iceGatherer._connection
    deliver = connection.data_received
    last = [0.0]

    def data_received(data: bytes, component: int) -> None:
        if len(data) > 12 and 128 <= data[0] <= 191 and not 192 <= data[1] <= 223:  # RTP, not RTCP
            now = time.monotonic()
            got["frames"] += 1
            if last[0] and now - last[0] > 0.15:
                got["gaps"] += 1
            last[0] = now
            return
        deliver(data, component)

    connection.data_received = data_received


async def listeners(
    base: str, users: list[str], target: str, signal: str, seconds: float, out: Path, decode_all: bool = False
) -> None:
    import numpy as np
    from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
    from aiortc.mediastreams import MediaStreamError

    results: list[dict[str, Any]] = []
    pcs = []

    async def one(user: str, sig: str) -> None:
        client = Http(base)
        began = time.monotonic()
        # Off the loop, so that every listener of this process logs in at once.
        status = await asyncio.to_thread(
            client.call, "POST", "/api/auth/login", {"username": user, "password": "bench-password"}
        )
        assert status == 200, (user, status)
        login = {"login_seconds": time.monotonic() - began, "login_busy": client.busy}
        ws = await open_socket(base, client.cookie("dc_session"))
        pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        pcs.append(pc)
        pc.addTransceiver("audio", direction="recvonly")
        got: dict[str, Any] = {"frames": 0, "gaps": 0, "clicks": [], "signal": sig, **login}
        results.append(got)

        async def record(track: Any) -> None:
            last = 0.0
            last_click = 0.0
            try:
                while True:
                    frame = await track.recv()
                    now = time.monotonic()
                    got["frames"] += 1
                    if last and now - last > 0.15:
                        got["gaps"] += 1
                    last = now
                    if sig == "raw":
                        peak = float(np.abs(frame.to_ndarray()).max())
                        if peak > 12000 and now - last_click > 0.5:
                            got["clicks"].append(now)
                            last_click = now
            except MediaStreamError:
                pass

        if sig == "raw" or decode_all:
            pc.on("track", lambda track: asyncio.ensure_future(record(track)))
        else:
            count_packets_only(pc, got)
        await pc.setLocalDescription(await pc.createOffer())
        drain_on_read(pc)
        asked = time.monotonic()
        reply = await request(ws, {"v": 1, "type": "listen", "user": target, "sdp": pc.localDescription.sdp, "signal": sig})
        assert reply["type"] == "answer", reply
        got["answer_seconds"] = time.monotonic() - asked
        await pc.setRemoteDescription(RTCSessionDescription(reply["sdp"], "answer"))

    await asyncio.gather(*(one(u, "raw" if i == 0 else signal) for i, u in enumerate(users)))
    out.with_suffix(".ready").write_text("")
    for got in results:  # count from here: the phase the conductor measures
        got["frames"] = got["gaps"] = 0
    cpu0 = time.process_time()
    lags: list[float] = []
    watcher = asyncio.ensure_future(watch_loop_lag(lags))
    await asyncio.sleep(seconds)
    watcher.cancel()
    out.write_text(json.dumps(
        {"listeners": results, "cpu": time.process_time() - cpu0, "seconds": seconds, "lag": lag_summary(lags)}
    ))
    for pc in pcs:
        await pc.close()


# -- a browser listener (optional) ----------------------------------------------------

BROWSER_FLAGS = [
    "--no-sandbox", "--disable-gpu", "--no-first-run", "--autoplay-policy=no-user-gesture-required",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
CONNECT = """
async ([user, target]) => {
  const token = async () => (await (await fetch('/api/csrf')).json()).csrf_token;
  const post = async (path, body) => fetch(path, {method: 'POST', headers: {'Content-Type': 'application/json',
      'X-CSRF-Token': await token()}, body: JSON.stringify(body)});
  let r = await post('/api/auth/login', {username: user, password: 'bench-password'});
  if (!r.ok) throw new Error('login ' + r.status + ' ' + await r.text());
  const pc = new RTCPeerConnection();
  pc.addTransceiver('audio', {direction: 'recvonly'});
  const audio = document.createElement('audio');
  audio.autoplay = true;
  document.body.appendChild(audio);
  pc.ontrack = (e) => { audio.srcObject = new MediaStream([e.track]); audio.play().catch(() => {}); };
  await pc.setLocalDescription(await pc.createOffer());
  await new Promise((done) => {
    if (pc.iceGatheringState === 'complete') return done();
    pc.onicegatheringstatechange = () => { if (pc.iceGatheringState === 'complete') done(); };
  });
  r = await post('/api/streams/' + target + '/listen', {sdp: pc.localDescription.sdp, signal: 'denoised'});
  if (r.status !== 201) throw new Error('listen ' + r.status + ' ' + await r.text());
  await pc.setRemoteDescription({type: 'answer', sdp: (await r.json()).sdp});
  window.benchPc = pc;
  for (let i = 0; i < 200 && pc.connectionState !== 'connected'; i++) await new Promise((t) => setTimeout(t, 50));
  return pc.connectionState;
}
"""

#: The audio receiver's statistics (WebRTC inbound-rtp), read twice to take the phase's share.
STATS = """
async () => {
  for (const r of (await window.benchPc.getStats()).values())
    if (r.type === 'inbound-rtp' && r.kind === 'audio') return r;
  return null;
}
"""

BROWSER_KEYS = (
    "packetsReceived", "packetsLost", "totalSamplesReceived", "concealedSamples", "silentConcealedSamples",
    "concealmentEvents", "insertedSamplesForDeceleration", "removedSamplesForAcceleration",
    "jitterBufferDelay", "jitterBufferEmittedCount",
)


def browser_listener(base: str, user: str, target: str, seconds: float, out: Path) -> None:
    """
    Debian's Chromium listens to C{target} (HTTP listen route, its own
    WebRTC stack and adaptive jitter buffer, playing into an audio element)
    and reports what its receiver concealed during the measured phase: the
    audible side of late or missing packets, which packet counts cannot show.
    """
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path="/usr/bin/chromium", args=BROWSER_FLAGS)
        try:
            page = browser.new_page()
            page.goto(base + "/login")
            state = page.evaluate(CONNECT, [user, target])
            out.with_suffix(".ready").write_text("")
            first = page.evaluate(STATS) or {}
            time.sleep(seconds)
            last = page.evaluate(STATS) or {}
        finally:
            browser.close()
    out.write_text(json.dumps({"state": state, **{k: last.get(k, 0) - first.get(k, 0) for k in BROWSER_KEYS}}))


# -- the conductor -----------------------------------------------------------------


def server_cpu(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def machine_busy() -> tuple[float, float]:
    """Busy and total CPU jiffies of the whole machine (all processes, all cores)."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]
    return float(sum(fields) - idle), float(sum(fields))


def busy_share(before: tuple[float, float], after: tuple[float, float]) -> float:
    return (after[0] - before[0]) / max(1.0, after[1] - before[1])


def lag_buckets(base: str) -> dict[float, float]:
    """The server's reactor-lag histogram: cumulative counts by upper bound."""
    text = urllib.request.urlopen(base + "/metrics").read().decode()
    prefix = 'denoisecast_reactor_lag_seconds_bucket{le="'
    return {
        float(line[len(prefix):].split('"')[0]): float(line.split()[-1])
        for line in text.splitlines() if line.startswith(prefix)
    }


def lag_between(before: dict[float, float], after: dict[float, float]) -> str:
    """How late the server's reactor ran between two readings: the bound
    under which 99 % of its timed calls ran, and the worst bucket."""
    counts = {bound: after[bound] - before.get(bound, 0.0) for bound in sorted(after)}
    total = counts.get(float("inf"), 0.0)
    if not total:
        return "no readings"
    p99 = next(bound for bound, n in counts.items() if n >= 0.99 * total)
    worst = next(bound for bound, n in counts.items() if n >= total)
    return f"99 % under {p99 * 1000:g} ms, all under {worst * 1000:g} ms"


def metric(base: str, name: str) -> float:
    text = urllib.request.urlopen(base + "/metrics").read().decode()
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return float("nan")


def median(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[len(ordered) // 2] if ordered else float("nan")


def make_accounts(base: str, pubs: list[str], subs: dict[str, list[str]]) -> None:
    """Register the publishers and their listeners; each publisher befriends its listeners."""
    for name in pubs + [u for us in subs.values() for u in us]:
        Http(base).call("POST", "/api/auth/register", {"username": name, "password": "bench-password"})
    for p, us in subs.items():
        host = Http(base)
        host.call("POST", "/api/auth/login", {"username": p, "password": "bench-password"})
        for u in us:
            host.call("POST", "/api/friends/requests", {"username": u})
            friend = Http(base)
            friend.call("POST", "/api/auth/login", {"username": u, "password": "bench-password"})
            friend.call("POST", f"/api/friends/requests/{p}/accept")


def start_publishers(servers: Servers, pubs: list[str], first: int, work: Path) -> list[subprocess.Popen[bytes]]:
    """Publisher C{first + i} connects to node C{(first + i) % nodes}: spread over the nodes."""
    return [
        subprocess.Popen([sys.executable, __file__, "--base", servers.bases[(first + i) % len(servers.bases)],
                          "--role", "publisher", "--users", p, "--seconds", "600", "--out", str(work / f"{p}.json")])
        for i, p in enumerate(pubs)
    ]


def wait_live(servers: Servers, pubs: list[str], procs: list[subprocess.Popen[bytes]], work: Path) -> dict[str, tuple[int, float]]:
    """Each publisher's node (from its answer's candidates) and how long its publish took to answer."""
    live = {}
    for p, proc in zip(pubs, procs):
        path = work / f"{p}.live"
        while not path.exists():
            if proc.poll() is not None:
                raise SystemExit(f"publisher {p} failed (see above)")
            time.sleep(0.1)
        time.sleep(0.05)
        found = json.loads(path.read_text())
        live[p] = (servers.node_of(found["sdp"]), found["answer_seconds"])
    return live


def stop_clients(work: Path, pubs: list[str], procs: list[subprocess.Popen[bytes]]) -> None:
    for p in pubs:
        (work / f"{p}.stop").write_text("")
    for proc in procs:
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()


async def signaling_probe(servers: Servers, target: str, owner: int, users: list[str], rounds: int) -> dict[str, list[float]]:
    """
    Listen requests to C{target}'s broadcast, one at a time, alternating
    between a page on the node that holds it and a page on another node
    (relayed to the holder over the bus): the time from the request to the
    answer on each route.  With --workers the kernel picks the worker, so
    there is one route.
    """
    from aiortc import RTCConfiguration, RTCPeerConnection

    if len(servers.bases) > 1:
        routes = {"through the broadcast's node": servers.bases[owner],
                  "through another node": servers.bases[(owner + 1) % len(servers.bases)]}
    else:
        routes = {"through the shared port (either node)" if len(servers.metrics_bases) > 1 else "one node": servers.bases[0]}
    sockets = {}
    for (name, base), user in zip(routes.items(), users):
        client = Http(base)
        await asyncio.to_thread(client.call, "POST", "/api/auth/login", {"username": user, "password": "bench-password"})
        sockets[name] = await open_socket(base, client.cookie("dc_session"))
    times: dict[str, list[float]] = {name: [] for name in routes}
    for _ in range(rounds):
        for name, ws in sockets.items():
            pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
            pc.addTransceiver("audio", direction="recvonly")
            await pc.setLocalDescription(await pc.createOffer())
            asked = time.monotonic()
            reply = await request(ws, {"v": 1, "type": "listen", "user": target, "sdp": pc.localDescription.sdp})
            if reply.get("type") == "answer":
                times[name].append(time.monotonic() - asked)
            ws.sendMessage(json.dumps({"v": 1, "type": "unlisten", "user": target, "id": "u"}).encode())
            await pc.close()
            await asyncio.sleep(0.3)
    for ws in sockets.values():
        ws.sendClose()
    return times


def parse_arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--publishers", type=int, default=2)
    parser.add_argument("--listeners", type=int, default=4, help="per publisher")
    parser.add_argument("--seconds", type=float, default=8.0, help="length of each measured (steady) phase")
    parser.add_argument("--settle", type=float, default=4.0,
                        help="seconds between the publishers' start (arrival) and the measured phase")
    parser.add_argument("--nodes", type=int, default=1,
                        help="server nodes, each a twistd on its own port, sharing one PostgreSQL database and one "
                        "redis-server (started by the bench); publishers are spread over them, listeners connect "
                        "to a node other than their publisher's")
    parser.add_argument("--workers", type=int, default=1, help="one twistd with --workers N on one port (PostgreSQL)")
    parser.add_argument("--bus", choices=["memory", "redis"], default="",
                        help="the live bus of a single node (default memory); several nodes always use Redis")
    parser.add_argument("--postgres", nargs="?", const=DEFAULT_POSTGRES, default="",
                        help="put a single node on a fresh PostgreSQL database (made on this server; several nodes "
                        f"always are; default server {DEFAULT_POSTGRES})")
    parser.add_argument("--probes", type=int, default=10,
                        help="listen requests timed one at a time on each route after the listener phase")
    parser.add_argument("--find-limit", action="store_true",
                        help="add publishers (no listeners) --step at a time, each followed by --settle and a "
                        "measured --seconds phase, until chunks are passed through raw in a measured phase: "
                        "the number of publishers these servers keep denoising")
    parser.add_argument("--start", type=int, default=1, help="--find-limit: publishers in the first step")
    parser.add_argument("--step", type=int, default=1, help="--find-limit: publishers added per step")
    parser.add_argument("--max-publishers", type=int, default=16, help="--find-limit: give up after this many")
    parser.add_argument("--role", choices=["publisher", "listeners", "browser"], help=argparse.SUPPRESS)
    parser.add_argument("--base", help=argparse.SUPPRESS)
    parser.add_argument("--users", help=argparse.SUPPRESS)
    parser.add_argument("--target", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    parser.add_argument(
        "--decode-all", action="store_true",
        help="every listener decodes its audio (by default only each group's first, which times the clicks, "
        "does; the others count packets)",
    )
    parser.add_argument(
        "--browser", action="store_true",
        help="one more listener to the first publisher in Chromium (Playwright), which reports what its "
        "jitter buffer concealed in the listener phase",
    )
    args = parser.parse_args()
    if args.nodes > 1 and args.workers > 1:
        parser.error("--nodes and --workers are two ways of running several nodes: give one")
    if args.bus == "memory" and args.nodes > 1:
        parser.error("several nodes need the Redis bus")
    return args


def start_from(args: argparse.Namespace, work: Path) -> Servers:
    servers = start_servers(work, args.nodes, args.workers, args.bus or "memory", args.postgres)
    time.sleep(3)  # the engine loads in the background
    return servers


def find_limit(args: argparse.Namespace) -> None:
    """
    Publishers only, added a step at a time to the same servers: after each
    step, --settle seconds (the arrival: streams starting may pass a few
    chunks through) and a measured phase; the first count at which chunks
    are passed through raw in the measured phase is the limit.
    """
    work = Path(tempfile.mkdtemp(prefix="denoisecast-bench-limit-"))
    load_before = os.getloadavg()
    servers = start_from(args, work)
    pubs = [f"pub{i}" for i in range(args.max_publishers)]
    procs: list[subprocess.Popen[bytes]] = []
    rows = []
    limit = None
    print(f"servers: {servers.description}; {os.cpu_count()} cores, load average {load_before[0]:.2f} before")
    try:
        make_accounts(servers.bases[0], pubs, {})
        count = 0
        fallback = "denoisecast_engine_fallback_chunks_total"
        while count < args.max_publishers:
            new = pubs[count: max(args.start, count + args.step)] if count == 0 else pubs[count: count + args.step]
            before = servers.metric(fallback)
            started = start_publishers(servers, new, count, work)
            procs += started
            live = wait_live(servers, new, started, work)
            count += len(new)
            time.sleep(args.settle)
            f0, c0, t0 = servers.metric(fallback), servers.cpu(), time.monotonic()
            time.sleep(args.seconds)
            cpu = (servers.cpu() - c0) / (time.monotonic() - t0)
            f1 = servers.metric(fallback)
            rows.append({"publishers": count, "arrival": f0 - before, "steady": f1 - f0, "cpu": cpu,
                         "model_ms": servers.mean_metric("denoisecast_engine_model_seconds_per_chunk") * 1000,
                         "nodes": sorted(n for n, _ in live.values())})
            row = rows[-1]
            print(f"{count} publishers: {row['steady']:.0f} chunks passed through in the {args.seconds:g} s steady phase "
                  f"({row['arrival']:.0f} while the last ones arrived); server CPU {cpu * 100:.0f} % of a core "
                  f"({cpu * 100 / count:.1f} % per publisher); model {row['model_ms']:.1f} ms per chunk; "
                  f"new ones on nodes {row['nodes']}", flush=True)
            if row["steady"] > 0:
                limit = count
                break
    finally:
        stop_clients(work, pubs[: len(procs)], procs)
        servers.stop()
    load_after = os.getloadavg()
    if limit is None:
        print(f"no chunks passed through in a steady phase up to {args.max_publishers} publishers")
    else:
        print(f"limit: chunks are passed through raw from {limit} publishers on ({servers.description}); "
              f"the step before had none in its steady phase")
    print(f"load average {load_before[0]:.2f} before, {load_after[0]:.2f} after; files: {work}")
    print(json.dumps(rows))


def main() -> None:
    args = parse_arguments()
    if args.role:
        loopback_only()
        # The clients stand in for other machines: they share these cores
        # with the server but yield to it, so what is measured is the
        # server, not the fight for the cores with its own load generators.
        os.nice(10)
    if args.role == "publisher":
        asyncio.run(publisher(args.base, args.users, args.seconds, Path(args.out)))
        return
    if args.role == "listeners":
        asyncio.run(
            listeners(
                args.base, args.users.split(","), args.target, "denoised", args.seconds, Path(args.out), args.decode_all
            )
        )
        return
    if args.role == "browser":
        browser_listener(args.base, args.users, args.target, args.seconds, Path(args.out))
        return
    loopback_only()
    if args.find_limit:
        find_limit(args)
        return

    work = Path(tempfile.mkdtemp(prefix="denoisecast-bench-"))
    load_before = os.getloadavg()
    servers = start_from(args, work)
    pubs = [f"pub{i}" for i in range(args.publishers)]
    procs: list[subprocess.Popen[bytes]] = []
    try:
        subs = {p: [f"{p}l{j}" for j in range(args.listeners)] for p in pubs}
        browser_user = f"{pubs[0]}b"
        if args.browser:
            subs[pubs[0]].append(browser_user)  # befriended below; listens from Chromium, not the listeners' process
        probe_users = [f"{pubs[0]}p{k}" for k in range(2)] if args.probes else []
        make_accounts(servers.bases[0], pubs, {p: us + (probe_users if p == pubs[0] else []) for p, us in subs.items()})
        me = [sys.executable, __file__]
        procs = start_publishers(servers, pubs, 0, work)
        live = wait_live(servers, pubs, procs, work)
        time.sleep(args.settle)
        fallback_marks = [servers.metric("denoisecast_engine_fallback_chunks_total")]
        lag_marks = [servers.lag_buckets()]
        c0, t0, m0 = servers.cpu(), time.monotonic(), machine_busy()
        time.sleep(args.seconds)
        per_pub_phase = (servers.cpu() - c0) / (time.monotonic() - t0)
        machine_pub_phase = busy_share(m0, machine_busy())
        fallback_marks.append(servers.metric("denoisecast_engine_fallback_chunks_total"))
        lag_marks.append(servers.lag_buckets())
        n = len(servers.bases)
        # Listeners reach another node than the one holding their broadcast: listening crosses nodes.
        listener_nodes = {p: (live[p][0] + 1) % n if n > 1 and live[p][0] >= 0 else 0 for p in pubs}
        listener_procs = [
            subprocess.Popen(me + ["--base", servers.bases[listener_nodes[p]], "--role", "listeners",
                                   "--users", ",".join(u for u in us if u != browser_user), "--target", p,
                                   "--seconds", str(args.seconds), "--out", str(work / f"{p}-listeners.json")]
                             + (["--decode-all"] if args.decode_all else []))
            for p, us in subs.items() if args.listeners
        ]
        procs += listener_procs
        for p, proc in zip(pubs, listener_procs):
            while not (work / f"{p}-listeners.ready").exists():
                if proc.poll() is not None:
                    raise SystemExit(f"{p}'s listeners failed to connect (see above)")
                time.sleep(0.2)
        browser = None
        if args.browser:
            browser = subprocess.Popen(me + ["--base", servers.bases[0], "--role", "browser", "--users", browser_user,
                                             "--target", pubs[0], "--seconds", str(args.seconds * 0.8),
                                             "--out", str(work / "browser.json")])
            while not (work / "browser.ready").exists():
                if browser.poll() is not None:
                    raise SystemExit("the browser listener failed to connect (see above)")
                time.sleep(0.2)
        fallback_marks.append(servers.metric("denoisecast_engine_fallback_chunks_total"))
        lag_marks.append(servers.lag_buckets())
        c1, t1, m1 = servers.cpu(), time.monotonic(), machine_busy()
        time.sleep(args.seconds * 0.8)
        with_listeners = (servers.cpu() - c1) / (time.monotonic() - t1)
        machine_listener_phase = busy_share(m1, machine_busy())
        fallback_marks.append(servers.metric("denoisecast_engine_fallback_chunks_total"))
        lag_marks.append(servers.lag_buckets())
        engine_latency = 0.1 + 1440 / RATE
        model = servers.mean_metric("denoisecast_engine_model_seconds_per_chunk")
        fallbacks = servers.metric("denoisecast_engine_fallback_chunks_total")
        for proc in listener_procs + ([browser] if browser else []):
            proc.wait(timeout=120)
        probes = asyncio.run(signaling_probe(servers, pubs[0], max(0, live[pubs[0]][0]), probe_users, args.probes)) \
            if args.probes else {}
    finally:
        stop_clients(work, pubs[: len(procs)], procs[: len(pubs)])
        for proc in procs[len(pubs):]:
            if proc.poll() is None:
                proc.kill()
        servers.stop()
    load_after = os.getloadavg()

    n_listen = args.publishers * args.listeners
    frames = gaps = 0
    latencies: list[float] = []
    logins: list[float] = []
    listen_answers: list[float] = []
    login_busy = 0
    client_cpu_listener = 0.0
    client_lags: dict[str, list[float]] = {"publisher": [], "listeners": []}
    for p in pubs:
        published = json.loads((work / f"{p}.json").read_text())
        sent = published["clicks"]
        client_lags["publisher"].append(published["lag"]["max"])
        path = work / f"{p}-listeners.json"
        if not path.exists():
            continue
        data = json.loads(path.read_text())
        client_cpu_listener += data["cpu"]
        client_lags["listeners"].append(data["lag"]["max"])
        for got in data["listeners"]:
            logins.append(got["login_seconds"])
            listen_answers.append(got["answer_seconds"])
            login_busy += got["login_busy"]
            frames += got["frames"]
            gaps += got["gaps"]
            for arrival in got["clicks"]:
                before = [s for s in sent if s < arrival]
                if before and arrival - before[-1] < 1.0:
                    latencies.append(arrival - before[-1])
    expected = n_listen * args.seconds * RATE / FRAME
    print(f"servers: {servers.description}")
    print(f"load average {load_before[0]:.2f} before, {load_after[0]:.2f} after ({os.cpu_count()} cores)")
    print(f"publishers {args.publishers}, listeners {n_listen} ({args.listeners} each), {args.seconds:g} s phases; "
          f"broadcasts held by nodes {sorted(node for node, _ in live.values())}"
          + (f", listeners on nodes {sorted(listener_nodes.values())}" if n > 1 else ""))
    print(f"whole machine busy ({os.cpu_count()} cores, clients included): {machine_pub_phase * 100:.0f} % "
          f"with publishers only, {machine_listener_phase * 100:.0f} % with listeners")
    print(f"server CPU (every server process: nodes{', supervisor' if args.workers > 1 else ''}"
          f"{', redis-server' if args.workers > 1 or args.nodes > 1 or args.bus == 'redis' else ''}), "
          f"publishers only: {per_pub_phase * 100:.1f} % of a core "
          f"= {per_pub_phase * 100 / max(1, args.publishers):.2f} % per publisher")
    if n_listen:
        print(f"server CPU with listeners: {with_listeners * 100:.1f} % "
              f"= {(with_listeners - per_pub_phase) * 100 / n_listen:.2f} % per listener")
        print(f"listener frames: {frames} of about {expected:.0f} expected, {gaps} gaps over 150 ms (output arrives in 100 ms chunks)")
    if logins:
        ordered = sorted(logins)
        print(f"listener logins (all at once, publishers live): median {ordered[len(ordered) // 2]:.2f} s, "
              f"p90 {ordered[int(0.9 * (len(ordered) - 1))]:.2f} s, max {ordered[-1]:.2f} s, n={len(ordered)}; "
              f"{login_busy} answered 503 busy and retried after Retry-After")
    route = "through another node" if n > 1 else "either worker" if args.workers > 1 else "one node"
    print(f"signaling: publish answered in {median([a for _, a in live.values()]) * 1000:.0f} ms median; "
          + (f"listen (all of a group at once, {route}) "
             f"{median(listen_answers) * 1000:.0f} ms median" if listen_answers else ""))
    if probes:
        print("listen answered, one at a time: " + "; ".join(
            f"{route}: median {median(times) * 1000:.1f} ms (min {min(times) * 1000:.1f}, n={len(times)})"
            for route, times in probes.items() if times
        ))
        if len(probes) == 2 and all(probes.values()):
            owner, other = probes.values()
            print(f"routing through another node adds {(median(other) - median(owner)) * 1000:.1f} ms (median) "
                  "to a listen's signaling (goal: under 5 ms)")
    print(f"engine: {model * 1000:.1f} ms model time per chunk, {fallbacks:.0f} chunks passed through")
    phases = ("publishers' start", "publishers-only phase", "listeners' start", "listener phase")
    marks = [0.0] + fallback_marks
    print("chunks passed through by phase: " + ", ".join(
        f"{name} {later - earlier:.0f}" for name, earlier, later in zip(phases, marks, marks[1:])
    ))
    print("server's reactor lag by phase: " + "; ".join(
        f"{name}: {lag_between(earlier, later)}" for name, earlier, later in zip(phases[1:], lag_marks, lag_marks[1:])
    ))
    print("clients' event loop lag, worst process: " + ", ".join(
        f"{role} {max(lags) * 1000:.0f} ms" for role, lags in client_lags.items() if lags
    ))
    if args.browser and (work / "browser.json").exists():
        seen = json.loads((work / "browser.json").read_text())
        samples = max(1, seen["totalSamplesReceived"])
        print(f"Chromium listener ({seen['state']}): {seen['packetsReceived']} packets, {seen['packetsLost']} lost; "
              f"concealed {seen['concealedSamples']} of {seen['totalSamplesReceived']} samples "
              f"({100 * seen['concealedSamples'] / samples:.2f} %, {seen['concealmentEvents']} events); "
              f"mean jitter buffer delay {1000 * seen['jitterBufferDelay'] / max(1, seen['jitterBufferEmittedCount']):.0f} ms; "
              f"time-stretched {seen['insertedSamplesForDeceleration']} + {seen['removedSamplesForAcceleration']} samples")
    if latencies:
        lat = sorted(latencies)
        median_latency = lat[len(lat) // 2]
        print(f"click latency publisher -> listener: median {median_latency * 1000:.0f} ms "
              f"(min {lat[0] * 1000:.0f}, max {lat[-1] * 1000:.0f}, n={len(lat)}); "
              f"engine chunk + model delay {engine_latency * 1000:.0f} ms; rest {(median_latency - engine_latency) * 1000:.0f} ms "
              "(includes two aiortc receive buffers, server's and listener's, 80 ms each)")
        direct = sorted(asyncio.run(baseline(8.0)))
        if direct:
            d = direct[len(direct) // 2]
            slowest = lat[-1]
            print(f"direct aiortc publisher -> listener (no server): median {d * 1000:.0f} ms; "
                  f"so the server adds {(median_latency - d) * 1000:.0f} ms (median) to {(slowest - d) * 1000:.0f} ms (slowest click, "
                  f"which waited for a whole chunk); beyond the engine's chunk + model delay "
                  f"({engine_latency * 1000:.0f} ms) that leaves {(slowest - d - engine_latency) * 1000:.0f} ms "
                  "(the server's receive buffer, gathering wait, forward pass, decode, resample, Opus encode, fan-out)")
    print(f"files: {work}")


if __name__ == "__main__":
    main()
