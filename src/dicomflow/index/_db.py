"""Engine creation, schema migration (Alembic, applied on start) and the transactions use cases open."""

from __future__ import annotations

import fcntl
import os
import sqlite3
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event, inspect, text
from sqlalchemy.exc import OperationalError
from sqlalchemy.pool import NullPool

from dicomflow.errors import IndexUnavailable

_MIGRATIONS = Path(__file__).with_name("migrations")
NEWEST_REVISION = max(
    p.name.split("_", 1)[0] for p in (_MIGRATIONS / "versions").glob("[0-9][0-9][0-9][0-9]_*.py")
)
"""The head revision: each migration is ``versions/<revision>_<slug>.py``, revisions numbered in order."""
MIGRATION_LOCK_KEY = 0x6469636F6D666C6F  # "dicomflo": the PostgreSQL advisory lock held while migrating
READ_ONLY = "dicomflow_read_only"  # execution option: this connection only reads
DIRECT_SQLITE = "dicomflow_direct_sqlite"  # execution option: ingest rows through sqlite3 (``_rows.py``)


def create_index_engine(url: str, *, sqlite_synchronous: str = "FULL", direct_sqlite: bool = False) -> Engine:
    """Create the SQLAlchemy engine of the index.

    SQLite runs in WAL mode with a busy timeout, so that several receiving processes and the API can write
    concurrently; PostgreSQL URLs are used as given, and ``sqlite_synchronous = NORMAL`` (the ingest's) makes
    commits asynchronous there (``synchronous_commit = off``), made durable per batch by
    :meth:`WriteLock.sync_log`, as with SQLite's NORMAL. ``direct_sqlite`` (the ingest's engine, with
    ``performance.fast_paths`` on) sends the ingest's per-instance statements to the ``sqlite3`` driver
    directly (``_rows.py``); otherwise they go through SQLAlchemy Core.
    """
    if url.startswith("postgresql") and sqlite_synchronous.upper() == "NORMAL":
        # the ingest's commits return before their WAL is on disk; WriteLock.sync_log makes a batch durable
        options = {"options": "-c synchronous_commit=off"}
        return create_engine(url, pool_pre_ping=True, connect_args=options)
    if not url.startswith("sqlite"):
        return create_engine(url, pool_pre_ping=True)
    if url.startswith("sqlite:///") and not url.startswith("sqlite:///:memory:"):
        Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url, poolclass=NullPool if ":memory:" in url else None)
    if direct_sqlite:
        engine.update_execution_options(**{DIRECT_SQLITE: True})
    synchronous = sqlite_synchronous.upper()
    if synchronous not in {"OFF", "NORMAL", "FULL", "EXTRA"}:
        raise ValueError(f"sqlite synchronous {sqlite_synchronous!r} is not OFF, NORMAL, FULL or EXTRA")

    @event.listens_for(engine, "connect")
    def _pragmas(dbapi_conn: sqlite3.Connection, _record: Any) -> None:
        dbapi_conn.isolation_level = None  # we issue BEGIN ourselves (below)
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute(f"PRAGMA synchronous={synchronous}")
        cur.execute("PRAGMA busy_timeout=30000")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.close()

    @event.listens_for(engine, "begin")
    def _begin(conn: Connection) -> None:
        # Writers take the write lock up front: a deferred transaction that reads, then writes, fails with
        # "database is locked" instead of waiting when another process wrote in between. Readers marked
        # READ_ONLY start a plain (deferred) transaction and never wait for a writer (WAL snapshots).
        conn.exec_driver_sql("BEGIN" if conn.get_execution_options().get(READ_ONLY) else "BEGIN IMMEDIATE")

    return engine


