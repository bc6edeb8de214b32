"""The HTTP API's processes share the listening socket: a client opening many connections at once is served
by all of them, not by the first to wake (which, left to its event loop, accepts every pending one)."""

from __future__ import annotations

import os
import socket
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from dicomflow.client import Client
from factories import DicomflowServer, make_study, write_files

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
    # the server answers once one HTTP process is up; the other may still be starting: a batch taken by one
    # process alone is tried again (a minute at most), a batch both serve must be spread
    deadline = time.monotonic() + 60
    while len(held := _batch_by_process(server)) < 2 and time.monotonic() < deadline:
        time.sleep(0.2)

    assert sum(held.values()) == CONNECTIONS
    assert len(held) == 2 and max(held.values()) <= CONNECTIONS - 2, held


def _batch_by_process(server: DicomflowServer) -> dict[int, int]:
    """Open CONNECTIONS at once (all pending before any is accepted); how many each process holds."""
    clients = [socket.socket() for _ in range(CONNECTIONS)]
    try:
        for client in clients:
            client.setblocking(False)
            client.connect_ex(("127.0.0.1", server.http_port))
        for client in clients:
            client.setblocking(True)
            client.settimeout(10)
            client.sendall(b"GET /health HTTP/1.1\r\nHost: dicomflow\r\n\r\n")
        assert all(client.recv(4096).startswith(b"HTTP/1.1 200") for client in clients)
        return _connections_by_process(server)
    finally:
        for client in clients:
            client.close()


def test_with_fast_paths_off_stock_uvicorn_serves_the_api(
    make_server: Callable[..., DicomflowServer], tmp_path: Path
) -> None:
    """``performance.fast_paths`` off: the HTTP processes run stock uvicorn on the shared socket (none of
    uvicorn's internals used); the open and the authenticated routes answer, and an upload is imported."""
    server = make_server(DICOMFLOW_PERFORMANCE__FAST_PATHS="0", DICOMFLOW_HTTP__WORKERS="2")  # /health ok
    url = f"http://127.0.0.1:{server.http_port}"
    anonymous = httpx.get(f"{url}/api/v1/projects", timeout=10, trust_env=False)
    assert anonymous.status_code == 401
    server.http.post("/projects", json={"label": "stock"}).raise_for_status()
    assert "stock" in [project["label"] for project in server.http.get("/projects").json()]
    write_files(make_study(series=1, instances=3), tmp_path / "in")

    with Client(url, server.token) as client:
        started = client.upload_dir("stock", tmp_path / "in", progress=False)
        upload = client.wait_for_import(started.id, timeout=60, poll=0.2)

    assert (upload.state, upload.instances_imported, upload.errors) == ("imported", 3, [])
    assert server.instance_count() == 3
    assert "Traceback" not in server.log()
