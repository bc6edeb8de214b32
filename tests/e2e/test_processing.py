"""The processing flow against a running ``dicomflow serve``: DCMTK ``storescu`` in, project rules, settle
time, built-in report types, review through the API, a kill during a job, and an export to a node that is
down until it comes up."""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from dcmtk import storescu
from pypdf import PdfReader

from dicomflow.demo import make_ct_phantom, make_ms_study
from factories import DicomflowServer, dciodvfy, make_study, write_files
from waiting import wait_until

pytestmark = pytest.mark.e2e

PLUGIN = str(Path(__file__).parents[1] / "plugins" / "toy_report_types.py")
FAST = {
    "DICOMFLOW_PROCESSING__SETTLE_TIME": "1",
    "DICOMFLOW_PROCESSING__POLL_INTERVAL": "0.1",
    "DICOMFLOW_PROCESSING__PLUGINS": json.dumps([PLUGIN]),
}


def _wait_for_stage(
    server: DicomflowServer, uid: str, stages: set[str], timeout: float = 120
) -> dict[str, Any]:
    study: dict[str, Any] = {}

    def in_stage() -> dict[str, Any] | None:
        nonlocal study
        response = server.http.get(f"/studies/{uid}")
        if response.status_code == 200:
            study = response.json()
            if study["stage"] in stages:
                return study
        return None

    return wait_until(
        in_stage,
        timeout,
        interval=0.2,
        message=lambda: f"study {uid} not in {stages}: {study}\n{server.log()[-3000:]}",
    )


def _rule(server: DicomflowServer, project: str, report_type: str, **match: str) -> None:
    server.http.post("/projects", json={"label": project}).raise_for_status()
    server.http.post(
        f"/projects/{project}/rules", json={"report_type": report_type, "match": match}
    ).raise_for_status()


def test_ct_volumetry_over_dimse_from_storescu_to_finished(
    make_server: Callable[..., DicomflowServer], tmp_path: Path
) -> None:
    server = make_server(**FAST)
    _rule(server, "ct", "ct_volumetry", Modality="^CT$")
    phantom = make_ct_phantom(slices=40)
    files = write_files(phantom.datasets, tmp_path / "ct")
    storescu(server.dimse_port, files, called_ae="kp-ct")
    uid = phantom.datasets[0].StudyInstanceUID

    study = _wait_for_stage(server, uid, {"Finished", "Failed"})

    assert study["stage"] == "Finished", study
    assert [h["stage"] for h in study["history"]] == ["Importing", "Processing", "Finished"]
    results = {r["name"]: r for r in server.get_json(f"/studies/{uid}/results")}
    numbers = json.loads(server.http.get(f"/results/{results['results.json']['id']}/file").content)[
        "measurements"
    ]
    for name, expected in phantom.expected_volumes_ml.items():
        assert numbers[f"{name}_volume_ml"] == pytest.approx(expected, rel=0.02), name
    pdf = PdfReader(io.BytesIO(server.http.get(f"/results/{results['ct_volumetry.pdf']['id']}/file").content))
    assert "CT volumetry" in "".join(page.extract_text() for page in pdf.pages)
    (seg,) = [
        a
        for s in server.get_json("/hierarchy")[0]["projects"][0]["subjects"][0]["sessions"]
        for a in s["acquisitions"]
        if a["modality"] == "SEG"
    ]
    seg_uid = seg["series_instance_uid"]
    (instance,) = server.get_json(f"/series/{seg_uid}")["instances"]
    path = tmp_path / "seg.dcm"
    path.write_bytes(server.http.get(f"/instances/{instance['sop_instance_uid']}/file").content)
    errors, warnings = dciodvfy(path)
    assert errors == [], [*errors, *warnings]


