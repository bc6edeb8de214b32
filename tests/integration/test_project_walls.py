"""Projects are walls (issue 9, item 6): an uploader of p1 who sends an instance carrying p2's
StudyInstanceUID gets a session of its own in p1; p2's session, series, study versions and labels stay as they
were; nothing p1's user is answered names p2's labels or UIDs; a 404 for a UID or project of p2 is
byte-identical to the 404 for one that does not exist; with ``ingest.cross_project_study = "reject"`` the
instance is refused with its own code. Through the real API (FastAPI's test client, real index, store, flow).
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid

from dicomflow.api import create_app
from dicomflow.config import Settings
from dicomflow.usecases.accounts import Role, create_token, create_user, grant
from dicomflow.usecases.icometrix import Kind, make_id
from factories import create_project, make_study, to_bytes
from waiting import wait_until

pytestmark = pytest.mark.usefixtures("index_url")  # each test on SQLite and on PostgreSQL (tests/pg.py)

PLUGIN = str(Path(__file__).parents[1] / "plugins" / "toy_report_types.py")
SECRET_PATIENT = "P2SECRETPATIENT"
SECRET_SESSION = "P2 secret session"
SECRET_SERIES = "P2 secret series"


@dataclass
class Walls:
    client: TestClient
    tokens: dict[str, str]
    project_ids: dict[str, int]

    def h(self, who: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[who]}"}

    def get(self, url: str, who: str) -> Any:
        return self.client.get(url, headers=self.h(who))

    def upload(
        self, project: str, who: str, files: list[bytes], report_type: str | None = None
    ) -> dict[str, Any]:
        started = self.client.post(
            "/api/v1/uploads", json={"project": project, "report_type": report_type}, headers=self.h(who)
        )
        assert started.status_code == 201, started.text
        upload_id = started.json()["id"]
        for index, data in enumerate(files):
            url = f"/api/v1/uploads/{upload_id}/files/f{index}.dcm"
            sent = self.client.put(
                url, content=data, headers={**self.h(who), "Content-Type": "application/dicom"}
            )
            assert sent.status_code == 200, sent.text
        done = self.client.post(f"/api/v1/uploads/{upload_id}/complete", headers=self.h(who))
        assert done.status_code == 202, done.text

        def finished() -> dict[str, Any] | None:
            upload = self.get(f"/api/v1/uploads/{upload_id}", who).json()
            return None if upload["state"] in ("uploading", "importing") else dict(upload)

        return wait_until(finished, message=f"upload {upload_id} still importing")

    def settled(self, upload_id: str, who: str) -> list[dict[str, Any]]:
        """The upload's studies once they left Importing."""

        def settled() -> list[dict[str, Any]] | None:
            studies = self.get(f"/api/v1/uploads/{upload_id}/studies", who).json()
            return list(studies) if all(s["stage"] != "Importing" for s in studies) else None

        return wait_until(settled, message=f"the studies of upload {upload_id} are still importing")


def _walls(tmp_path: Path, policy: str = "separate") -> Iterator[Walls]:
    settings = Settings.model_validate(
        {
            "data_dir": tmp_path / "data",
            "storage": {"fsync": False},
            "processing": {"plugins": [PLUGIN]},
            "ingest": {"cross_project_study": policy},
        }
    )
    app = create_app(settings)
    engine = app.state.engine
    projects = {label: create_project(engine, label, "lab").id for label in ("p1", "p2")}
    tokens = {}
    for who, project in (("u1", "p1"), ("u2", "p2")):
        create_user(app.state.application, f"{who}@example.org", "pw", Role.UPLOADER)
        tokens[who] = create_token(app.state.application, f"{who}@example.org")
        grant(app.state.application, f"{who}@example.org", projects[project], Role.UPLOADER)
    create_user(app.state.application, "admin@example.org", "pw", Role.ADMIN)
    tokens["admin"] = create_token(app.state.application, "admin@example.org")
    with TestClient(app) as client:
        yield Walls(client, tokens, projects)


@pytest.fixture
def walls(tmp_path: Path) -> Iterator[Walls]:
    yield from _walls(tmp_path)


@pytest.fixture
def rejecting(tmp_path: Path) -> Iterator[Walls]:
    yield from _walls(tmp_path, "reject")


def _p2_study() -> list[Dataset]:
    return make_study(
        series=2,
        instances=2,
        PatientID=SECRET_PATIENT,
        StudyDescription=SECRET_SESSION,
        SeriesDescription=SECRET_SERIES,
    )


def _p1_instance(study_uid: str) -> Dataset:
    """A new series of p1's own, carrying p2's StudyInstanceUID."""
    (ds,) = make_study(series=1, instances=1, PatientID="P1PATIENT", StudyDescription="p1 visit")
    ds.StudyInstanceUID = study_uid
    return ds


