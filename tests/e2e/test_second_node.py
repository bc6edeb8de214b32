"""A second ``dicomflow serve`` (its own data directory and node id, the same index and blob store) starting
while the first receives loses nothing: every instance acknowledged to storescu is indexed once and its
blob is intact (issue 11, item 4: "start a third server while the others receive")."""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from dcmtk import storescu
from pydicom import dcmread

from factories import DicomflowServer, make_study, write_files

pytestmark = pytest.mark.e2e


def test_a_node_starting_while_another_receives_loses_nothing_acknowledged(
    tmp_path_factory: pytest.TempPathFactory, free_port: Callable[[], int], tmp_path: Path
) -> None:
    first = DicomflowServer(
        tmp_path_factory.mktemp("node-a") / "data",
        free_port(),
        free_port(),
        {"DICOMFLOW_CLUSTER__NODE_ID": "node-a", "DICOMFLOW_HTTP__WORKERS": "1"},
    )
    shared_index = first.index_path
    second = DicomflowServer(
        tmp_path_factory.mktemp("node-b") / "data",
        free_port(),
        free_port(),
        {
            "DICOMFLOW_CLUSTER__NODE_ID": "node-b",
            "DICOMFLOW_HTTP__WORKERS": "1",
            "DICOMFLOW_INDEX__URL": f"sqlite:///{shared_index}",
            "DICOMFLOW_STORAGE__ROOT": str(first.data_dir / "blobs"),
        },
    )
    second.token = "unused"  # its index is the first's, where the admin exists already
    sent: list[Path] = []
    failures: list[str] = []
    batches = [0]
    stop = threading.Event()

    def send() -> None:
        for batch in range(60):
            if stop.is_set():
                return
            files = write_files(make_study(series=1, instances=8), tmp_path / f"batch-{batch}")
            done = storescu(first.dimse_port, files, check=False)
            if done.returncode == 0:
                sent.extend(files)
            else:
                failures.append(done.stderr or done.stdout)
            batches[0] += 1

    sender = threading.Thread(target=send)
    try:
        first.start()
        sender.start()
        second.start()  # recovers "unfinished writes" in the shared store while the first receives
        started_at = batches[0]
        while batches[0] < started_at + 3 and sender.is_alive():
            time.sleep(0.1)
        assert "node node-b: DICOM receiver" in second.log()
        # the background duties stay with the node that took them first
        assert set(first.rows("SELECT holder FROM leases WHERE name IN ('tracker', 'outbox')")) == {
            ("node-a",)
        }
    finally:
        stop.set()
        if sender.is_alive():
            sender.join(120)
        second.stop()
        first.stop()

    assert failures == []
    assert sent
    by_uid = {}
    for path in sent:
        by_uid[str(dcmread(path, stop_before_pixels=True).SOPInstanceUID)] = hashlib.sha256(
            path.read_bytes()
        ).hexdigest()
    rows = first.rows("SELECT sop_instance_uid, blob_key FROM instances")
    indexed = [uid for uid, _ in rows]
    assert sorted(indexed) == sorted(by_uid)  # every acknowledged instance, once
    for _uid, key in rows:
        assert (first.objects_dir / key).is_file(), f"blob {key} of an acknowledged instance is gone"
