"""
The reactor-lag monitor observes how late its timed calls run.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry
from twisted.internet.task import Clock
from twisted.trial.unittest import TestCase

from denoisecast.runtime.reactorlag import ReactorLagMonitor


class ReactorLagMonitorTests(TestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.registry = CollectorRegistry()
        self.monitor = ReactorLagMonitor(self.clock, self.registry, interval=0.05)

    def sample(self, suffix: str, **labels: str) -> float:
        value = self.registry.get_sample_value("denoisecast_reactor_lag_seconds" + suffix, labels)
        return 0.0 if value is None else value

    def test_on_time_calls_are_no_lag(self) -> None:
        self.monitor.startService()
        for _ in range(4):
            self.clock.advance(0.05)
        self.assertEqual(self.sample("_count"), 4)
        self.assertEqual(self.sample("_sum"), 0.0)

    def test_a_late_call_is_observed_with_its_lateness(self) -> None:
        self.monitor.startService()
        self.clock.advance(0.35)  # a reactor busy for 350 ms runs the 50 ms call 300 ms late
        self.assertEqual(self.sample("_count"), 1)
        self.assertAlmostEqual(self.sample("_sum"), 0.3)
        self.assertEqual(self.sample("_bucket", le="0.25"), 0)
        self.assertEqual(self.sample("_bucket", le="0.5"), 1)
        self.clock.advance(0.05)  # and the next one is asked for from then on
        self.assertEqual(self.sample("_count"), 2)
        self.assertAlmostEqual(self.sample("_sum"), 0.3)

    def test_stopping_cancels_the_call(self) -> None:
        self.monitor.startService()
        self.monitor.stopService()
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.clock.advance(1)
        self.assertEqual(self.sample("_count"), 0)
