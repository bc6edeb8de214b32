"""``dicomflow serve`` on the S3 back end (moto's S3 server on loopback), driven by DCMTK's ``storescu``: the
forked receivers stage on the node and PUT to the bucket, a restart finds everything, and the API hands
back each file byte for byte."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from dcmtk import storescu

from factories import DicomflowServer, make_study, write_files
from s3 import S3Server

pytestmark = pytest.mark.e2e


def test_storescu_to_a_server_on_s3_then_read_back_after_a_restart(
    make_server: Callable[..., DicomflowServer], s3_server: S3Server, s3_bucket: str, tmp_path: Path
) -> None:
    server = make_server(**s3_server.environment(s3_bucket, "node-a/"), DICOMFLOW_CLUSTER__NODE_ID="node-a")
    study = make_study(series=2, instances=3)
    paths = write_files(study, tmp_path / "files")

    storescu(server.dimse_port, paths)

    listed = s3_server.client().list_objects_v2(Bucket=s3_bucket, Prefix="node-a/")
    assert sum(1 for item in listed["Contents"] if item["Key"].endswith(".dcm")) == 6
    assert not list((server.data_dir / "blobs" / "objects").rglob("*.dcm")), "nothing in the data dir"
    server.stop()
    staging = server.data_dir / "staging"  # node-local: a clean stop leaves nothing staged
    assert staging.is_dir() and not [p for p in staging.rglob("*") if p.suffix in (".part", ".dcm")]
    server.start()
    for ds, path in zip(study, paths, strict=True):
        response = server.http.get(f"/instances/{ds.SOPInstanceUID}/file")
        assert response.status_code == 200
        assert response.content[-64:] == path.read_bytes()[-64:]  # the data set as sent (file meta ours)
    for series_uid in {ds.SeriesInstanceUID for ds in study}:
        assert server.get_json(f"/series/{series_uid}")["instance_count"] == 3
