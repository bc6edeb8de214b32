"""A real ``redis-server`` (Debian's), the broker of the Celery executor's tests.

One per xdist worker (session scope), on 127.0.0.1 at a port from ``free_port``, without persistence (no RDB
snapshot, no append-only file), stopped at the end of the session. Each test gets a database of its own,
emptied first (``redis_url``), so that no message of one test reaches the workers of another.
"""

from __future__ import annotations

import itertools
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis

from waiting import wait_until

DATABASES = 64


class RedisServer:
    """A running ``redis-server`` on 127.0.0.1."""

    def __init__(self, directory: Path, port: int) -> None:
        self.directory = directory
        self.port = port
        self.log = directory / "redis.log"
        self.process = subprocess.Popen(
            [
                "redis-server",
                "--bind", "127.0.0.1",
                "--port", str(port),
                "--save", "",
                "--appendonly", "no",
                "--databases", str(DATABASES),
                "--dir", str(directory),
                "--logfile", str(self.log),
            ],
            stdin=subprocess.DEVNULL,
        )  # fmt: skip
        wait_until(self._answers, timeout=20, message=self._failure)

    def _answers(self) -> bool:
        assert self.process.poll() is None, self._failure()
        try:
            return bool(redis.Redis(port=self.port, socket_timeout=1).ping())
        except redis.ConnectionError:
            return False

    def _failure(self) -> str:
        return f"redis-server on port {self.port} did not start: " + (
            self.log.read_text() if self.log.is_file() else ""
        )

    def url(self, db: int = 0) -> str:
        """The broker URL of database ``db``."""
        return f"redis://127.0.0.1:{self.port}/{db}"

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)


@pytest.fixture(scope="session")
def redis_server(
    tmp_path_factory: pytest.TempPathFactory, free_port: Callable[[], int]
) -> Iterator[RedisServer]:
    """This xdist worker's ``redis-server``."""
    server = RedisServer(tmp_path_factory.mktemp("redis"), free_port())
    try:
        yield server
    finally:
        server.stop()


_databases = itertools.cycle(range(DATABASES))


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    """The URL of an emptied database of this worker's ``redis-server``, the test's own."""
    db = next(_databases)
    client = redis.Redis(port=redis_server.port, db=db)
    client.flushdb()
    client.close()
    return redis_server.url(db)
