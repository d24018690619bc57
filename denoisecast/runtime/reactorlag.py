"""
How late the reactor runs its timed calls: the one number that says whether
the event loop keeps up.

Everything on the live path shares the reactor thread (signaling, ICE,
DTLS, decoding, fan-out), and a late loop means late audio and, past
0.5 s, ICE consent checks that time out; CPU figures cannot show it,
because a loop can be late while the process waits for the GIL with cores
idle.  The monitor asks for a call every ``interval`` seconds and observes
how much later than asked it ran.  It cannot see everything: a loop that
runs its timers on time may still read a busy socket too slowly, which is
why the peer connections' sockets drain on read (``live/rtc/sockets.py``).
"""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Histogram
from twisted.application.service import Service
from twisted.internet.interfaces import IDelayedCall, IReactorTime

#: From "fine" (a millisecond) to "peers are being dropped" (an aioice consent
#: check gives up after 0.5 s).
LAG_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class ReactorLagMonitor(Service):
    """Observes the reactor's lateness into ``denoisecast_reactor_lag_seconds``."""

    name = "reactor-lag"

    def __init__(self, clock: IReactorTime, registry: CollectorRegistry, interval: float = 0.05) -> None:
        self.clock = clock
        self.interval = interval
        self.lag = Histogram(
            "denoisecast_reactor_lag_seconds",
            f"How much later than asked the reactor ran a call it was asked to make every {interval:g} s.",
            buckets=LAG_BUCKETS,
            registry=registry,
        )
        self._call: IDelayedCall | None = None
        self._due = 0.0

    def startService(self) -> None:
        super().startService()
        self._schedule()

    def stopService(self) -> Any:
        super().stopService()
        if self._call is not None and self._call.active():
            self._call.cancel()
        self._call = None

    def _schedule(self) -> None:
        self._due = self.clock.seconds() + self.interval
        self._call = self.clock.callLater(self.interval, self._tick)

    def _tick(self) -> None:
        self.lag.observe(max(0.0, self.clock.seconds() - self._due))
        self._schedule()
