"""The HTTP API's processes share the listening socket: a client opening many connections at once is served
by all of them, not by the first to wake (which, left to its event loop, accepts every pending one)."""

from __future__ import annotations

import os
import socket
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest

from factories import DicomflowServer

pytestmark = pytest.mark.e2e

CONNECTIONS = 8


def _established_on(port: int) -> set[str]:
    """Socket inodes of established TCP connections whose local port is ``port`` (the server's side)."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if int(fields[1].rsplit(":", 1)[1], 16) == port and fields[3] == "01":
                inodes.add(fields[9])
    return inodes


def _connections_by_process(server: DicomflowServer) -> Counter[int]:
    """How many of the HTTP port's connections each process of the server holds."""
    assert server.process is not None
    inodes = _established_on(server.http_port)
    counts: Counter[int] = Counter()
    for entry in Path("/proc").iterdir():
        try:
            if not entry.name.isdigit() or os.getpgid(int(entry.name)) != server.process.pid:
                continue
            targets = [os.readlink(fd) for fd in (entry / "fd").iterdir()]
        except OSError:  # a process that ended meanwhile
            continue
        counts[int(entry.name)] += sum(1 for t in targets if t.startswith("socket:[") and t[8:-1] in inodes)
    return +counts  # processes holding none left out


def test_connections_opened_at_once_are_spread_over_the_api_processes(
    make_server: Callable[..., DicomflowServer],
) -> None:
    server = make_server(DICOMFLOW_HTTP__WORKERS="2")
    clients = [socket.socket() for _ in range(CONNECTIONS)]
    try:
        for client in clients:  # all pending before any is accepted
            client.setblocking(False)
            client.connect_ex(("127.0.0.1", server.http_port))
        for client in clients:
            client.setblocking(True)
            client.settimeout(10)
            client.sendall(b"GET /health HTTP/1.1\r\nHost: dicomflow\r\n\r\n")
        assert all(client.recv(4096).startswith(b"HTTP/1.1 200") for client in clients)

        held = _connections_by_process(server)

        assert sum(held.values()) == CONNECTIONS
        assert len(held) == 2 and max(held.values()) <= CONNECTIONS - 2, held
    finally:
        for client in clients:
            client.close()
