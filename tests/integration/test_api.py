"""The native HTTP API through the test client, on a generated index with real blobs."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import pydicom
import pytest

from apihelpers import ApiContext, Seeded, TestClient, api_settings
from dicomflow.api import create_app
from dicomflow.usecases.accounts import Role, create_token, create_user


def test_health_needs_no_token(tmp_path: Path) -> None:
    with TestClient(create_app(api_settings(tmp_path))) as client:
        response = client.get("/health")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_openapi_docs_are_served(api: ApiContext) -> None:
    assert api.client.get("/docs").status_code == 200
    paths = api.client.get("/openapi.json").json()["paths"]
    assert {"/api/v1/projects", "/api/v1/hierarchy", "/api/v1/series/{series_instance_uid}/download"} <= set(
        paths
    )


@pytest.mark.parametrize("authorization", [None, "Bearer not-a-token", "Basic dXNlcjpwdw==", "Bearer"])
def test_requests_without_a_valid_token_are_401(api: ApiContext, authorization: str | None) -> None:
    headers = {} if authorization is None else {"Authorization": authorization}
    response = api.client.get("/api/v1/projects", headers=headers)
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == "Bearer"
    assert response.json()["error"]["code"] == "unauthorized"


@pytest.mark.parametrize("role", [Role.VIEWER, Role.UPLOADER, Role.REVIEWER])
def test_only_admins_create_projects(api: ApiContext, role: Role) -> None:
    response = api.client.post("/api/v1/projects", json={"label": "New"}, headers=api.headers(role))
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "forbidden"
    assert "New" not in [p["label"] for p in api.client.get("/api/v1/projects", headers=api.headers()).json()]


def test_admin_creates_and_lists_projects(api: ApiContext) -> None:
    created = api.client.post(
        "/api/v1/projects", json={"label": "  Cardio ", "group": "heart"}, headers=api.headers(Role.ADMIN)
    )
    assert created.status_code == 201
    body = created.json()
    assert (body["group"], body["label"]) == ("heart", "Cardio")
    assert body["created_at"].endswith("Z") or body["created_at"].endswith("+00:00")
    listed = api.client.get("/api/v1/projects", headers=api.headers(Role.ADMIN)).json()
    assert [(p["group"], p["label"]) for p in listed] == [
        ("heart", "Cardio"),
        ("neuro", "Brain"),
        ("unknown", "Unsorted"),
    ]
    only_heart = api.client.get(
        "/api/v1/projects", params={"group": "HEART"}, headers=api.headers(Role.ADMIN)
    ).json()
    assert [p["label"] for p in only_heart] == ["Cardio"]


def test_project_labels_are_unique_per_group_ignoring_case(api: ApiContext) -> None:
    admin = api.headers(Role.ADMIN)
    response = api.client.post("/api/v1/projects", json={"label": "BRAIN", "group": "Neuro"}, headers=admin)
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "already-exists"
    elsewhere = api.client.post("/api/v1/projects", json={"label": "Brain", "group": "other"}, headers=admin)
    assert elsewhere.status_code == 201


def test_project_group_defaults_to_default(api: ApiContext) -> None:
    response = api.client.post("/api/v1/projects", json={"label": "Solo"}, headers=api.headers(Role.ADMIN))
    assert response.json()["group"] == "default"


def test_hierarchy_has_counts_and_placement(api: ApiContext) -> None:
    seeded = api.seeded
    groups = api.client.get("/api/v1/hierarchy", headers=api.headers()).json()
    assert [g["id"] for g in groups] == ["neuro", "unknown"]
    neuro, unknown = groups
    size = sum(len(item.data) for item in seeded.all_instances())
    assert neuro["counts"] == {
        "projects": 1,
        "subjects": 2,
        "sessions": 2,
        "acquisitions": 3,
        "instances": 6,
        "size": size,
    }
    assert unknown["counts"]["projects"] == 1
    assert unknown["projects"][0]["counts"]["instances"] == 0
    (brain,) = neuro["projects"]
    p001 = brain["subjects"][0]
    assert p001["label"] == "P001"
    (session,) = p001["sessions"]
    assert session["study_instance_uid"] == seeded.study_a
    assert session["placement_rule"] == "routing-string"
    assert "names group 'neuro'" in session["placement_reason"]
    assert session["counts"]["acquisitions"] == 2
    assert session["counts"]["instances"] == 5
    counts = {a["series_instance_uid"]: a["counts"]["instances"] for a in session["acquisitions"]}
    assert counts == {seeded.series["A1"]: 3, seeded.series["A2"]: 2}


def test_series_lists_instances_by_instance_number(api: ApiContext) -> None:
    seeded = api.seeded
    response = api.client.get(f"/api/v1/series/{seeded.series['A1']}", headers=api.headers())
    assert response.status_code == 200
    body = response.json()
    assert body["study_instance_uid"] == seeded.study_a
    assert (body["group"], body["project"], body["subject"]) == ("neuro", "Brain", "P001")
    assert body["modality"] == "CT"
    assert body["instance_count"] == 3
    assert [i["instance_number"] for i in body["instances"]] == [1, 2, 3]
    assert "blob_key" not in body["instances"][0]
    a2 = api.client.get(f"/api/v1/series/{seeded.series['A2']}", headers=api.headers()).json()
    assert [i["instance_number"] for i in a2["instances"]] == [1, None]


def test_instance_file_is_byte_identical(api: ApiContext) -> None:
    for stored in api.seeded.all_instances():
        response = api.client.get(f"/api/v1/instances/{stored.sop_instance_uid}/file", headers=api.headers())
        assert response.status_code == 200
        assert response.headers["content-type"] == "application/dicom"
        assert response.content == stored.data


def test_instance_header_is_dicom_json(api: ApiContext) -> None:
    stored = api.seeded.instances["A1"][0]
    response = api.client.get(f"/api/v1/instances/{stored.sop_instance_uid}", headers=api.headers())
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/dicom+json")
    body = response.json()
    assert body["00080018"] == {"vr": "UI", "Value": [stored.sop_instance_uid]}
    assert body["0020000E"]["Value"] == [stored.series_instance_uid]
    assert body["00200013"] == {"vr": "IS", "Value": [3]}
    assert "7FE00010" not in body  # read up to the pixel data only
    expected = pydicom.dcmread(io.BytesIO(stored.data), stop_before_pixels=True).to_json_dict()
    assert body == expected


def _zip_members(content: bytes) -> dict[str, bytes]:
    with zipfile.ZipFile(io.BytesIO(content)) as archive:
        assert archive.testzip() is None
        return {name: archive.read(name) for name in archive.namelist()}


def test_series_zip_members_are_byte_identical(api: ApiContext) -> None:
    seeded = api.seeded
    response = api.client.get(f"/api/v1/series/{seeded.series['A1']}/download", headers=api.headers())
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/zip"
    assert seeded.series["A1"] in response.headers["content-disposition"]
    expected = {f"{item.sop_instance_uid}.dcm": item.data for item in seeded.instances["A1"]}
    assert _zip_members(response.content) == expected


def test_session_zip_holds_the_whole_study(api: ApiContext) -> None:
    seeded = api.seeded
    response = api.client.get(f"/api/v1/sessions/{seeded.study_a}/download", headers=api.headers())
    assert response.status_code == 200
    members = _zip_members(response.content)
    study = [*seeded.instances["A1"], *seeded.instances["A2"]]
    assert members == {f"{item.sop_instance_uid}.dcm": item.data for item in study}


def test_events_newest_first_with_filters(api: ApiContext) -> None:
    seeded: Seeded = api.seeded
    url = "/api/v1/events"
    every = api.client.get(url, headers=api.headers(Role.ADMIN)).json()
    assert [e["kind"] for e in every] == ["stored", "placed", "placed"]
    assert set(every[0]) == {"id", "at", "kind", "actor", "object_uid", "outcome", "reason"}
    assert len(api.client.get(url, params={"limit": 2}, headers=api.headers(Role.ADMIN)).json()) == 2
    placed = api.client.get(url, params={"kind": "placed"}, headers=api.headers(Role.ADMIN)).json()
    assert {e["object_uid"] for e in placed} == {seeded.study_a, seeded.study_b}
    admin = api.headers(Role.ADMIN)
    about_b = api.client.get(url, params={"object_uid": seeded.study_b}, headers=admin).json()
    assert [e["reason"] for e in about_b] == [f"placed {seeded.study_b}"]
    refused = api.client.get(url, headers=api.headers(Role.VIEWER))  # the audit log is the admins'
    assert (refused.status_code, refused.json()["error"]["code"]) == (403, "forbidden")


def test_datasets_list_their_series(api: ApiContext) -> None:
    (dataset,) = api.client.get("/api/v1/datasets", headers=api.headers()).json()
    assert dataset["name"] == "cohort"
    (member,) = dataset["series"]
    assert member["series_instance_uid"] == api.seeded.series["A1"]
    assert member["study_instance_uid"] == api.seeded.study_a
    assert member["instance_count"] == 3
    assert (member["group"], member["project"]) == ("neuro", "Brain")


def test_datasets_show_only_series_of_the_callers_projects(api: ApiContext) -> None:
    application = api.client.app.state.application  # type: ignore[attr-defined]  # TestClient.app is typed as a bare ASGI app
    create_user(application, "outsider@example.org", "pw", Role.VIEWER)  # a member of no project
    token = create_token(application, "outsider@example.org")
    assert api.client.get("/api/v1/datasets", headers={"Authorization": f"Bearer {token}"}).json() == []
