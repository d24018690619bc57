"""
The password queue on a fake clock: priority, and 503 with Retry-After at
once when the wait would be too long.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from denoisecast.errors import DenoiseCastError
from denoisecast.handlers.passwordqueue import PasswordQueue, Priority


class FakeLanes:
    """
    Jobs start when the queue hands them over and finish when the test says.
    """

    def __init__(self) -> None:
        self.started: list[tuple[str, Deferred[Any]]] = []

    def run(self, fn: Any, *args: Any) -> Deferred[Any]:
        done: Deferred[Any] = Deferred()
        self.started.append((fn(*args), done))
        return done

    def finish_next(self, clock: Clock, seconds: float) -> None:
        clock.advance(seconds)
        name, done = next((n, d) for n, d in self.started if not d.called)
        done.callback(name)


class QueueTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.lanes = FakeLanes()
        self.queue = PasswordQueue(self.clock, self.lanes.run, lanes=1, max_wait=10.0)
        self.queue.job_seconds = 1.0

    def submit(self, priority: Priority, name: str) -> Deferred[Any]:
        return self.queue.submit(priority, lambda: name)

    def test_logins_before_registrations(self) -> None:
        """
        Queued logins start before registrations that arrived earlier;
        within a priority, first come first served.
        """
        results: list[str] = []
        self.submit(Priority.REGISTRATION, "r0").addCallback(results.append)
        for name in ["r1", "r2"]:
            self.submit(Priority.REGISTRATION, name).addCallback(results.append)
        for name in ["l1", "l2"]:
            self.submit(Priority.LOGIN, name).addCallback(results.append)
        for _ in range(5):
            self.lanes.finish_next(self.clock, 1.0)
        self.assertEqual(results, ["r0", "l1", "l2", "r1", "r2"])

    def test_full_queue_answers_503_at_once(self) -> None:
        """
        With one-second jobs and a ten-second limit, the eleventh waiting
        login is refused at once with 503 and a Retry-After of the time the
        queue needs; nothing is queued for it.  Registrations get half the
        room.
        """
        self.submit(Priority.LOGIN, "running")
        for n in range(10):
            self.submit(Priority.LOGIN, f"l{n}")
        with self.assertRaises(DenoiseCastError) as caught:
            self.submit(Priority.LOGIN, "too many")
        self.assertEqual((caught.exception.status, caught.exception.code), (503, "busy"))
        self.assertEqual(caught.exception.headers["Retry-After"], "11")
        self.assertEqual(self.queue.waiting, 10)
        self.assertEqual(self.queue.refused, 1)
        with self.assertRaises(DenoiseCastError):
            self.submit(Priority.REGISTRATION, "sign-up")

    def test_registrations_leave_room_for_logins(self) -> None:
        """
        Registrations stop being queued at half the limit; logins still are.
        """
        self.submit(Priority.REGISTRATION, "running")
        for n in range(5):
            self.submit(Priority.REGISTRATION, f"r{n}")
        with self.assertRaises(DenoiseCastError):
            self.submit(Priority.REGISTRATION, "r5")
        self.submit(Priority.LOGIN, "login")  # ahead of every registration: no wait to speak of
        self.assertEqual(self.queue.waiting, 6)

    def test_job_time_learned(self) -> None:
        """
        The expected wait follows how long jobs really take: after slow
        jobs the queue refuses sooner, after fast ones it takes more.
        """
        self.queue.job_seconds = 0.1
        for n in range(4):
            self.submit(Priority.LOGIN, f"l{n}")
        for _ in range(4):
            self.lanes.finish_next(self.clock, 5.0)
        self.assertGreater(self.queue.job_seconds, 2.0)
        self.submit(Priority.LOGIN, "running")
        for n in range(3):
            self.submit(Priority.LOGIN, f"w{n}")
        with self.assertRaises(DenoiseCastError):
            self.submit(Priority.LOGIN, "late")

    def test_failures_passed_on(self) -> None:
        """
        A job that raises fails its own Deferred and frees the lane.
        """
        queue = PasswordQueue(self.clock, lambda fn, *a: Deferred.fromCoroutine(_raise()), lanes=1)
        failed = queue.submit(Priority.LOGIN, lambda: None)
        self.failureResultOf(failed, ValueError)
        self.assertEqual(queue.waiting, 0)


async def _raise() -> None:
    raise ValueError("boom")