def _secrets(p2: list[Dataset], sent_by_p1: list[Dataset]) -> set[str]:
    """What p1's user must never read: p2's labels and the UIDs only p2 holds."""
    own = {uid for ds in sent_by_p1 for uid in (ds.SeriesInstanceUID, ds.SOPInstanceUID)}
    p2_uids = {uid for ds in p2 for uid in (ds.SeriesInstanceUID, ds.SOPInstanceUID)} - own
    return {SECRET_PATIENT, SECRET_SESSION, SECRET_SERIES, "p2", "u2@example.org"} | p2_uids


def _assert_hides(response: Any, secrets: set[str]) -> None:
    assert response.status_code == 200, response.text
    leaked = sorted(s for s in secrets if s in response.text)
    assert not leaked, f"{response.request.url} shows {leaked}"


def _p2_state(walls: Walls, p2: list[Dataset]) -> tuple[str, dict[str, Any], list[Any]]:
    """What p2's uploader sees of p2: the tree, each series, and the study versions with their history."""
    series = {
        ds.SeriesInstanceUID: walls.get(f"/api/v1/series/{ds.SeriesInstanceUID}", "u2").json() for ds in p2
    }
    studies = walls.get("/api/v1/studies", "u2").json()
    versions = [(s["id"], s["version"], s["upload_id"], [h["actor"] for h in s["history"]]) for s in studies]
    return walls.get("/api/v1/hierarchy", "u2").text, series, versions


def test_an_upload_with_another_projects_study_uid_opens_a_session_of_its_own(walls: Walls) -> None:
    p2 = _p2_study()
    p2_upload = walls.upload("p2", "u2", [to_bytes(ds) for ds in p2], report_type="toy_count")
    assert p2_upload["instances_imported"] == 4
    walls.settled(p2_upload["id"], "u2")
    p2_before = _p2_state(walls, p2)

    study_uid = p2[0].StudyInstanceUID
    sent = _p1_instance(study_uid)
    p1_upload = walls.upload("p1", "u1", [to_bytes(sent)], report_type="toy_count")

    assert (p1_upload["state"], p1_upload["instances_imported"], p1_upload["errors"]) == ("imported", 1, [])
    (p1_study,) = walls.settled(p1_upload["id"], "u1")
    assert (p1_study["group"], p1_study["project"], p1_study["version"]) == ("lab", "p1", 1)
    assert p1_study["study_instance_uid"] == study_uid and p1_study["upload_id"] == p1_upload["id"]
    assert p1_study["subject"] == "P1PATIENT"
    # p2 is untouched: same tree, series, instances and labels; no new version, none requested by u1
    assert _p2_state(walls, p2) == p2_before

    # nothing p1's uploader reads names p2's labels or UIDs
    secrets = _secrets(p2, [sent])
    p1 = walls.project_ids["p1"]
    urls = [
        f"/api/v1/uploads/{p1_upload['id']}",
        f"/api/v1/uploads/{p1_upload['id']}/studies",
        "/api/v1/uploads",
        f"/api/v1/series/{sent.SeriesInstanceUID}",
        f"/api/v1/instances/{sent.SOPInstanceUID}",
        f"/api/v1/studies/{study_uid}",
        f"/api/v1/studies/{study_uid}/results",
        "/api/v1/studies",
        "/api/v1/hierarchy",
        "/api/v1/datasets",
        "/api/v1/projects",
        "/api/v1/jobs",
    ]
    for url in urls:
        _assert_hides(walls.get(url, "u1"), secrets)
    zipped = walls.get(f"/api/v1/sessions/{study_uid}/download", "u1")
    assert zipped.status_code == 200 and all(s.encode() not in zipped.content for s in secrets - {"p2"})
    cookie = {"Cookie": f"dicomflow_session={walls.tokens['u1']}"}
    base = f"/uploads-service/api/v1/projects/{make_id(Kind.PROJECT, p1)}/dicom-uploads/{p1_upload['id']}"
    study_uploads = walls.client.get(f"{base}/study-uploads", headers=cookie)
    _assert_hides(study_uploads, secrets)
    (item,) = study_uploads.json()["results"]
    study_url = (
        f"/storage-service/api/v1/projects/{item['project_id']}/patients/{item['patient_id']}"
        f"/studies/{item['study_id']}"
    )
    for url in (
        study_url,
        f"{study_url}/series",
        f"/customer-reports-service/api/v2/projects/{item['project_id']}/customer-reports",
    ):
        _assert_hides(walls.client.get(url, headers=cookie), secrets)