class WriteLock:
    """Serialises the write transactions of every dicomflow process on one SQLite file.

    SQLite lets one writer in at a time and makes the others poll with sleeps of 1, 2, 5, 10… ms; a
    kernel file lock (``flock``) instead wakes the next writer the moment the lock is free. Threads of
    one process queue on a thread lock first (``flock`` is per open file, not per thread). For other
    databases the lock does nothing.
    """

    def __init__(self, url: str, *, sqlite_synchronous: str = "FULL", engine: Engine | None = None) -> None:
        self._thread_lock = threading.Lock()
        self._fd: int | None = None
        self._wal: str | None = None
        self._postgres: _PostgresLog | None = None
        if (
            engine is not None
            and engine.dialect.name == "postgresql"
            and sqlite_synchronous.upper() == "NORMAL"
        ):
            self._postgres = _PostgresLog(engine)
        if url.startswith("sqlite:///") and ":memory:" not in url:
            path = url.removeprefix("sqlite:///")
            self._fd = os.open(path + ".writelock", os.O_RDWR | os.O_CREAT, 0o644)
            if sqlite_synchronous.upper() == "NORMAL":
                self._wal = path + "-wal"

    def __enter__(self) -> None:
        self._thread_lock.acquire()
        if self._fd is not None:
            try:
                fcntl.flock(self._fd, fcntl.LOCK_EX)
            except BaseException:
                self._thread_lock.release()
                raise

    def __exit__(self, *_exc: object) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
        self._thread_lock.release()

    def sync_log(self) -> None:
        """Make every transaction committed so far durable (with ``synchronous=NORMAL``).

        In WAL mode with ``synchronous=NORMAL`` SQLite commits without fsync; the blob store calls this
        once per batch of released blobs, before it drops their staged copies (see ``storage``).
        """
        if self._postgres is not None:
            self._postgres.sync()
        if self._wal is None:
            return
        try:
            fd = os.open(self._wal, os.O_RDONLY)
        except FileNotFoundError:  # checkpointed and removed: nothing is pending
            return
        try:
            os.fdatasync(fd)
        finally:
            os.close(fd)

    def close(self) -> None:
        """Close the lock file."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


class _PostgresLog:
    """Makes the asynchronous commits of one engine (``synchronous_commit = off``) durable.

    A transaction that has a transaction id and commits with ``synchronous_commit = on`` returns once the
    WAL is flushed through its commit record, so through every commit before it, of every session. That is
    one WAL flush per batch of released blobs, as the WAL fsync is on SQLite.

    A PostgreSQL server that restarted (a crash) may have lost commits it had acknowledged asynchronously,
    while this process kept running: their staged copies must stay, for recovery at the next start. So the
    start time of the server behind every connection the engine opened is kept, and a sync on a server
    whose start time is not the only one seen raises ``OSError``: the blob store then keeps the staged names
    (``dicomflow serve`` ingests any lost row again when it next starts).
    """

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.started: set[datetime] = set()
        event.listen(engine, "connect", self._connected)

    def _connected(self, dbapi_conn: Any, _record: Any) -> None:
        cursor = dbapi_conn.cursor()
        cursor.execute("SELECT pg_postmaster_start_time()")
        self.started.add(cursor.fetchone()[0])
        cursor.close()
        dbapi_conn.rollback()

    def sync(self) -> None:
        try:
            with self.engine.connect() as conn:
                conn.exec_driver_sql("SET LOCAL synchronous_commit TO on")
                conn.exec_driver_sql("SELECT pg_current_xact_id()")  # a transaction id: a commit record
                started = conn.exec_driver_sql("SELECT pg_postmaster_start_time()").scalar_one()
                conn.commit()
        except OperationalError as exc:
            raise OSError(f"cannot make the index's commits durable: {exc.orig}") from exc
        if self.started != {started}:
            raise OSError(
                "the PostgreSQL server restarted while this process ran: commits it acknowledged may be "
                "lost, so staged copies are kept until dicomflow restarts and recovers them"
            )


def migrate(engine: Engine, *, blob_read: Callable[[str], bytes] | None = None) -> None:
    """Bring the schema to the newest Alembic revision.

    ``blob_read`` (the blob store's ``get``) lets a revision that derives data from the stored files
    fill existing rows (0006: the series headers); without it they are filled later, when first read.
    An index already at the newest revision is left alone without importing Alembic (12 MiB in every
    process of ``dicomflow serve`` otherwise; a process forked later inherits it).
    """
    if schema_revisions(engine) == [NEWEST_REVISION]:
        return
    from alembic import command  # only when the schema must change
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(_MIGRATIONS))
    with engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            # Any number of servers may start at once on one database: each waits here for the one
            # migrating (a transaction-scoped advisory lock, released at its commit or when its connection
            # dies), then finds the schema at head. On SQLite, BEGIN IMMEDIATE serialises them already.
            connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK_KEY})
            if _revisions(connection) == [NEWEST_REVISION]:
                return
        config.attributes["connection"] = connection
        config.attributes["blob_read"] = blob_read
        command.upgrade(config, "head")


@contextmanager
def reading(engine: Engine) -> Iterator[Connection]:
    """A connection for one short read; database failures become :class:`IndexUnavailable`."""
    try:
        with engine.connect().execution_options(**{READ_ONLY: True}) as conn:
            yield conn
    except OperationalError as exc:
        raise IndexUnavailable(f"the index could not answer: {exc.orig}") from exc


@contextmanager
def writing(engine: Engine) -> Iterator[Connection]:
    """A connection in one short transaction, committed on success; failures become :class:`IndexUnavailable`.

    An ``IntegrityError`` is left to the caller, who knows which name clashed.
    """
    try:
        with engine.begin() as conn:
            yield conn
    except OperationalError as exc:
        raise IndexUnavailable(f"the index could not commit: {exc.orig}") from exc


def as_utc(value: datetime) -> datetime:
    """Attach UTC to a naive timestamp read back from SQLite (the index stores UTC only)."""
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def schema_revisions(engine: Engine) -> list[str]:
    """The Alembic revisions the index is at (none for an empty database; one unless branches were merged)."""
    with engine.connect().execution_options(**{READ_ONLY: True}) as conn:
        return _revisions(conn)


def _revisions(conn: Connection) -> list[str]:
    if not inspect(conn).has_table("alembic_version"):
        return []
    return sorted(conn.execute(text("SELECT version_num FROM alembic_version")).scalars())
