"""Failed logins are counted in the index, so the HTTP processes of ``dicomflow serve`` throttle together:
failures sent to two processes lock the account in both, though neither saw enough of them by itself."""

from __future__ import annotations

import http.client
import json
import os
import socket
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from factories import ADMIN_EMAIL, ADMIN_PASSWORD, DicomflowServer

pytestmark = pytest.mark.e2e

CONNECTIONS = 8
LOGIN = "/authentication-service/api/v1/sessions"
_ByProcess = dict[int, list[http.client.HTTPConnection]]  # connections by the pid of the process serving them


def _server_inode(server_port: int, client_port: int) -> str:
    """The socket inode of the server's side of the connection from ``client_port``."""
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            local, remote = (int(f.rsplit(":", 1)[1], 16) for f in fields[1:3])
            if (local, remote) == (server_port, client_port) and fields[3] == "01":
                return fields[9]
    raise AssertionError(f"no connection from port {client_port}")


def _process_of(server: DicomflowServer, inode: str) -> int:
    assert server.process is not None
    for entry in Path("/proc").iterdir():
        try:
            if not entry.name.isdigit() or os.getpgid(int(entry.name)) != server.process.pid:
                continue
            if any(os.readlink(fd) == f"socket:[{inode}]" for fd in (entry / "fd").iterdir()):
                return int(entry.name)
        except OSError:  # a process that ended meanwhile
            continue
    raise AssertionError(f"no process holds socket {inode}")


def _connect(
    server: DicomflowServer, sockets: list[socket.socket]
) -> dict[int, list[http.client.HTTPConnection]]:
    """Open CONNECTIONS at once (all pending before any is accepted) and group them by serving process."""
    batch = [socket.socket() for _ in range(CONNECTIONS)]
    sockets.extend(batch)
    for sock in batch:
        sock.setblocking(False)
        sock.connect_ex(("127.0.0.1", server.http_port))
    by_process: dict[int, list[http.client.HTTPConnection]] = {}
    for sock in batch:
        sock.setblocking(True)
        sock.settimeout(30)
        connection = http.client.HTTPConnection("127.0.0.1", server.http_port, timeout=30)
        connection.sock = sock
        connection.request("GET", "/health")
        connection.getresponse().read()
        pid = _process_of(server, _server_inode(server.http_port, sock.getsockname()[1]))
        by_process.setdefault(pid, []).append(connection)
    return by_process


def _connections_on_two_processes(server: DicomflowServer, sockets: list[socket.socket]) -> _ByProcess:
    """Connections served by both HTTP processes: the server answers once one process is up, so a batch may
    go to that one alone while the other still starts; then another batch, until both serve."""
    deadline = time.monotonic() + 60
    while len(by_process := _connect(server, sockets)) < 2 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert len(by_process) == 2, {pid: len(c) for pid, c in by_process.items()}
    return by_process


def _login(connection: http.client.HTTPConnection, password: str) -> http.client.HTTPResponse:
    body = json.dumps({"email": ADMIN_EMAIL, "password": password})
    connection.request("POST", LOGIN, body, {"Content-Type": "application/json"})
    response = connection.getresponse()
    response.read()
    return response


def test_failed_logins_on_two_processes_lock_the_account_in_both(
    make_server: Callable[..., DicomflowServer],
) -> None:
    server = make_server(
        DICOMFLOW_HTTP__WORKERS="2",
        DICOMFLOW_HTTP__LOGIN_MAX_FAILURES="3",
        DICOMFLOW_HTTP__LOGIN_LOCKOUT="60",
    )
    sockets: list[socket.socket] = []
    try:
        by_process = _connections_on_two_processes(server, sockets)
        first, second = (connections[0] for connections in by_process.values())

        # 2 + 1 failures, alternating (the server closes a connection idle for 5 s): neither saw 3
        assert [_login(c, "wrong").status for c in (first, second, first)] == [401, 401, 401]

        for connection in (second, first):
            throttled = _login(connection, ADMIN_PASSWORD)
            assert throttled.status == 429
            assert 1 <= int(throttled.headers["Retry-After"]) <= 60
    finally:
        for sock in sockets:
            sock.close()
