"""Ingest on the S3 back end (moto's S3 server on loopback): instances received through the use case land
in the bucket, nowhere in the data directory, and read back through the API byte for byte."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

from pydicom.uid import generate_uid
from sqlalchemy import select

from apihelpers import PASSWORD, TestClient, api_settings, make_part10
from dicomflow.api import create_app
from dicomflow.index import Project
from dicomflow.ingest import Source
from dicomflow.usecases.accounts import Role, create_token, create_user, grant
from dicomflow.usecases.receive import receive_bytes
from s3 import S3Server


def test_instances_received_on_s3_read_back_through_the_api(
    tmp_path: Path, s3_server: S3Server, s3_bucket: str
) -> None:
    settings = api_settings(tmp_path).with_overrides(**s3_server.overrides(s3_bucket, "site-a/"))
    app = create_app(settings)
    application = app.state.application
    study, series = generate_uid(), generate_uid()
    sent = dict(make_part10(study, series, number) for number in (1, 2, 3))

    for data in sent.values():
        receive_bytes(application, [data], Source("dimse", "SCANNER", calling_ae="SCANNER"))
    application.ingestor.store.flush()  # the receive path's own store: release the staged copies now

    keys = [item["Key"] for item in s3_server.client().list_objects_v2(Bucket=s3_bucket)["Contents"]]
    assert len(keys) == 3 and all(key.startswith(f"site-a/{study}/{series}/") for key in keys)
    assert not any((tmp_path / "blobs").rglob("*.dcm")), "no blob in the data directory"
    assert not [p for p in (tmp_path / "staging").rglob("*") if p.suffix == ".part"], "staged copies released"
    with application.engine.connect() as conn:
        project_ids = list(conn.scalars(select(Project.id)))
    create_user(application, "viewer@example.org", PASSWORD, Role.VIEWER)
    token = create_token(application, "viewer@example.org")
    for project_id in project_ids:
        grant(application, "viewer@example.org", project_id, Role.VIEWER)
    headers = {"Authorization": f"Bearer {token}"}
    with TestClient(app) as client:
        for uid, data in sent.items():
            response = client.get(f"/api/v1/instances/{uid}/file", headers=headers)
            assert response.status_code == 200 and response.content == data
            header = client.get(f"/api/v1/instances/{uid}", headers=headers)
            assert header.status_code == 200 and header.json()["00080018"]["Value"] == [uid]
        archive = client.get(f"/api/v1/series/{series}/download", headers=headers)
        assert archive.status_code == 200
        with zipfile.ZipFile(io.BytesIO(archive.content)) as members:
            assert sorted(members.read(name) for name in members.namelist()) == sorted(sent.values())
