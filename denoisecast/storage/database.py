"""
The database: a SQLAlchemy engine and the thread pool its work runs on.

The reactor thread never touches the database.  Every interaction is a
plain function of a SQLAlchemy connection, run in one transaction on a
dedicated thread pool; such functions are named ``thd_*`` and return plain
data (dicts, tuples), never ORM objects, so nothing tied to a connection
escapes its thread.

SQLite needs two accommodations: connections are shared across the pool's
threads, and writing transactions start with ``BEGIN IMMEDIATE`` so two
threads that both read then write cannot deadlock on the upgrade from a
read lock to a write lock (WAL readers never block, so reads stay
concurrent).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from sqlalchemy import Connection, create_engine, event
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorFromThreads
from twisted.internet.threads import deferToThreadPool
from twisted.python.failure import Failure
from twisted.python.threadpool import ThreadPool

from denoisecast.runtime.logs import logger

T = TypeVar("T")

_IMMEDIATE = "denoisecast_immediate"
#: Seconds to wait for a PostgreSQL server to accept a connection (a URL's own
#: ``?connect_timeout=`` wins).
CONNECT_TIMEOUT_SECONDS = 10


def make_engine(url: str) -> Engine:
    if url.startswith("sqlite"):
        engine = create_engine(
            url,
            connect_args={"check_same_thread": False, "timeout": 30},
        )
        _configure_sqlite(engine)
        return engine
    # A server that does not answer fails a connection within seconds (libpq
    # would wait for the operating system's TCP timeout, minutes): at start-up
    # that is the difference between a clear exit and a silent hang.
    connect_args = {}
    if url.startswith("postgresql") and "connect_timeout" not in url:
        connect_args["connect_timeout"] = CONNECT_TIMEOUT_SECONDS
    return create_engine(url, pool_pre_ping=True, pool_size=8, max_overflow=4, connect_args=connect_args)


def _configure_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def on_connect(dbapi_connection: Any, record: Any) -> None:
        # Let SQLAlchemy, not the driver, decide when transactions begin.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.close()

    @event.listens_for(engine, "begin")
    def on_begin(connection: Connection) -> None:
        if connection.get_execution_options().get(_IMMEDIATE):
            connection.exec_driver_sql("BEGIN IMMEDIATE")
        else:
            connection.exec_driver_sql("BEGIN")


class Database:
    """
    An engine plus the thread pool that runs its transactions.

    @ivar engine: the SQLAlchemy engine; use it only from pool threads.
    """

    log = logger()

    def __init__(
        self,
        url: str,
        reactor: IReactorFromThreads,
        max_threads: int = 8,
    ) -> None:
        self.url = url
        self.engine = make_engine(url)
        self.dialect = self.engine.dialect.name
        self._reactor = reactor
        self._pool = ThreadPool(minthreads=1, maxthreads=max_threads, name="denoisecast-db")
        self._started = False
        #: Operations that failed with a database error, for the metrics.
        self.errors = 0

    def start(self) -> None:
        if not self._started:
            self._pool.start()
            self._started = True

    def stop(self) -> None:
        """
        Join the pool's threads (waiting for running interactions) and close
        every pooled connection.
        """
        if self._started:
            self._started = False
            self._pool.stop()
        self.engine.dispose()

    def run(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> "Deferred[T]":
        """
        Run C{fn(*args, **kwargs)} on the database pool, outside any transaction.
        """
        return deferToThreadPool(self._reactor, self._pool, fn, *args, **kwargs).addErrback(self._count_error)

    def _count_error(self, failure: Failure) -> Failure:
        """Count database errors (not the domain errors a C{thd_*} raises) for the metrics."""
        if failure.check(SQLAlchemyError):
            self.errors += 1
        return failure

    def read(self, fn: Callable[..., T], *args: Any) -> "Deferred[T]":
        """
        Run C{fn(connection, *args)} in a read transaction on the pool.
        """
        return self.run(self._transaction, False, fn, *args)

    def write(self, fn: Callable[..., T], *args: Any) -> "Deferred[T]":
        """
        Run C{fn(connection, *args)} in a writing transaction on the pool.
        """
        return self.run(self._transaction, True, fn, *args)

    def _transaction(self, writes: bool, fn: Callable[..., T], *args: Any) -> T:
        with self.engine.connect() as connection:
            if writes:
                connection = connection.execution_options(**{_IMMEDIATE: True})
            with connection.begin():
                return fn(connection, *args)
