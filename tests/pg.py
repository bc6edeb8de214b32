"""A private PostgreSQL cluster for the tests, and the parametrised index fixture.

``pg_cluster`` (one per xdist worker, for the session) runs Debian's PostgreSQL binaries
(``/usr/lib/postgresql/<version>/bin``) as the ``postgres`` user (PostgreSQL refuses to run as root, and
the tests run as root): ``initdb`` into a temporary directory owned by ``postgres``, listening on
127.0.0.1 only (no Unix socket), on a port from ``free_port``, with fsync off (tests only: a crash of the
cluster loses nothing a test keeps). It is stopped and removed at the end of the session. Missing binaries
are a failure naming the Debian package, never a skip.

``index_url`` is parametrised over the two engines, ``sqlite`` and ``postgresql``: on ``postgresql`` it
creates a fresh database and sets ``DICOMFLOW_INDEX__URL`` for the test (so every ``Settings()`` the test
builds uses it); on ``sqlite`` it leaves the default (the data directory's SQLite file). The database is a
copy of one migrated once per cluster (Alembic's upgrade costs a second or more on PostgreSQL); ``pg_url``
gives an empty one, to test migrations. A module runs its tests on both with
``pytestmark = pytest.mark.usefixtures("index_url")``.
"""

from __future__ import annotations

import contextlib
import gc
import glob
import itertools
import os
import shutil
import subprocess
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from dicomflow.index import create_index_engine, migrate

POSTGRES_USER = "postgres"
TEMPLATE = "dicomflow_head"  # migrated once per cluster; the databases of ``index_url`` are copies of it
ENGINES = ["sqlite", "postgresql"]


def postgres_bin_dir() -> Path:
    """The newest installed ``/usr/lib/postgresql/<version>/bin`` (Debian's layout)."""
    found = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"), key=lambda p: int(Path(p).parent.parent.name)
    )
    if not found:
        pytest.fail(
            "PostgreSQL binaries not found under /usr/lib/postgresql/*/bin: install Debian's `postgresql` "
            "(make system-deps)",
            pytrace=False,
        )
    return Path(found[-1]).parent