def test_icobrain_ms_waits_in_quality_control_until_approved_through_the_api(
    make_server: Callable[..., DicomflowServer], tmp_path: Path
) -> None:
    server = make_server(**FAST)
    _rule(server, "ms", "icobrain_ms")
    study = make_ms_study()
    storescu(server.dimse_port, write_files([*study.t1, *study.flair], tmp_path / "mr"), called_ae="kp-ms")
    uid = study.t1[0].StudyInstanceUID

    waiting = _wait_for_stage(server, uid, {"QualityControl", "Failed", "Finished"})
    assert waiting["stage"] == "QualityControl", waiting
    assert waiting["report_types"] == ["icobrain_ms"]
    assert [j["report_type"] for j in waiting["jobs"]] == ["ms_lesions"]
    assert uid in [s["study_instance_uid"] for s in server.get_json("/qc")]

    approved = server.http.post(f"/studies/{uid}/qc/approve", json={"comment": "looks right"})
    approved.raise_for_status()
    assert approved.json()["stage"] == "Finished"
    assert (
        approved.json()["history"][-1]["actor"] == "admin@example.org"
        or approved.json()["history"][-1]["actor"]
    )
    numbers = {r["name"]: r for r in server.get_json(f"/studies/{uid}/results")}
    body = json.loads(server.http.get(f"/results/{numbers['results.json']['id']}/file").content)
    assert body["measurements"]["lesion_count"] == study.lesion_count
    assert [e for e in server.events("stage", uid) if "looks right" in e["reason"]]


def test_a_job_running_when_the_server_is_killed_is_resumed_after_restart(
    make_server: Callable[..., DicomflowServer], tmp_path: Path
) -> None:
    marker = tmp_path / "started"
    options = {"toy_slow": {"started_marker": str(marker), "seconds": 3}}
    server = make_server(**FAST, DICOMFLOW_PROCESSING__OPTIONS=json.dumps(options))
    _rule(server, "slow", "toy_slow")
    datasets = make_study(series=1, instances=3)
    storescu(server.dimse_port, write_files(datasets, tmp_path / "in"), called_ae="kp-slow")
    wait_until(marker.exists, interval=0.1, message=lambda: server.log()[-3000:])

    server.kill()  # the server, its receivers and the job's worker process, at once
    server.start()
    study = _wait_for_stage(server, datasets[0].StudyInstanceUID, {"Finished", "Failed"})

    assert study["stage"] == "Finished", study
    assert len(marker.read_text().split()) == 2  # ran again after the restart
    (job,) = study["jobs"]
    assert (job["state"], job["attempts"]) == ("succeeded", 2)


def test_an_export_to_a_node_that_is_down_is_retried_until_it_comes_up(
    make_server: Callable[..., DicomflowServer],
    free_port: Callable[[], int],
    tmp_path_factory: pytest.TempPathFactory,
    tmp_path: Path,
) -> None:
    archive = DicomflowServer(tmp_path_factory.mktemp("archive") / "data", free_port(), free_port())
    node = {"archive": {"host": "127.0.0.1", "port": archive.dimse_port, "ae_title": "DICOMFLOW"}}
    server = make_server(
        **FAST,
        DICOMFLOW_PROCESSING__NODES=json.dumps(node),
        DICOMFLOW_PROCESSING__EXPORT_RETRY_DELAY="0.5",
        DICOMFLOW_PROCESSING__EXPORT_RETRY_DELAY_MAX="1",
    )
    _rule(server, "exp", "toy_capture")
    datasets = make_study(series=1, instances=2)
    storescu(server.dimse_port, write_files(datasets, tmp_path / "in"), called_ae="kp-exp")
    _wait_for_stage(server, datasets[0].StudyInstanceUID, {"Finished"})
    wait_until(lambda: server.rows("select attempts from outbox where attempts >= 2"), 30, interval=0.2)
    ((state, last_error),) = server.rows("select state, last_error from outbox")
    assert state == "pending" and "cannot connect" in last_error

    try:
        archive.start()
        wait_until(lambda: server.rows("select state from outbox")[0][0] == "sent", 30, interval=0.2)
        assert server.rows("select state from outbox") == [("sent",)]
        received = archive.rows("select series_instance_uid from instances")
        assert len(received) == 1
    finally:
        archive.stop()
