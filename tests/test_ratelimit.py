"""
The sliding-window failure limiter, on a fake clock.
"""

from __future__ import annotations

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from denoisecast.runtime.ratelimit import FailureLimiter


class FailureLimiterTests(SynchronousTestCase):
    def test_limit_and_window(self) -> None:
        """
        The N-th failure inside the window blocks the key until the oldest
        failure leaves the window; Retry-After counts down to it.
        """
        clock = Clock()
        limiter = FailureLimiter(clock, max_failures=3, window=60)
        for _ in range(2):
            limiter.record_failure("k")
            clock.advance(10)
        self.assertIsNone(limiter.retry_after("k"))
        limiter.record_failure("k")
        self.assertEqual(limiter.retry_after("k"), 40)
        clock.advance(39.5)
        self.assertEqual(limiter.retry_after("k"), 1)
        clock.advance(0.5)
        self.assertIsNone(limiter.retry_after("k"))

    def test_keys_independent_and_reset(self) -> None:
        """
        Keys do not share counts; reset clears one key.
        """
        clock = Clock()
        limiter = FailureLimiter(clock, max_failures=1, window=60)
        limiter.record_failure("a")
        self.assertIsNotNone(limiter.retry_after("a"))
        self.assertIsNone(limiter.retry_after("b"))
        limiter.reset("a")
        self.assertIsNone(limiter.retry_after("a"))

    def test_memory_released(self) -> None:
        """
        Keys whose failures have all expired are forgotten.
        """
        clock = Clock()
        limiter = FailureLimiter(clock, max_failures=5, window=10)
        for n in range(100):
            limiter.record_failure(n)
        clock.advance(11)
        for n in range(100):
            limiter.retry_after(n)
        self.assertEqual(limiter._failures, {})
