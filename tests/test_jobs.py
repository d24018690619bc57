"""
SerialJobs: ordered jobs on a shared pool, and waiting for them from the
reactor without holding a pool thread.
"""

from __future__ import annotations

import threading

from twisted.internet import reactor
from twisted.python.threadpool import ThreadPool
from twisted.trial.unittest import TestCase

from denoisecast.runtime.jobs import SerialJobs


class FlushedTests(TestCase):
    def pool(self, threads: int) -> ThreadPool:
        pool = ThreadPool(minthreads=0, maxthreads=threads, name="test-jobs")
        pool.start()
        self.addCleanup(pool.stop)
        return pool

    async def test_fires_on_the_reactor_after_the_jobs_before_it(self) -> None:
        jobs = SerialJobs(self.pool(2))
        ran: list[int] = []
        release = threading.Event()
        jobs.submit(release.wait)
        for i in range(3):
            jobs.submit(lambda i=i: ran.append(i))
        done = jobs.flushed(reactor)
        self.assertFalse(done.called)
        release.set()
        await done
        self.assertEqual(ran, [0, 1, 2])
        self.assertIs(threading.current_thread(), threading.main_thread())

    async def test_many_waits_on_a_one_thread_pool(self) -> None:
        """Every queue's marker fires, before and after its jobs, on a pool of one thread."""
        pool = self.pool(1)
        queues = [SerialJobs(pool) for _ in range(3)]
        waits = [jobs.flushed(reactor) for jobs in queues]
        ran: list[int] = []
        for i, jobs in enumerate(queues):
            jobs.submit(lambda i=i: ran.append(i))
        for wait in waits:
            await wait
        again = [jobs.flushed(reactor) for jobs in queues]
        for wait in again:
            await wait
        self.assertEqual(sorted(ran), [0, 1, 2])
