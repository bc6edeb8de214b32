"""A power cut in the middle of a transfer: every instance acknowledged before it is durable and indexed,
and the store holds neither orphan blobs nor rows without blobs after the restart.

Two pynetdicom SCU threads send 500 instances over two associations (one per receiving process) and record
each success response; after ~40 % the whole server process group gets SIGKILL.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable
from pathlib import Path

import pytest
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian
from scu import StoreStatus, association, chunked

from factories import DicomflowServer, dataset_bytes, make_study, write_files
from waiting import wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.serial]

TOTAL = 500
KILL_AFTER = int(TOTAL * 0.4)
SENDERS = 2


class Sender(threading.Thread):
    """Sends files over one association until done or the connection is lost; records acknowledged files."""

    def __init__(self, port: int, paths: list[Path]) -> None:
        super().__init__(daemon=True)
        self.port, self.paths = port, paths
        self.acknowledged: list[Path] = []
        self.failed: list[tuple[Path, StoreStatus]] = []

    def run(self) -> None:
        try:
            with association(self.port, [(CTImageStorage, ExplicitVRLittleEndian)], timeout=5) as assoc:
                for path in self.paths:
                    response = assoc.send_c_store(path)
                    if "Status" not in response:
                        return  # connection lost: the server is gone
                    status = StoreStatus.of(response)
                    if status.status == 0:
                        self.acknowledged.append(path)
                    else:
                        self.failed.append((path, status))
        except Exception:  # the association may break anywhere once the server is killed
            return


def send_until_killed(server: DicomflowServer, paths: list[Path]) -> tuple[list[Path], list[Path]]:
    """Send ``paths`` in parallel, SIGKILL the server after ``KILL_AFTER`` acknowledgements.

    Returns the acknowledged files and the staged files found right after the kill.
    """
    senders = [Sender(server.dimse_port, paths[i::SENDERS]) for i in range(SENDERS)]
    with chunked():
        for sender in senders:
            sender.start()

        def at_kill_point() -> bool:
            assert any(s.is_alive() for s in senders), "the senders stopped before the kill point"
            return sum(len(s.acknowledged) for s in senders) >= KILL_AFTER

        wait_until(at_kill_point, interval=0.002, message="the server is too slow to reach the kill point")
        server.kill()
        for sender in senders:
            sender.join(30)
    assert not any(s.is_alive() for s in senders)
    assert not [f for s in senders for f in s.failed], "instances refused before the kill"
    staged = server.staged_now()
    return [path for s in senders for path in s.acknowledged], staged


def test_acknowledged_instances_survive_sigkill_and_store_stays_consistent(
    make_server: Callable[..., DicomflowServer], tmp_path: Path
) -> None:
    paths = write_files(make_study(series=5, instances=TOTAL // 5), tmp_path / "files")
    server = make_server()

    acknowledged, staged_at_kill = send_until_killed(server, paths)
    assert KILL_AFTER <= len(acknowledged) < TOTAL
    server.start()

    rows = {
        uid: (sha256, blob_key)
        for uid, sha256, blob_key in server.rows("SELECT sop_instance_uid, sha256, blob_key FROM instances")
    }
    for path in acknowledged:
        uid = path.stem.split("-", 1)[1]
        assert uid in rows, f"{uid} was acknowledged but is not in the index"
        sha256, blob_key = rows[uid]
        blob = server.objects_dir / blob_key
        assert blob.is_file(), f"{uid} is indexed but its blob {blob_key} is missing"
        data = blob.read_bytes()
        assert hashlib.sha256(data).hexdigest() == sha256
        assert dataset_bytes(data) == dataset_bytes(path.read_bytes())
    assert server.staged_now() == []
    published = {str(p.relative_to(server.objects_dir)) for p in server.blob_files()}
    indexed = {blob_key for _sha, blob_key in rows.values()}
    assert indexed - published == set(), "index rows without a blob"
    assert published - indexed == set(), "blobs without an index row (orphans)"
    for sha256, blob_key in rows.values():
        assert hashlib.sha256((server.objects_dir / blob_key).read_bytes()).hexdigest() == sha256
    if staged_at_kill:
        assert "recovered after an unclean stop" in server.log()

    # The restarted server takes the whole lot: the stored ones as duplicates, the rest as new.
    resend = [Sender(server.dimse_port, paths[i::SENDERS]) for i in range(SENDERS)]
    with chunked():
        for sender in resend:
            sender.start()
        for sender in resend:
            sender.join(60)
    assert sum(len(s.acknowledged) for s in resend) == TOTAL
    assert [f for s in resend for f in s.failed] == []
    assert server.instance_count() == TOTAL
    assert len(server.blob_files()) == TOTAL
