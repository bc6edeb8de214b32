"""Two nodes (own data directories and node ids) on one index and one blob store: whatever one node files,
the other serves. Results, reports and job logs on both back ends (the filesystem store in a shared
directory, S3 on moto's server); uploads on the shared filesystem store."""

from __future__ import annotations

import io
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from apihelpers import TestClient
from dicomflow.api import create_app
from dicomflow.config import Settings
from dicomflow.index import migrate, reading
from dicomflow.index.studies import session_of_acquisition
from dicomflow.ingest import Source, open_ingestor
from dicomflow.jobs import ProcessingEngine
from dicomflow.usecases.accounts import Role, create_token, create_user
from factories import create_project, make_study, to_bytes
from s3 import S3Server
from waiting import wait_until

PLUGIN = str(Path(__file__).parents[1] / "plugins" / "toy_report_types.py")


def node_settings(tmp_path: Path, node: str, shared: dict[str, Any]) -> Settings:
    return Settings.model_validate(
        {
            "data_dir": tmp_path / node,
            "index": {"url": f"sqlite:///{tmp_path / 'shared' / 'index.sqlite3'}"},
            "cluster": {"node_id": node},
            "processing": {"plugins": [PLUGIN], "poll_interval": 0.05, "settle_time": 0.0},
            **shared,
        }
    )


@pytest.fixture(params=["filesystem", "s3"])
def nodes(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[Settings, Settings]:
    storage: dict[str, Any] = {"fsync": False, "root": str(tmp_path / "shared" / "blobs")}
    if request.param == "s3":
        server: S3Server = request.getfixturevalue("s3_server")
        storage = {
            "fsync": False,
            "backend": "s3",
            "s3_endpoint_url": server.endpoint_url,
            "s3_bucket": server.new_bucket(),
        }
    return node_settings(tmp_path, "a", {"storage": storage}), node_settings(
        tmp_path, "b", {"storage": storage}
    )


@pytest.fixture
def api_b(nodes: tuple[Settings, Settings]) -> Iterator[tuple[TestClient, dict[str, str]]]:
    app = create_app(nodes[1])
    create_user(app.state.application, "admin@example.org", "pw", Role.ADMIN)
    headers = {"Authorization": f"Bearer {create_token(app.state.application, 'admin@example.org')}"}
    with TestClient(app) as client:
        yield client, headers


def test_results_and_logs_filed_by_one_node_are_served_by_the_other(
    nodes: tuple[Settings, Settings], api_b: tuple[TestClient, dict[str, str]]
) -> None:
    settings_a, settings_b = nodes
    ingestor = open_ingestor(settings_a)  # node a: receives, processes, files results
    migrate(ingestor.engine)
    create_project(ingestor.engine, "proj")
    processing = ProcessingEngine(settings_a, ingestor.engine)
    try:
        source = Source("import", "test", called_ae="kp-proj")
        study = make_study(series=1, instances=3)
        acquisitions = {ingestor.ingest_bytes([to_bytes(ds)], source).acquisition_id for ds in study}
        assert len(acquisitions) == 1
        with reading(ingestor.engine) as conn:
            session_id = session_of_acquisition(conn, acquisitions.pop())
        study_ids = processing.flow.request([session_id], ["toy_count"], actor="test")
        (ended,) = processing.run_until_settled(study_ids, timeout=120)
        assert ended.stage == "Finished"
    finally:
        processing.stop()
        ingestor.close()
    assert not (settings_b.data_dir / "jobs").exists(), "node b never ran the job"

    client, headers = api_b  # node b: serves what node a filed
    uid = study[0].StudyInstanceUID
    files = client.get(f"/api/v1/studies/{uid}/results", headers=headers).json()
    by_name = {f["name"]: f for f in files}
    count = client.get(f"/api/v1/results/{by_name['count.csv']['id']}/file", headers=headers)
    assert count.status_code == 200 and count.text.splitlines()[1].endswith(",3")
    assert count.headers["content-disposition"] == 'attachment; filename="count.csv"'
    archive = client.get(f"/api/v1/studies/{uid}/results.zip", headers=headers)
    with zipfile.ZipFile(io.BytesIO(archive.content)) as members:
        assert sorted(members.namelist()) == sorted(f"toy_count/{name}" for name in by_name)
    (job,) = client.get("/api/v1/jobs", headers=headers).json()
    log = client.get(f"/api/v1/jobs/{job['id']}/log", headers=headers)
    assert log.status_code == 200 and "done" in log.text


def test_an_upload_receives_on_both_nodes_and_is_completed_on_the_other(
    nodes: tuple[Settings, Settings],
) -> None:
    """Node b takes files for an upload that node a started, and completing it on b imports the files a
    received too; a file sent afterwards is refused (on the filesystem store the open-upload folders live
    beside it; on S3 each send puts its journal into the bucket)."""
    app_a, app_b = create_app(nodes[0]), create_app(nodes[1])
    create_project(app_a.state.engine, "A")
    create_user(app_a.state.application, "admin@example.org", "pw", Role.ADMIN)
    headers = {"Authorization": f"Bearer {create_token(app_a.state.application, 'admin@example.org')}"}
    study = make_study(series=1, instances=4)
    with TestClient(app_a) as on_a, TestClient(app_b) as on_b:
        started = on_a.post("/api/v1/uploads", json={"project": "A"}, headers=headers)
        upload_id = started.json()["id"]
        for number, ds in enumerate(study):
            client = on_a if number % 2 else on_b
            files = {"file": (f"{number}.dcm", to_bytes(ds), "application/octet-stream")}
            answer = client.put(f"/api/v1/uploads/{upload_id}/files", files=files, headers=headers)
            assert answer.status_code == 200, answer.text
        listed = on_a.get(f"/api/v1/uploads/{upload_id}/files", headers=headers).json()["files"]
        assert len(listed) == 4

        assert on_b.post(f"/api/v1/uploads/{upload_id}/complete", headers=headers).status_code == 202

        def imported() -> dict[str, Any] | None:
            upload = on_a.get(f"/api/v1/uploads/{upload_id}", headers=headers).json()
            return None if upload["state"] in ("uploading", "importing") else dict(upload)

        done = wait_until(imported, message=f"upload {upload_id} still importing")
        files = {"file": ("late.dcm", to_bytes(make_study(series=1, instances=1)[0]), "application/dicom")}
        late = on_a.put(f"/api/v1/uploads/{upload_id}/files", files=files, headers=headers)
        assert late.status_code == 409
    assert (done["state"], done["instances_imported"], done["errors"]) == ("imported", 4, [])
    assert done["study_instance_uids"] == [study[0].StudyInstanceUID]
