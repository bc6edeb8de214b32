"""``/health``, ``/ready`` and ``/metrics`` of a running ``dicomflow serve`` (issue 11, item 5): counters kept
by the receiving processes are seen by whichever HTTP process answers the scrape; gauges come from the index;
``/ready`` answers 503 naming the part that cannot be reached."""

from __future__ import annotations

import re
import shutil
import socket
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from dcmtk import storescu
from scu import crafted_file, store_file

from factories import DicomflowServer, make_study, to_bytes, write_files

pytestmark = pytest.mark.e2e

CT_IMAGE = "1.2.840.10008.5.1.4.1.1.2"
EXPLICIT_LE = "1.2.840.10008.1.2.1"


def get(server: DicomflowServer, path: str, **kwargs: object) -> httpx.Response:
    """``GET <path>`` on a new connection (so that any HTTP process may answer)."""
    return httpx.get(f"http://127.0.0.1:{server.http_port}{path}", timeout=30, trust_env=False, **kwargs)  # type: ignore[arg-type]  # httpx's keyword arguments, passed through


def samples(text: str, name: str) -> dict[str, float]:
    """The samples of metric ``name`` in a Prometheus text page, by their label string."""
    found = {}
    for line in text.splitlines():
        match = re.fullmatch(rf"{name}(\{{.*\}})?\s+(\S+)", line)
        if match:
            found[match.group(1) or ""] = float(match.group(2))
    return found


def test_health_answers_while_the_process_is_up(server: DicomflowServer) -> None:
    response = get(server, "/health")
    assert (response.status_code, response.json()) == (200, {"status": "ok"})


def test_ready_answers_with_each_part(server: DicomflowServer) -> None:
    response = get(server, "/ready")
    assert response.status_code == 200
    assert response.json() == {"status": "ready", "checks": {"index": "ok", "store": "ok"}}


def test_serve_logs_its_node_id_and_holds_the_leases_under_it(server: DicomflowServer) -> None:
    node = socket.gethostname()
    assert f"node {node}: DICOM receiver" in server.log()
    page = get(server, "/metrics").text  # public: the server listens on loopback only
    holders = samples(page, "dicomflow_lease_holder")
    for lease in ("tracker", "outbox", "job-recovery"):
        assert holders[f'{{holder="{node}",lease="{lease}"}}'] == 1


def test_metrics_count_what_the_receivers_and_uploads_took_on_any_http_process(
    server: DicomflowServer, tmp_path: Path
) -> None:
    before = samples(get(server, "/metrics").text, "dicomflow_instances_received_total")
    datasets = make_study(series=1, instances=4)
    storescu(server.dimse_port, write_files(datasets, tmp_path / "dimse"))
    store_file(  # refused: not a data set
        server.dimse_port,
        crafted_file(tmp_path, "bad.dcm", CT_IMAGE, "1.2.3.4", EXPLICIT_LE, b"\x08\x00garbage"),
        CT_IMAGE,
        EXPLICIT_LE,
    )
    server.http.post("/projects", json={"label": "metrics"}).raise_for_status()
    upload = server.http.post("/uploads", json={"project": "metrics"}).raise_for_status().json()["id"]
    (uploaded,) = make_study(series=1, instances=1)
    data = to_bytes(uploaded)
    server.http.put(f"/uploads/{upload}/files/a.dcm", content=data).raise_for_status()

    pages = [get(server, "/metrics") for _ in range(6)]  # several connections: both HTTP processes answer
    for page in pages:
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/plain")
        received = samples(page.text, "dicomflow_instances_received_total")
        dimse = '{outcome="stored",path="dimse"}'
        assert received[dimse] - before.get(dimse, 0) == 4
        assert (
            received['{outcome="stored",path="upload"}'] - before.get('{outcome="stored",path="upload"}', 0)
            == 1
        )
        assert samples(page.text, "dicomflow_received_bytes_total")['{path="upload"}'] >= len(data)
        rejected = samples(page.text, "dicomflow_instances_rejected_total")
        assert rejected['{path="dimse",reason="invalid-instance"}'] >= 1
        assert "dicomflow_export_backlog" in page.text and "dicomflow_jobs_waiting" in page.text


def test_ready_answers_503_naming_the_index_or_store_that_cannot_be_reached(
    make_server: Callable[..., DicomflowServer],
) -> None:
    server = make_server(DICOMFLOW_HTTP__WORKERS="1")
    index, moved = server.index_path, server.index_path.with_name("index.moved")
    index.rename(moved)  # fault: the index file is gone and a directory stands in its place
    index.mkdir()
    try:
        response = get(server, "/ready")
        assert response.status_code == 503
        error = response.json()["error"]
        assert error["code"] == "not-ready" and "index" in error["message"]
        assert error["details"]["store"] == "ok" and error["details"]["index"] != "ok"
    finally:
        index.rmdir()
        moved.rename(index)
    assert get(server, "/ready").status_code == 200

    blobs, aside = server.data_dir / "blobs", server.data_dir / "blobs.moved"
    blobs.rename(aside)  # fault: the blob store's directory is a file
    blobs.write_bytes(b"")
    try:
        response = get(server, "/ready")
        assert response.status_code == 503
        assert response.json()["error"]["details"] == {
            "index": "ok",
            "store": response.json()["error"]["details"]["store"],
        }
        assert response.json()["error"]["details"]["store"] != "ok"
    finally:
        blobs.unlink()
        shutil.move(aside, blobs)
    assert get(server, "/ready").status_code == 200