def test_an_identical_file_sent_into_another_project_lands_there_too(walls: Walls) -> None:
    p2 = _p2_study()
    walls.settled(walls.upload("p2", "u2", [to_bytes(ds) for ds in p2], report_type="toy_count")["id"], "u2")
    p2_before = _p2_state(walls, p2)
    identical = copy.deepcopy(p2[0])  # the very bytes p2 holds

    p1_upload = walls.upload("p1", "u1", [to_bytes(identical)], report_type="toy_count")

    assert (p1_upload["instances_imported"], p1_upload["errors"]) == (1, [])
    (p1_study,) = walls.settled(p1_upload["id"], "u1")
    assert (p1_study["project"], p1_study["version"]) == ("p1", 1)  # a new session, not p2's "duplicate"
    mine = walls.get(f"/api/v1/series/{identical.SeriesInstanceUID}", "u1").json()
    assert (mine["project"], mine["instance_count"]) == ("p1", 1)
    file = walls.get(f"/api/v1/instances/{identical.SOPInstanceUID}/file", "u1")
    assert file.status_code == 200 and file.content == to_bytes(identical)
    assert _p2_state(walls, p2) == p2_before
    # sent again into p1: an identical re-send there, nothing new anywhere
    again = walls.upload("p1", "u1", [to_bytes(identical)])
    assert again["instances_imported"] == 1
    assert walls.get(f"/api/v1/series/{identical.SeriesInstanceUID}", "u1").json() == mine
    assert _p2_state(walls, p2) == p2_before


def test_404s_for_another_projects_uids_are_those_for_unknown_ones(walls: Walls) -> None:
    p2 = _p2_study()
    walls.upload("p2", "u2", [to_bytes(ds) for ds in p2])
    walls.upload("p1", "u1", [to_bytes(_p1_instance(p2[0].StudyInstanceUID))])
    hidden, unknown = p2[1], make_study(series=1, instances=1)[0]

    for path in (
        "/api/v1/series/{series}",
        "/api/v1/series/{series}/download",
        "/api/v1/instances/{sop}",
        "/api/v1/instances/{sop}/file",
    ):
        answers = [
            walls.get(path.format(series=ds.SeriesInstanceUID, sop=ds.SOPInstanceUID), "u1")
            for ds in (hidden, unknown)
        ]
        assert [a.status_code for a in answers] == [404, 404], path
        assert answers[0].content == answers[1].content, path
        assert (
            hidden.SeriesInstanceUID not in answers[0].text and hidden.SOPInstanceUID not in answers[0].text
        )

    # a study only p2 holds, and one nobody holds
    only_p2 = _p2_study()
    walls.upload("p2", "u2", [to_bytes(ds) for ds in only_p2])
    for path in ("/api/v1/sessions/{uid}/download", "/api/v1/studies/{uid}", "/api/v1/studies/{uid}/results"):
        answers = [
            walls.get(path.format(uid=uid), "u1") for uid in (only_p2[0].StudyInstanceUID, generate_uid())
        ]
        assert [a.status_code for a in answers] == [404, 404], path
        assert answers[0].content == answers[1].content, path


def test_no_such_project_and_a_project_you_may_not_see_answer_alike(walls: Walls) -> None:
    answers = [
        walls.client.post("/api/v1/uploads", json={"project": label}, headers=walls.h("u1"))
        for label in ("p2", "nope")
    ]
    assert [a.status_code for a in answers] == [404, 404]
    assert answers[0].content == answers[1].content
    rules = [walls.get(f"/api/v1/projects/{label}/rules", "u1") for label in ("p2", "nope")]
    assert [a.status_code for a in rules] == [404, 404]
    assert rules[0].content == rules[1].content
    cookie = {"Cookie": f"dicomflow_session={walls.tokens['u1']}"}
    missing = max(walls.project_ids.values()) + 1
    icometrix = [
        walls.client.get(f"/storage-service/api/v1/projects/{make_id(Kind.PROJECT, n)}", headers=cookie)
        for n in (walls.project_ids["p2"], missing)
    ]
    assert [a.status_code for a in icometrix] == [404, 404]
    assert icometrix[0].content == icometrix[1].content


def test_the_reject_setting_refuses_another_projects_study_with_its_code(rejecting: Walls) -> None:
    p2 = _p2_study()
    rejecting.upload("p2", "u2", [to_bytes(ds) for ds in p2])
    refused = _p1_instance(p2[0].StudyInstanceUID)
    fresh = make_study(series=1, instances=1)[0]

    upload = rejecting.upload("p1", "u1", [to_bytes(refused), to_bytes(fresh)])

    assert upload["instances_imported"] == 1
    (error,) = upload["errors"]
    assert error["code"] == "cross-project-study"
    assert SECRET_PATIENT not in json.dumps(upload) and "p2" not in error["message"]
    assert rejecting.get(f"/api/v1/series/{refused.SeriesInstanceUID}", "admin").status_code == 404
    events = rejecting.get(f"/api/v1/events?object_uid={refused.SOPInstanceUID}", "admin").json()
    assert [(e["kind"], e["outcome"]) for e in events] == [("rejected", "failed")]
    assert events[0]["reason"].startswith("cross-project-study:")
    # the same study sent into p2 itself is still taken
    more = make_study(series=1, instances=1, PatientID=SECRET_PATIENT)[0]
    more.StudyInstanceUID = p2[0].StudyInstanceUID
    assert rejecting.upload("p2", "u2", [to_bytes(more)])["instances_imported"] == 1
