"""
The sliding-window failure limiter, on a fake clock, and the text of its keys.
"""

from __future__ import annotations

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from denoisecast.runtime.ratelimit import FailureLimiter, key_from_text, key_text, new_failure_id


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

    def test_retry_after_counts_from_the_failure_that_frees_a_try(self) -> None:
        """
        Failures beyond the limit (told by other nodes at once) keep the
        key waiting until enough of them have left the window, not just
        the oldest; only the newest C{max_failures} are kept.
        """
        clock = Clock()
        limiter = FailureLimiter(clock, max_failures=2, window=60)
        for _ in range(4):
            limiter.apply("failure", "k", new_failure_id())
            clock.advance(10)
        self.assertEqual(limiter.retry_after("k"), 40)  # at 40, the third failure (at 20) leaves at 80
        self.assertEqual(len(limiter._failures["k"]), 2)

    def test_a_failure_counts_once_by_its_id(self) -> None:
        """
        A failure that reaches a node twice (over the bus, then in a load
        from the store) counts once; an older one goes in time order.
        """
        clock = Clock()
        clock.advance(100)
        limiter = FailureLimiter(clock, max_failures=3, window=60)
        limiter.apply("failure", "k", "one")
        limiter.apply("failure", "k", "one")
        self.assertIsNone(limiter.retry_after("k"))
        limiter.merge({"k": {"one": 0.0, "two": 30.0}})
        self.assertIsNone(limiter.retry_after("k"))
        limiter.apply("failure", "k", "three", age=10.0)
        self.assertEqual(limiter.retry_after("k"), 30)  # "two" (30 s old) is the oldest
        self.assertEqual([failure_id for _, failure_id in limiter._failures["k"]], ["two", "three", "one"])

    def test_merge_returns_what_the_store_lacks(self) -> None:
        """
        A load adds the stored failures (aged, dropping those already out
        of the window) and returns the ones only memory holds, with their
        ages, to be written back.
        """
        clock = Clock()
        clock.advance(1000)
        limiter = FailureLimiter(clock, max_failures=5, window=60)
        seen: list[tuple[str, object, str]] = []
        limiter.observers.append(lambda change, key, failure_id: seen.append((change, key, failure_id)))
        limiter.record_failure(("password_check", 7))
        made = seen[0][2]
        clock.advance(5)
        missing = limiter.merge({("password_check", 7): {"stored": 1.0}, 9: {"gone": 61.0, "kept": 59.0}})
        self.assertEqual(missing, [(("password_check", 7), made, 5.0)])
        self.assertEqual([f for _, f in limiter._failures[("password_check", 7)]], [made, "stored"])
        self.assertEqual([f for _, f in limiter._failures[9]], ["kept"])
        self.assertEqual(len(seen), 1)  # merging tells no one

    def test_reset_and_observers(self) -> None:
        """
        Observers hear each failure (with its id) and reset made here; one
        that raises is logged and does not reach the caller (a login).
        """
        clock = Clock()
        limiter = FailureLimiter(clock, max_failures=1, window=60)
        seen: list[tuple[str, object, str]] = []

        def broken(change: str, key: object, failure_id: str) -> None:
            raise RuntimeError("the bus is broken")

        limiter.observers += [broken, lambda change, key, failure_id: seen.append((change, key, failure_id))]
        limiter.record_failure("k")
        limiter.reset("k")
        self.assertEqual([(change, key) for change, key, _ in seen], [("failure", "k"), ("reset", "k")])
        self.assertEqual(len(seen[0][2]), 16)
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 2)
        limiter.apply("failure", "k", "x")
        limiter.apply("reset", "k")
        self.assertIsNone(limiter.retry_after("k"))
        self.assertEqual(len(seen), 2)


class KeyTextTests(SynchronousTestCase):
    def test_round_trip(self) -> None:
        """
        Every kind of key the limiters use comes back as it was, and keys
        that differ only in type (5 and "5") have different texts.
        """
        for key in ("address:2001:db8::/64", 5, ("password_check", 7), ("a", ("b", 1)), "naïve"):
            self.assertEqual(key_from_text(key_text(key)), key)
            self.assertTrue(key_text(key).isascii())
        self.assertNotEqual(key_text(5), key_text("5"))

    def test_refused(self) -> None:
        """Text that is no key's (another program's Redis key, an object) is refused with ValueError."""
        for text in ("not json", '{"a":1}', '[{"a":1}]'):
            self.assertRaises(ValueError, key_from_text, text)
