"""Fixtures of every test: strict pydicom writing, free loopback ports, and the real server in a subprocess.

``server`` (one per test module) runs ``dicomflow serve`` on a fresh data directory with two receiving
processes, an admin user and a token, and stops it in teardown; ``make_server`` gives a test its own servers,
which it may kill and restart. At the end of the session no server process may be left.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from pydicom import config

import factories
from factories import DicomflowServer

# the redis_server and redis_url fixtures; pg_cluster, pg_url and index_url (SQLite and PostgreSQL);
# s3_server and s3_bucket (moto's S3 server on loopback)
pytest_plugins = ["redis_server", "pg", "s3"]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Keep the tests of a module that share a module-scoped fixture (``server`` and the like: a running
    server) on one xdist worker (``--dist loadgroup``), so that each such server starts once, not once per
    worker; every other test is handed to whichever worker is free."""
    for item in items:
        fixtures = getattr(item, "_fixtureinfo", None)
        definitions = fixtures.name2fixturedefs.values() if fixtures is not None else []
        if any(defs[-1].scope == "module" for defs in definitions):
            item.add_marker(pytest.mark.xdist_group(item.nodeid.split("::")[0]))


@pytest.fixture(autouse=True)
def strict_pydicom_writing() -> Iterator[None]:
    """pydicom raises on invalid values written by a test (tests that want bad values switch it off)."""
    previous = config.settings.writing_validation_mode
    config.settings.writing_validation_mode = config.RAISE
    yield
    config.settings.writing_validation_mode = previous


# Ports handed to servers: below the kernel's ephemeral range (32768-60999), so that no client socket of
# any process takes one between the test choosing it and the server binding it; one block per xdist worker.
PORT_BLOCK_START, PORT_BLOCK_SIZE = 20000, 1500


def _worker_number() -> int:
    """This xdist worker's number (``gw3`` -> 3), 0 without xdist."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
    return int(worker.removeprefix("gw") or 0)


@pytest.fixture(scope="session")
def free_port() -> Callable[[], int]:
    """A function returning a free TCP port on 127.0.0.1, never the same twice in a session.

    Each xdist worker draws from its own block of ports (starting at a random place in it, since other
    checkouts run tests on the machine too) and checks that the port can be bound.
    """
    import random
    import socket

    blocks = (32768 - PORT_BLOCK_START) // PORT_BLOCK_SIZE
    first = PORT_BLOCK_START + (_worker_number() % blocks) * PORT_BLOCK_SIZE
    block = list(range(first, first + PORT_BLOCK_SIZE))
    start = random.randrange(PORT_BLOCK_SIZE)
    candidates = iter(block[start:] + block[:start])

    def pick() -> int:
        for port in candidates:
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
                try:
                    sock.bind(("127.0.0.1", port))
                except OSError:
                    continue
            return port
        raise RuntimeError(f"no free port left in {first}-{first + PORT_BLOCK_SIZE - 1}")

    return pick


@pytest.fixture(scope="session", autouse=True)
def no_server_left_behind(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Fail the session if any ``dicomflow serve`` of ours is still running at its end (and kill it)."""
    yield
    pattern = f"dicomflow serve --data-dir {re.escape(str(tmp_path_factory.getbasetemp()))}"
    found = subprocess.run(["pgrep", "-f", pattern], capture_output=True, text=True, check=False)
    pids = [int(pid) for pid in found.stdout.split()]
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    assert not pids, f"server processes left behind: {pids}"


@pytest.fixture
def make_server(
    tmp_path_factory: pytest.TempPathFactory, free_port: Callable[[], int]
) -> Iterator[Callable[..., DicomflowServer]]:
    """A function that starts a server of the test's own (``make_server(**env)``); all are stopped after."""
    started: list[DicomflowServer] = []

    def make(**env: str) -> DicomflowServer:
        server = DicomflowServer(tmp_path_factory.mktemp("server") / "data", free_port(), free_port(), env)
        started.append(server)
        server.start()
        return server

    yield make
    for server in started:
        server.stop()


@pytest.fixture(scope="module")
def server(
    tmp_path_factory: pytest.TempPathFactory, free_port: Callable[[], int]
) -> Iterator[DicomflowServer]:
    """A running server shared by the tests of one module (tests use fresh UIDs, so they do not collide)."""
    running = DicomflowServer(tmp_path_factory.mktemp("server") / "data", free_port(), free_port())
    try:
        running.start()
        yield running
    finally:
        running.stop()


@pytest.fixture
def dciodvfy() -> Callable[[Path], tuple[list[str], list[str]]]:
    """``factories.dciodvfy``: the Error and Warning lines of dicom3tools' validator on a file."""
    return factories.dciodvfy