class PgCluster:
    """One PostgreSQL cluster on 127.0.0.1:``port``, its files in ``root`` (owned by ``postgres``)."""

    def __init__(self, bin_dir: Path, root: Path, port: int) -> None:
        self.bin_dir = bin_dir
        self.root = root
        self.port = port
        self.data_dir = root / "data"
        self._names = itertools.count(1)
        self._template = False

    def _run(self, *args: str, timeout: float = 60) -> None:
        done = subprocess.run(
            ["runuser", "-u", POSTGRES_USER, "--", *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            cwd=self.root,
        )
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(args)} failed ({done.returncode}):\n{done.stdout}{done.stderr}")

    def start(self) -> None:
        """``initdb`` (trust authentication: loopback only, tests only), then ``pg_ctl start``, waiting."""
        self._run(
            str(self.bin_dir / "initdb"),
            "-D",
            str(self.data_dir),
            "-U",
            POSTGRES_USER,
            "--auth=trust",
            "--encoding=UTF8",
            "--locale=C",
            "--no-sync",
        )
        options = " ".join(
            [
                "-c listen_addresses=127.0.0.1",
                f"-c port={self.port}",
                "-c unix_socket_directories=''",
                "-c fsync=off",
                "-c synchronous_commit=off",
                "-c full_page_writes=off",
                "-c max_connections=300",
                "-c shared_buffers=32MB",
            ]
        )
        self._run(
            str(self.bin_dir / "pg_ctl"),
            "-D",
            str(self.data_dir),
            "-l",
            str(self.root / "server.log"),
            "-o",
            options,
            "-w",
            "start",
        )

    def stop(self) -> None:
        """Stop the cluster (immediate: nothing in it is kept) and remove its files."""
        with contextlib.suppress(RuntimeError, subprocess.TimeoutExpired):
            self._run(str(self.bin_dir / "pg_ctl"), "-D", str(self.data_dir), "-m", "immediate", "stop")
        shutil.rmtree(self.root, ignore_errors=True)

    def url(self, database: str = "postgres") -> str:
        """The SQLAlchemy URL of a database of the cluster."""
        return f"postgresql+psycopg://{POSTGRES_USER}@127.0.0.1:{self.port}/{database}"

    def execute(self, sql: str) -> None:
        """Run one statement outside a transaction (``CREATE DATABASE`` needs that) as the superuser."""
        import psycopg

        with psycopg.connect(
            host="127.0.0.1", port=self.port, user=POSTGRES_USER, dbname="postgres", autocommit=True
        ) as conn:
            conn.execute(sql.encode())

    def create_database(self, *, migrated: bool = False) -> str:
        """A new database, empty or (``migrated``) a copy of one migrated to the head revision; its URL."""
        name = f"t{os.getpid()}_{next(self._names)}"
        if not migrated:
            self.execute(f"CREATE DATABASE {name}")
            return self.url(name)
        if not self._template:
            self.execute(f"CREATE DATABASE {TEMPLATE}")
            engine = create_index_engine(self.url(TEMPLATE))
            try:
                migrate(engine)
            finally:
                engine.dispose()
            self._template = True
        self.execute(f"CREATE DATABASE {name} TEMPLATE {TEMPLATE} STRATEGY FILE_COPY")
        return self.url(name)

    def connections(self, url: str) -> int:
        """How many sessions are connected to a database of the cluster."""
        import psycopg

        name = url.rsplit("/", 1)[1]
        with psycopg.connect(host="127.0.0.1", port=self.port, user=POSTGRES_USER, dbname="postgres") as conn:
            query = b"SELECT count(*) FROM pg_stat_activity WHERE datname = %s"
            found = conn.execute(query, (name,)).fetchone()
        return int(found[0]) if found else 0

    def drop_database(self, url: str) -> None:
        """Drop a database made by :meth:`create_database`, closing the connections still open to it."""
        name = url.rsplit("/", 1)[1]
        with contextlib.suppress(Exception):
            self.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture(scope="session")
def pg_cluster(free_port: Callable[[], int]) -> Iterator[PgCluster]:
    """This worker's PostgreSQL cluster, started on first use and stopped at the end of the session."""
    bin_dir = postgres_bin_dir()
    root = Path(tempfile.mkdtemp(prefix="dicomflow-pg-"))
    shutil.chown(root, POSTGRES_USER, POSTGRES_USER)
    cluster = PgCluster(bin_dir, root, free_port())
    try:
        started = time.monotonic()
        cluster.start()
        assert time.monotonic() - started < 60
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def pg_url(pg_cluster: PgCluster) -> Iterator[str]:
    """A fresh, empty PostgreSQL database for one test (dropped after it)."""
    url = pg_cluster.create_database()
    yield url
    _collect_connections()
    pg_cluster.drop_database(url)


def _engine_url(request: pytest.FixtureRequest) -> Iterator[str]:
    if request.param == "sqlite":
        yield ""
        return
    cluster: PgCluster = request.getfixturevalue("pg_cluster")
    url = cluster.create_database(migrated=True)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DICOMFLOW_INDEX__URL", url)
        yield url
    _collect_connections()  # always: a leaked psycopg connection warns when freed, listed or not
    cluster.drop_database(url)


def _collect_connections() -> None:
    """Close the connections of engines a test left to the garbage collector (an engine the test did not
    dispose of). psycopg warns when it closes one, which pytest would report against whichever later test
    the collector happens to run in; SQLite closes them silently."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        gc.collect()  # about 0.1 s


@pytest.fixture(params=ENGINES)
def index_url(request: pytest.FixtureRequest) -> Iterator[str]:
    """The index of one test on each engine: ``""`` (SQLite in the data directory) or a fresh PostgreSQL
    database, whose URL is also ``DICOMFLOW_INDEX__URL`` during the test."""
    yield from _engine_url(request)
