"""Against a running ``dicomflow serve``: a body without a token, or over its limit, is refused before it is
sent (the server stops reading), a large file is written to disk rather than held in memory (the HTTP
process's anonymous memory stays bounded), and a data set nesting sequences too deeply is an invalid
instance over DICOM too (0xC000 to DCMTK's ``storescu``)."""

from __future__ import annotations

import os
import select
import socket
import struct
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from dcmtk import storescu
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian
from scu import store_file

from factories import DicomflowServer, make_instance, nested_sequences, to_bytes
from waiting import wait_until

pytestmark = pytest.mark.e2e

CANNOT_UNDERSTAND = 0xC000

MiB = 1 << 20
BIG = 256 * MiB


def _group(server: DicomflowServer) -> list[int]:
    """The pids of the server's processes."""
    assert server.process is not None
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if os.getpgid(int(entry.name)) == server.process.pid:
                    pids.append(int(entry.name))
            except OSError:
                continue
    return pids


def _status(pid: int, field: str) -> int:
    """A ``kB`` field of ``/proc/<pid>/status``, in bytes (0 once the process is gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


class AnonPeak:
    """The highest anonymous memory (RssAnon) each server process reached while the block ran."""

    def __init__(self, server: DicomflowServer) -> None:
        self.pids = _group(server)
        self.start = {pid: _status(pid, "RssAnon") for pid in self.pids}
        self.peak = dict(self.start)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)

    def _watch(self) -> None:
        while not self._stop.wait(0.01):
            for pid in self.pids:
                self.peak[pid] = max(self.peak[pid], _status(pid, "RssAnon"))

    def __enter__(self) -> AnonPeak:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def growth(self) -> int:
        """The largest growth of one process."""
        return max(self.peak[pid] - self.start[pid] for pid in self.pids)


def _open(server: DicomflowServer, head: str) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", server.http_port), timeout=30)
    sock.sendall(head.encode())
    return sock


def _answer(sock: socket.socket) -> tuple[int, bytes]:
    """The status and the bytes of the response (read until the server closes)."""
    data = b""
    with sock:
        try:
            while chunk := sock.recv(65536):
                data += chunk
        except ConnectionResetError:  # the server closed with body bytes of ours unread: after its answer
            if not data.startswith(b"HTTP/1.1 "):
                raise
    return int(data.split(b" ", 2)[1]), data


def _send_until_answered(sock: socket.socket, chunks: Iterator[bytes]) -> tuple[int, int, bytes]:
    """Send ``chunks`` until the server answers; the bytes sent, the status and the answer."""
    sent = 0
    for chunk in chunks:
        if select.select([sock], [], [], 0)[0]:
            break
        try:
            sock.sendall(chunk)
        except (BrokenPipeError, ConnectionResetError):
            break
        sent += len(chunk)
    status, answer = _answer(sock)
    return sent, status, answer


def _chunked(total: int, size: int = 64 * 1024) -> Iterator[bytes]:
    piece = f"{size:x}\r\n".encode() + b"\0" * size + b"\r\n"
    for _ in range(total // size):
        yield piece


def test_a_big_body_is_refused_before_it_is_sent(make_server: Callable[..., DicomflowServer]) -> None:
    server = make_server(
        DICOMFLOW_HTTP__WORKERS="1",
        DICOMFLOW_HTTP__MAX_BODY_BYTES=str(64 * 1024),
        DICOMFLOW_UPLOADS__MAX_FILE_BYTES=str(8 * MiB),
    )
    server.http.post("/projects", json={"label": "lim"}).raise_for_status()
    upload_id = server.http.post("/uploads", json={"project": "lim"}).raise_for_status().json()["id"]
    token = f"Authorization: Bearer {server.token}\r\n"
    with AnonPeak(server) as memory:
        # no token: 401 on the headers alone, nothing of the 256 MiB sent
        sock = _open(
            server, f"PUT /api/v1/uploads/x/files/a.dcm HTTP/1.1\r\nHost: t\r\nContent-Length: {BIG}\r\n\r\n"
        )
        status, answer = _answer(sock)
        assert status == 401 and b'"unauthorized"' in answer
        # a token, and a declared length over the limit: 413 at once
        sock = _open(
            server,
            f"PUT /api/v1/uploads/{upload_id}/files/a.dcm HTTP/1.1\r\nHost: t\r\n{token}"
            f"Content-Length: {BIG}\r\n\r\n",
        )
        status, answer = _answer(sock)
        assert status == 413 and b'"too-large"' in answer
        # chunked, no length: stopped once past the limit (JSON route, upload route)
        for method, url, limit in (
            ("POST", "/api/v1/projects", 64 * 1024),
            ("PUT", f"/api/v1/uploads/{upload_id}/files/b.dcm", 8 * MiB),
        ):
            chunked = "Transfer-Encoding: chunked\r\nContent-Type: application/json\r\n\r\n"
            sock = _open(server, f"{method} {url} HTTP/1.1\r\nHost: t\r\n{token}{chunked}")
            sent, status, answer = _send_until_answered(sock, _chunked(BIG))
            assert status == 413 and b'"too-large"' in answer, answer
            assert sent < limit + 16 * MiB, (url, sent)  # the limit and what socket buffers hold
    assert memory.growth() < 64 * MiB, memory.peak
    assert server.http.get(f"/uploads/{upload_id}/files").json()["files"] == []


def _big_instance(pixel_bytes: int) -> tuple[bytes, int]:
    """The Part 10 bytes of an instance before its pixel data, and its total length, for a body made
    lazily: the pixel data element follows as zeros."""
    ds = make_instance()
    side = int((pixel_bytes // 2) ** 0.5)
    ds.Rows = ds.Columns = side
    data = to_bytes(ds)
    head = data[: data.index(b"\xe0\x7f\x10\x00")]
    length = side * side * 2
    head += struct.pack("<HH2sHI", 0x7FE0, 0x0010, b"OW", 0, length)
    return head, len(head) + length


def test_a_large_file_goes_to_disk_not_to_memory(make_server: Callable[..., DicomflowServer]) -> None:
    server = make_server(DICOMFLOW_HTTP__WORKERS="1", DICOMFLOW_UPLOADS__IN_MEMORY_BYTES=str(4 * MiB))
    server.http.post("/projects", json={"label": "big"}).raise_for_status()
    upload_id = server.http.post("/uploads", json={"project": "big"}).raise_for_status().json()["id"]
    head, total = _big_instance(128 * MiB)

    def body() -> Iterator[bytes]:
        yield head
        left = total - len(head)
        while left:
            yield bytes(min(MiB, left))
            left -= min(MiB, left)

    url = f"http://127.0.0.1:{server.http_port}/api/v1/uploads/{upload_id}/files/big.dcm"
    headers = {"Authorization": f"Bearer {server.token}", "Content-Length": str(total)}
    with AnonPeak(server) as memory:
        sent = httpx.put(url, content=body(), headers=headers, timeout=300, trust_env=False)
    assert sent.status_code == 200, sent.text
    assert memory.growth() < 48 * MiB, (memory.growth(), memory.peak)
    done = server.http.post(f"/uploads/{upload_id}/complete").raise_for_status().json()
    if done["state"] == "importing":

        def imported() -> dict[str, Any] | None:
            upload: dict[str, Any] = server.http.get(f"/uploads/{upload_id}").json()
            return None if upload["state"] == "importing" else upload

        done = wait_until(imported, interval=0.1)
    assert (done["state"], done["instances_imported"], done["errors"]) == ("imported", 1, [])


def test_a_deeply_nested_sequence_is_refused_over_dicom(server: DicomflowServer, tmp_path: Path) -> None:
    ds = make_instance()
    path = tmp_path / "deep.dcm"
    path.write_bytes(nested_sequences(ds, 5000))

    # the bytes as they are (sequences and items of undefined length, read level by level)
    status = store_file(server.dimse_port, path, CTImageStorage, ExplicitVRLittleEndian)
    # storescu re-encodes them with explicit lengths, which the header scanner steps over unread
    sent = storescu(server.dimse_port, [path], "-v", check=False)

    assert (status.status, "nests sequences" in status.comment) == (CANNOT_UNDERSTAND, True), status
    [rejected] = server.events(kind="rejected", object_uid=ds.SOPInstanceUID)
    assert rejected["reason"].startswith("invalid-instance:") and "nests sequences" in rejected["reason"]
    assert "Received Store Response (Success)" in sent.stdout + sent.stderr, sent
    assert server.instance_count() >= 1 and server.echo()  # the receiver carries on
