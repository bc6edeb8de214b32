"""``dicomflow serve`` starting where it cannot: a port held by another socket, a data directory held by
another server. Either way it says so in one line and exits 1, and it has changed nothing: no staging
recovery ran, and the server that holds the data directory keeps every instance it acknowledged."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from factories import DicomflowServer, make_study, server_env, write_files
from waiting import wait_until

pytestmark = pytest.mark.e2e


def serve(data_dir: Path, dimse_port: int, http_port: int, **env: str) -> subprocess.CompletedProcess[str]:
    """Run ``dicomflow serve`` expecting it to give up at once (it is killed after 60 s otherwise)."""
    return subprocess.run(
        [sys.executable, "-m", "dicomflow", "serve", "--data-dir", str(data_dir)]
        + ["--dimse-port", str(dimse_port), "--http-port", str(http_port)],
        capture_output=True,
        text=True,
        timeout=60,
        env=server_env(**env),
        check=False,
    )


def tree(folder: Path) -> dict[str, tuple[int, int]]:
    """Every file and folder below ``folder`` with its size and modification time (ns)."""
    return {
        str(path.relative_to(folder)): (path.stat().st_size, path.stat().st_mtime_ns)
        for path in sorted(folder.rglob("*"))
    }


@pytest.mark.parametrize("held", ["dimse", "http"])
def test_a_port_in_use_is_one_clear_line_and_changes_nothing(
    make_server: Callable[..., DicomflowServer], free_port: Callable[[], int], held: str
) -> None:
    server = make_server()
    server.stop()
    # an unfinished write, as a crashed process leaves it: recovery would remove it (it is not DICOM)
    unfinished = server.staging_dir / "0123456789abcdef01234567.part"
    unfinished.write_bytes(b"half an instance")
    before = tree(server.data_dir)
    dimse_port, http_port = free_port(), free_port()
    with socket.create_server(("127.0.0.1", 0)) as holder:
        port = holder.getsockname()[1]
        done = serve(server.data_dir, *((port, http_port) if held == "dimse" else (dimse_port, port)))

    assert done.returncode == 1, done.stdout + done.stderr
    assert "Traceback" not in done.stdout + done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert str(port) in lines[0] and "in use" in lines[0]
    assert f"--{held}-port" in lines[0]
    assert tree(server.data_dir) == before
    assert unfinished.read_bytes() == b"half an instance"


def test_a_port_in_use_creates_no_data_directory(tmp_path: Path, free_port: Callable[[], int]) -> None:
    with socket.create_server(("127.0.0.1", 0)) as holder:
        done = serve(tmp_path / "new", holder.getsockname()[1], free_port())
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert not (tmp_path / "new").exists()


def test_a_report_type_plugin_that_cannot_load_stops_start_up_with_its_reason(
    tmp_path: Path, free_port: Callable[[], int]
) -> None:
    """The report types are loaded in a short-lived child before any worker is forked (the processes
    forked from the supervisor never carry them); a failure there is still one line naming the plugin."""
    done = serve(
        tmp_path / "data", free_port(), free_port(), DICOMFLOW_PROCESSING__PLUGINS='["no_such_plugin"]'
    )
    assert done.returncode == 1, done.stdout + done.stderr
    assert "Traceback" not in done.stderr
    assert "no_such_plugin" in done.stderr.strip().splitlines()[-1]


def test_an_index_that_cannot_be_reached_stops_start_up_saying_so(
    tmp_path: Path, free_port: Callable[[], int]
) -> None:
    """The migration runs in a short-lived child; when it fails (here: nothing listens at the index's
    address), serve says which step failed, not click's bare "Aborted!" (it read an empty pipe before)."""
    closed = free_port()
    done = serve(
        tmp_path / "data",
        free_port(),
        free_port(),
        DICOMFLOW_INDEX__URL=f"postgresql+psycopg://postgres@127.0.0.1:{closed}/nowhere",
    )
    assert done.returncode == 1, done.stdout + done.stderr
    assert "Aborted!" not in done.stderr
    assert "migrating the index failed" in done.stderr.strip().splitlines()[-1]


def storescu_v(port: int, paths: list[Path]) -> subprocess.Popen[str]:
    """DCMTK ``storescu -v`` sending ``paths`` over one association, in the background."""
    return subprocess.Popen(
        ["storescu", "-v", "-aec", "DICOMFLOW", "127.0.0.1", str(port), *map(str, paths)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def test_a_second_server_on_a_data_directory_in_use_refuses_to_start(
    make_server: Callable[..., DicomflowServer], free_port: Callable[[], int], tmp_path: Path
) -> None:
    """A second ``serve`` used to run its start-up recovery on the first one's staged writes and delete
    the files of instances already acknowledged and indexed."""
    first = make_server()
    paths = write_files(make_study(series=2, instances=150), tmp_path / "files")
    senders = [storescu_v(first.dimse_port, paths[i::2]) for i in range(2)]

    def receiving() -> bool:
        assert all(s.poll() is None for s in senders), "a sender ended early"
        return first.instance_count() >= 20

    wait_until(receiving, interval=0.01)

    done = serve(first.data_dir, free_port(), free_port())  # while the first one receives

    outputs = [sender.communicate(timeout=300)[0] for sender in senders]
    assert done.returncode == 1, done.stdout + done.stderr
    assert "Traceback" not in done.stdout + done.stderr
    [line] = done.stderr.strip().splitlines()
    assert "in use" in line and f"pid {first.process.pid if first.process else 0}" in line
    assert str(first.data_dir) in line and "--data-dir" in line
    assert [sender.returncode for sender in senders] == [0, 0], outputs
    responses = [re.findall(r"Received Store Response \(([^)]*)\)", output) for output in outputs]
    assert [len(r) for r in responses] == [len(paths) // 2] * 2
    assert {status for r in responses for status in r} == {"Success"}
    acknowledged = paths
    first.stop()  # every blob is durable and its staging name gone once stopped
    rows = dict(first.rows("SELECT sop_instance_uid, blob_key FROM instances"))
    for path in acknowledged:
        uid = path.stem.split("-", 1)[1]
        assert uid in rows, f"{uid} was acknowledged but is not indexed"
        assert (first.objects_dir / rows[uid]).is_file(), f"{uid} is indexed but its blob is gone"
    assert first.staged_files() == []
    assert os.path.exists(first.data_dir / "index.sqlite3")
