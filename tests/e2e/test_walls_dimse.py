"""Projects are walls over DICOM (issue 9, item 6): called AE ``kp-p1`` with a study that already has a
session in p2 opens a session in p1 and leaves p2 as it was; a plain called AE (nothing names a project)
still joins the existing session; with ``ingest.cross_project_study = "reject"`` the C-STORE is refused
with a failure status and an ErrorComment, and the refusal is logged. Real ``dicomflow serve``, DCMTK
``storescu``.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from dcmtk import storescu
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian
from scu import store_file

from factories import DicomflowServer, make_study, write_files

pytestmark = pytest.mark.e2e
NOT_AUTHORIZED = 0x0124


def sessions_of(server: DicomflowServer, study_uid: str) -> dict[str, dict[str, Any]]:
    """Each session of the study in the hierarchy, by project label."""
    return {
        project["label"]: session
        for group in server.get_json("/hierarchy")
        for project in group["projects"]
        for subject in project["subjects"]
        for session in subject["sessions"]
        if session["study_instance_uid"] == study_uid
    }


@pytest.fixture(scope="module")
def rejecting(
    tmp_path_factory: pytest.TempPathFactory, free_port: Callable[[], int]
) -> Iterator[DicomflowServer]:
    running = DicomflowServer(
        tmp_path_factory.mktemp("rejecting") / "data",
        free_port(),
        free_port(),
        env={"DICOMFLOW_INGEST__CROSS_PROJECT_STUDY": "reject"},
    )
    try:
        running.start()
        yield running
    finally:
        running.stop()


def test_kp_called_ae_with_another_projects_study_opens_a_session_there(
    server: DicomflowServer, tmp_path: Path
) -> None:
    server.cli("projects", "create", "wall1")
    server.cli("projects", "create", "wall2")
    p2 = make_study(series=2, instances=2, PatientID="WALL2PATIENT", StudyDescription="wall2 visit")
    storescu(server.dimse_port, write_files(p2, tmp_path / "p2"), called_ae="kp-wall2")
    study_uid = p2[0].StudyInstanceUID
    before = sessions_of(server, study_uid)["wall2"]

    (mine,) = make_study(series=1, instances=1, PatientID="WALL1PATIENT", StudyDescription="wall1 visit")
    mine.StudyInstanceUID = study_uid
    identical = copy.deepcopy(p2[0])  # the very bytes wall2 holds
    storescu(server.dimse_port, write_files([mine, identical], tmp_path / "p1"), called_ae="kp-wall1")

    sessions = sessions_of(server, study_uid)
    assert sessions["wall2"] == before  # same series, counts, labels, rule
    assert sessions["wall1"]["placement_rule"] == "called-ae"
    assert sessions["wall1"]["counts"]["instances"] == 2
    assert {a["series_instance_uid"] for a in sessions["wall1"]["acquisitions"]} == {
        mine.SeriesInstanceUID,
        identical.SeriesInstanceUID,
    }
    assert (
        server.scalar(
            "SELECT count(*) FROM instances WHERE sop_instance_uid = ?", (identical.SOPInstanceUID,)
        )
        == 2
    )

    # nothing names a project (plain called AE, PatientID of no group): the oldest session keeps it, as before
    (plain,) = make_study(series=1, instances=1, PatientID="PLAIN")
    plain.StudyInstanceUID = study_uid
    storescu(server.dimse_port, write_files([plain], tmp_path / "plain"))
    assert sessions_of(server, study_uid)["wall2"]["counts"]["instances"] == 5
    assert sessions_of(server, study_uid)["wall1"] == sessions["wall1"]


def test_reject_setting_refuses_the_c_store_with_a_status_and_a_comment(
    rejecting: DicomflowServer, tmp_path: Path
) -> None:
    rejecting.cli("projects", "create", "wall1")
    rejecting.cli("projects", "create", "wall2")
    p2 = make_study(series=1, instances=2, PatientID="WALL2PATIENT")
    storescu(rejecting.dimse_port, write_files(p2, tmp_path / "p2"), called_ae="kp-wall2")
    (mine,) = make_study(series=1, instances=1, PatientID="WALL1PATIENT")
    mine.StudyInstanceUID = p2[0].StudyInstanceUID
    (path,) = write_files([mine], tmp_path / "p1")

    status = store_file(
        rejecting.dimse_port, path, CTImageStorage, ExplicitVRLittleEndian, called_ae="kp-wall1"
    )

    assert status.status == NOT_AUTHORIZED, f"status 0x{status.status:04X} ({status.comment!r})"
    assert status.comment.startswith("study is in another project"), status.comment
    assert "wall2" not in status.comment
    assert rejecting.http.get(f"/instances/{mine.SOPInstanceUID}").status_code == 404
    (event,) = rejecting.events(kind="rejected", object_uid=mine.SOPInstanceUID)
    assert event["reason"].startswith("cross-project-study:") and event["outcome"] == "failed"
    assert list(sessions_of(rejecting, mine.StudyInstanceUID)) == ["wall2"]
    # the same study sent into its own project is still taken
    (more,) = make_study(series=1, instances=1, PatientID="WALL2PATIENT")
    more.StudyInstanceUID = mine.StudyInstanceUID
    storescu(rejecting.dimse_port, write_files([more], tmp_path / "p2more"), called_ae="kp-wall2")
    assert sessions_of(rejecting, mine.StudyInstanceUID)["wall2"]["counts"]["instances"] == 3
