"""
The live bus's own latency: a request from one node to another with a
listener's offer-sized body (what relaying a listen to the broadcast's node
adds to signaling), and an event from one node to another, in one process
on the in-process bus and on Redis.

    .venv/bin/python bench/bus.py [--redis-url redis://127.0.0.1:6379/0] [--count 300]

Prints, per bus, the median and 95th percentile of the request round trip
and the median event delay, in milliseconds, as JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
import uuid
from typing import Any

from twisted.internet import asyncioreactor

loop = asyncio.new_event_loop()
asyncio.set_event_loop(loop)
asyncioreactor.install(loop)

from twisted.internet import reactor  # noqa: E402
from twisted.internet.defer import ensureDeferred  # noqa: E402
from twisted.internet.task import deferLater  # noqa: E402

from denoisecast.bus.base import LiveBus, NodeInfo  # noqa: E402
from denoisecast.bus.memory import InProcessBus, MemoryBroker  # noqa: E402
from denoisecast.bus.redisbus import RedisBus  # noqa: E402

#: About the size of a browser's audio-only offer.
OFFER = {"sdp": "x" * 3000}


def pair(kind: str, url: str) -> tuple[LiveBus, LiveBus]:
    if kind == "redis":
        prefix = "dcbench-" + uuid.uuid4().hex[:8]
        return (RedisBus(url, prefix, NodeInfo("a", "", 0.0)), RedisBus(url, prefix, NodeInfo("b", "", 0.0)))
    broker = MemoryBroker(reactor, shared=True)
    return InProcessBus(broker, NodeInfo("a", "", 0.0)), InProcessBus(broker, NodeInfo("b", "", 0.0))


async def measure(kind: str, url: str, count: int) -> dict[str, float]:
    a, b = pair(kind, url)

    async def echo(body: dict[str, Any]) -> dict[str, Any]:
        return body

    b.serve("echo", echo)
    await a.start()
    await b.start()
    while not (a.connected and b.connected):
        await deferLater(reactor, 0.05)
    await deferLater(reactor, 0.3)
    trips = []
    for _ in range(count):
        start = time.perf_counter()
        await a.request("b", "echo", OFFER)
        trips.append((time.perf_counter() - start) * 1000)
    delays: list[float] = []
    b.on("probe", lambda event: delays.append((time.perf_counter() - event["t"]) * 1000))
    for _ in range(count):
        a.publish("probe", t=time.perf_counter())
        await deferLater(reactor, 0.002)
    await deferLater(reactor, 0.5)
    await a.stop()
    await b.stop()
    return {
        "request_median_ms": round(statistics.median(trips), 3),
        "request_p95_ms": round(sorted(trips)[int(len(trips) * 0.95)], 3),
        "event_median_ms": round(statistics.median(delays), 3) if delays else float("nan"),
    }


async def main(args: argparse.Namespace) -> None:
    try:
        results = {kind: await measure(kind, args.redis_url, args.count) for kind in ("in-process", "redis")}
        print(json.dumps(results, indent=2))
    finally:
        reactor.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--count", type=int, default=300)
    arguments = parser.parse_args()
    reactor.callWhenRunning(lambda: ensureDeferred(main(arguments)))
    reactor.run()
