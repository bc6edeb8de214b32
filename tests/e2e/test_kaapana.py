"""Kaapana's AE-title routing (specs/flywheel_kaapana.md 2.2) against the running receiver.

Called AE ``kp-<project>`` puts everything in that existing project (else the association is rejected with
reason 0x07 "called AE title not recognised"); calling AE ``kp-<dataset>`` adds the series to the dataset.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
from dcmtk import storescu
from pydicom.dataset import Dataset
from scu import Rejection, try_associate

from factories import DicomflowServer, make_study, write_files

pytestmark = pytest.mark.e2e

CALLED_AE_NOT_RECOGNISED = Rejection(result=0x01, source=0x01, reason=0x07)


def sessions_of(server: DicomflowServer, study_uid: str) -> list[tuple[str, str, dict[str, Any]]]:
    """``(group id, project label, session)`` of every session of the study in the hierarchy."""
    return [
        (group["id"], project["label"], session)
        for group in server.get_json("/hierarchy")
        for project in group["projects"]
        for subject in project["subjects"]
        for session in subject["sessions"]
        if session["study_instance_uid"] == study_uid
    ]


def dataset(server: DicomflowServer, name: str) -> dict[str, Any]:
    [found] = [d for d in server.get_json("/datasets") if d["name"] == name]
    return dict(found)


def series_uids(study: list[Dataset]) -> set[str]:
    return {ds.SeriesInstanceUID for ds in study}


def test_kaapana_dcmsend_line_places_in_project_and_dataset(server: DicomflowServer, tmp_path: Path) -> None:
    server.cli("projects", "create", "study1")
    study = make_study(series=2, instances=3)
    folder = tmp_path / "export"
    write_files(study[:3], folder / "series1")
    write_files(study[3:], folder / "series2")

    # The line Kaapana's own dcmsend container runs (its workflow "lung", project "study1").
    done = subprocess.run(
        [
            "dcmsend",
            "-v",
            "127.0.0.1",
            str(server.dimse_port),
            "--aetitle",
            "kp-lung",
            "--call",
            "kp-study1",
            "--scan-directories",
            "--scan-pattern",
            "*.dcm",
            "--recurse",
            str(folder),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr

    [(group, project, session)] = sessions_of(server, study[0].StudyInstanceUID)
    assert project == "study1"
    assert session["counts"]["instances"] == 6
    assert session["placement_rule"] == "called-ae"
    for series_uid in series_uids(study):
        info = server.get_json(f"/series/{series_uid}")
        assert (info["group"], info["project"], info["instance_count"]) == (group, "study1", 3)
    lung = dataset(server, "lung")
    assert {s["series_instance_uid"] for s in lung["series"]} == series_uids(study)
    assert all(s["instance_count"] == 3 for s in lung["series"])
    for ds in study:
        assert server.http.get(f"/instances/{ds.SOPInstanceUID}").status_code == 200


def test_kp_calling_ae_adds_series_to_dataset_without_choosing_project(
    server: DicomflowServer, tmp_path: Path
) -> None:
    study = make_study(series=2, instances=1, PatientID="KPDS01")
    storescu(server.dimse_port, write_files(study, tmp_path), calling_ae="kp-cohort")

    [(_group, project, session)] = sessions_of(server, study[0].StudyInstanceUID)
    assert session["placement_rule"] != "called-ae"
    assert project != "study1"
    assert {s["series_instance_uid"] for s in dataset(server, "cohort")["series"]} == series_uids(study)


def test_unknown_kp_project_is_rejected_and_nothing_stored(server: DicomflowServer, tmp_path: Path) -> None:
    study = make_study(series=1, instances=2)
    before = server.instance_count()

    done = storescu(
        server.dimse_port,
        write_files(study, tmp_path),
        called_ae="kp-nosuch",
        calling_ae="KP-TEST",
        check=False,
    )

    assert done.returncode != 0
    assert server.instance_count() == before
    for ds in study:
        assert server.http.get(f"/instances/{ds.SOPInstanceUID}").status_code == 404
    rejected = [e for e in server.events(kind="rejected") if "kp-nosuch" in e["reason"]]
    assert rejected, "no 'rejected' event names the called AE title"
    assert rejected[0]["reason"].startswith("unknown-project:")
    assert rejected[0]["outcome"] == "failed"
    assert rejected[0]["actor"].startswith("KP-TEST@"), (
        f"the event's actor lacks the calling AE title: {rejected[0]['actor']!r}"
    )


def test_unknown_kp_project_rejection_reaches_the_requestor(server: DicomflowServer) -> None:
    """The A-ASSOCIATE-RJ (permanent, service user, reason 7) must be sent before the socket is closed,
    every time, not be lost in a race with the connection shutdown."""
    outcomes = [try_associate(server.dimse_port, "kp-nosuch") for _ in range(8)]

    assert outcomes == [CALLED_AE_NOT_RECOGNISED] * 8


def test_known_kp_project_is_accepted(server: DicomflowServer) -> None:
    server.cli("projects", "create", "accepted1")

    assert try_associate(server.dimse_port, "kp-accepted1") is None
