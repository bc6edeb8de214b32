"""Upload sessions through the native API (FastAPI's test client, real index, store and flow): files in
parallel, zips opened safely, per-file errors, completion and import, expiry, and who may do what."""

from __future__ import annotations

import io
import threading
import time
import zipfile
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from dicomflow.api import create_app
from dicomflow.config import Settings
from dicomflow.usecases.accounts import Role, create_token, create_user, grant
from factories import create_project, make_study, nested_sequences, to_bytes
from waiting import wait_until

pytestmark = pytest.mark.usefixtures("index_url")  # each test on SQLite and on PostgreSQL (tests/pg.py)

PLUGIN = str(Path(__file__).parents[1] / "plugins" / "toy_report_types.py")
PNG = b"\x89PNG\r\n\x1a\n" + b"\0" * 64


class Api:
    """A test client with one user per role in project ``A`` and an admin token."""

    def __init__(self, client: TestClient, tokens: dict[str, str], data_dir: Path) -> None:
        self.client = client
        self.tokens = tokens
        self.data_dir = data_dir

    def h(self, who: str = "admin") -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[who]}"}

    def start(self, project: str = "A", report_type: str | None = None, who: str = "admin") -> dict[str, Any]:
        response = self.client.post(
            "/api/v1/uploads", json={"project": project, "report_type": report_type}, headers=self.h(who)
        )
        assert response.status_code == 201, response.text
        return dict(response.json())

    def put(self, upload_id: str, name: str, data: bytes, who: str = "admin") -> Any:
        files = {"file": (name, data, "application/octet-stream")}
        return self.client.put(f"/api/v1/uploads/{upload_id}/files", files=files, headers=self.h(who))

    def put_raw(self, upload_id: str, name: str, data: bytes, who: str = "admin") -> Any:
        url = f"/api/v1/uploads/{upload_id}/files/{name}"
        return self.client.put(
            url, content=data, headers={**self.h(who), "Content-Type": "application/dicom"}
        )

    def complete_and_wait(self, upload_id: str) -> dict[str, Any]:
        response = self.client.post(f"/api/v1/uploads/{upload_id}/complete", headers=self.h())
        assert response.status_code == 202, response.text

        def finished() -> dict[str, Any] | None:
            upload = self.client.get(f"/api/v1/uploads/{upload_id}", headers=self.h()).json()
            return None if upload["state"] in ("uploading", "importing") else dict(upload)

        return wait_until(finished, message=f"upload {upload_id} still importing")

    def wait_for_checks(self, upload_id: str) -> dict[str, Any]:
        """The upload's one study, once it has left Importing."""

        def checked() -> dict[str, Any] | None:
            (study,) = self.client.get(f"/api/v1/uploads/{upload_id}/studies", headers=self.h()).json()
            return None if study["stage"] == "Importing" else dict(study)

        return wait_until(checked, message=f"the study of upload {upload_id} is still importing")


@pytest.fixture
def api(tmp_path: Path) -> Iterator[Api]:
    settings = Settings.model_validate(
        {
            "data_dir": tmp_path / "data",
            "storage": {"fsync": False},
            "processing": {"plugins": [PLUGIN]},
            "uploads": {"max_zip_ratio": 50.0},
        }
    )
    app = create_app(settings)
    engine = app.state.engine
    a, _ = create_project(engine, "A"), create_project(engine, "B")
    tokens = {}
    for who, role in [("admin", Role.ADMIN), ("uploader", Role.UPLOADER), ("viewer", Role.VIEWER)]:
        create_user(
            app.state.application, f"{who}@example.org", "pw", Role.ADMIN if who == "admin" else Role.VIEWER
        )
        tokens[who] = create_token(app.state.application, f"{who}@example.org")
        if who != "admin":
            grant(app.state.application, f"{who}@example.org", a.id, role)
    with TestClient(app) as client:
        yield Api(client, tokens, settings.data_dir)


def test_files_in_parallel_are_imported_and_the_study_runs_its_report_type(api: Api) -> None:
    study = make_study(series=2, instances=4)
    upload = api.start(report_type="toy_count", who="uploader")
    assert upload["state"] == "uploading" and upload["report_type"] == "toy_count"
    with ThreadPoolExecutor(10) as pool:
        answers = list(
            pool.map(lambda ds: api.put(upload["id"], "same-name.dcm", to_bytes(ds), "uploader"), study)
        )
    assert all(a.status_code == 200 for a in answers)
    names = api.client.get(f"/api/v1/uploads/{upload['id']}/files", headers=api.h()).json()["files"]
    assert len(names) == 8 and all(n.endswith("_same-name.dcm") for n in names)  # no collision

    done = api.complete_and_wait(upload["id"])

    assert (done["state"], done["instances_imported"], done["errors"]) == ("imported", 8, [])
    assert done["study_instance_uids"] == [study[0].StudyInstanceUID]
    found = api.wait_for_checks(upload["id"])  # the import is over; the checks follow
    assert found["report_types"] == ["toy_count"] and found["upload_id"] == upload["id"]
    assert found["stage"] == "Processing" and found["jobs"][0]["state"] == "queued"
    assert api.client.get(f"/api/v1/uploads/{upload['id']}/files", headers=api.h()).json() == {"files": []}


def _zip(members: list[tuple[str, bytes]], symlink: str | None = None) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in members:
            archive.writestr(name, data)
        if symlink:
            info = zipfile.ZipInfo("link.dcm")
            info.external_attr = 0o120777 << 16
            archive.writestr(info, symlink)
    return buffer.getvalue()


def test_bad_input_is_refused_file_by_file_and_the_rest_imported(api: Api, tmp_path: Path) -> None:
    good = make_study(series=1, instances=3)
    truncated = to_bytes(make_study(series=1, instances=1)[0])[:-300]
    archive = _zip(
        [
            ("ok/1.dcm", to_bytes(good[1])),
            ("../../escape.dcm", to_bytes(good[2])),
            ("/etc/absolute.dcm", to_bytes(good[2])),
            ("inner.zip", _zip([("x.dcm", b"x")])),
            ("bomb.bin", b"\0" * (30 * 1024 * 1024)),
        ],
        symlink="/etc/passwd",
    )
    upload = api.start()
    for name, data in [
        ("a.dcm", to_bytes(good[0])),
        ("img.png", PNG),
        ("cut.dcm", truncated),
        ("s.zip", archive),
    ]:
        assert api.put(upload["id"], name, data).status_code == 200
    assert api.put(upload["id"], "../../../../tmp/evil.dcm", to_bytes(good[2])).status_code == 200

    done = api.complete_and_wait(upload["id"])

    errors = {e["file"]: e for e in done["errors"]}
    assert done["instances_imported"] == 3  # a.dcm, ok/1.dcm, and the file whose name tried to escape
    assert errors["img.png"]["code"] == "invalid-instance"
    assert errors["cut.dcm"]["code"] == "invalid-instance" and "truncated" in errors["cut.dcm"]["message"]
    reasons = {name.split(":", 1)[1]: e["message"] for name, e in errors.items() if name.startswith("s.zip:")}
    assert "absolute path" in reasons["/etc/absolute.dcm"]
    assert "'..'" in reasons["../../escape.dcm"]
    assert "symbolic link" in reasons["link.dcm"]
    assert "nested zip" in reasons["inner.zip"]
    assert "zip bomb" in reasons["bomb.bin"]
    assert not (tmp_path / "escape.dcm").exists() and not Path("/tmp/evil.dcm").exists()
    outside = [p for p in tmp_path.rglob("*") if api.data_dir not in p.parents and p != api.data_dir]
    assert outside == []  # nothing written outside the data directory


def test_a_file_sent_as_the_request_body_is_imported_like_a_part(api: Api) -> None:
    study = make_study(series=1, instances=4)
    upload = api.start(who="uploader")
    first = api.put_raw(upload["id"], "one.dcm", to_bytes(study[0]), "uploader")
    assert first.status_code == 200, first.text
    (received,) = first.json()["received"]
    assert received["name"].endswith("_one.dcm") and received["size"] == len(to_bytes(study[0]))
    zipped = api.put_raw(
        upload["id"], "rest.zip", _zip([(f"{i}.dcm", to_bytes(ds)) for i, ds in enumerate(study[1:3])])
    )
    assert zipped.status_code == 200, zipped.text
    data = to_bytes(study[3])
    chunks = (data[i : i + 1000] for i in range(0, len(data), 1000))  # no length given: spooled
    headers = {**api.h("uploader"), "Content-Type": "application/dicom"}
    streamed = api.client.put(
        f"/api/v1/uploads/{upload['id']}/files/last.dcm", content=chunks, headers=headers
    )
    assert (streamed.status_code, streamed.json()["received"][0]["size"]) == (200, len(data))
    assert api.put_raw(upload["id"], "x.dcm", to_bytes(study[0]), "viewer").status_code == 403
    uploads = api.client.app.state.uploads  # type: ignore[attr-defined]  # TestClient.app is typed as a bare ASGI app
    uploads.settings = uploads.settings.with_overrides(**{"uploads.max_file_bytes": 100})
    big = api.put_raw(upload["id"], "big.dcm", to_bytes(study[0]))
    assert (big.status_code, big.json()["error"]["code"]) == (413, "too-large")

    done = api.complete_and_wait(upload["id"])

    assert (done["state"], done["instances_imported"], done["errors"]) == ("imported", 4, [])


def test_the_upload_lane_checks_as_the_api_does(api: Api) -> None:
    upload = api.start()
    url = f"/api/v1/uploads/{upload['id']}/files/a.dcm"
    data = to_bytes(make_study(series=1, instances=1)[0])

    anonymous = api.client.put(url, content=data)
    assert (anonymous.status_code, anonymous.json()["error"]["code"]) == (401, "unauthorized")
    assert anonymous.headers["WWW-Authenticate"] == "Bearer"
    forged = api.client.put(url, content=data, headers={"Authorization": "Bearer nope"})
    assert forged.status_code == 401
    unknown = api.put_raw("7d7c1e0e-6f55-4d8e-9a55-000000000000", "a.dcm", data)
    assert (unknown.status_code, unknown.json()["error"]["code"]) == (404, "not-found")
    assert api.put_raw("../../etc", "a.dcm", data).status_code == 404
    assert api.put_raw(upload["id"], "a.dcm", data, "viewer").json()["error"]["code"] == "forbidden"
    assert api.put_raw(upload["id"], "a.dcm", data).status_code == 200
    api.complete_and_wait(upload["id"])
    late = api.put_raw(upload["id"], "b.dcm", data)
    assert (late.status_code, late.json()["error"]["code"]) == (409, "invalid-state")


def test_studies_a_stop_left_unchecked_are_checked_at_the_next_start(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    uploads = api.client.app.state.uploads  # type: ignore[attr-defined]  # TestClient.app is typed as a bare ASGI app
    upload = api.start(report_type="toy_count")
    for ds in make_study(series=1, instances=2):
        api.put(upload["id"], "x.dcm", to_bytes(ds))
    with monkeypatch.context() as stopped:
        stopped.setattr(uploads.flow, "promote", lambda study_id: None)  # the stop came before the checks
        done = api.complete_and_wait(upload["id"])
    assert done["state"] == "imported"
    (study,) = api.client.get(f"/api/v1/uploads/{upload['id']}/studies", headers=api.h()).json()
    assert study["stage"] == "Importing"

    uploads.resume()

    assert api.wait_for_checks(upload["id"])["stage"] == "Processing"


def test_an_upload_without_dicom_says_so(api: Api) -> None:
    upload = api.start(report_type="toy_count")
    api.put(upload["id"], "notes.txt", b"hello")
    done = api.complete_and_wait(upload["id"])
    assert done["state"] == "failed"
    assert done["summary_errors"] == ["No DICOM files found (every file was refused)"]
    assert done["errors"][0]["file"] == "notes.txt"


def test_abandoned_uploads_expire_and_their_files_go(api: Api) -> None:
    upload = api.start()
    api.put(upload["id"], "a.dcm", to_bytes(make_study(series=1, instances=1)[0]))
    uploads = api.client.app.state.uploads  # type: ignore[attr-defined]  # TestClient.app is typed as a bare ASGI app
    uploads.settings = uploads.settings.with_overrides(**{"uploads.expire_after": 0.0})
    api.put(upload["id"], "b.dcm", b"x")  # refreshes the expiry, now to "immediately"
    time.sleep(0.01)
    assert uploads.expire() == 1
    assert api.client.get(f"/api/v1/uploads/{upload['id']}", headers=api.h()).json()["state"] == "expired"
    assert not (api.data_dir / "blobs" / "uploads" / upload["id"]).exists()
    late = api.put(upload["id"], "c.dcm", b"x")
    assert (late.status_code, late.json()["error"]["code"]) == (409, "invalid-state")


def test_who_may_do_what(api: Api) -> None:
    assert api.client.post("/api/v1/uploads", json={"project": "A"}).status_code == 401
    refused = api.client.post("/api/v1/uploads", json={"project": "A"}, headers=api.h("viewer"))
    assert (refused.status_code, refused.json()["error"]["code"]) == (403, "forbidden")
    hidden = api.client.post("/api/v1/uploads", json={"project": "B"}, headers=api.h("uploader"))
    assert hidden.status_code == 404
    assert [p["label"] for p in api.client.get("/api/v1/projects", headers=api.h("viewer")).json()] == ["A"]
    upload_b = api.start(project="B")
    assert api.client.get(f"/api/v1/uploads/{upload_b['id']}", headers=api.h("viewer")).status_code == 404
    assert api.client.get("/api/v1/uploads", headers=api.h("viewer")).json() == []
    unknown = api.client.post(
        "/api/v1/uploads", json={"project": "A", "report_type": "nope"}, headers=api.h()
    )
    assert (unknown.status_code, unknown.json()["error"]["code"]) == (422, "unknown-report-type")


def _corrupt(archive: bytes, name: str, garbage: bytes) -> bytes:
    """``archive`` with the compressed data of member ``name`` overwritten (its headers left intact)."""
    with zipfile.ZipFile(io.BytesIO(archive)) as zf:
        info = zf.getinfo(name)
    start = info.header_offset + 30 + len(info.filename.encode()) + len(info.extra)
    at = start + (8 if info.compress_type == zipfile.ZIP_BZIP2 else 0)  # keep bz2's stream header
    data = bytearray(archive)
    data[at : at + len(garbage)] = garbage
    return bytes(data)


def test_corrupt_zip_members_are_reported_and_the_valid_ones_imported(api: Api) -> None:
    study = make_study(series=1, instances=3)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("good.dcm", to_bytes(study[0]), zipfile.ZIP_DEFLATED)
        archive.writestr("deflate.dcm", to_bytes(study[1]), zipfile.ZIP_DEFLATED)
        archive.writestr("bz2.dcm", to_bytes(study[2]), zipfile.ZIP_BZIP2)
        archive.writestr("also-good.dcm", to_bytes(make_study(series=1, instances=1)[0]), zipfile.ZIP_STORED)
    data = _corrupt(buffer.getvalue(), "deflate.dcm", b"\xff" * 64)  # an invalid deflate block
    data = _corrupt(data, "bz2.dcm", b"\x00" * 64)
    upload = api.start()
    for sent in (api.put(upload["id"], "a.zip", data), api.put_raw(upload["id"], "b.zip", data)):
        assert sent.status_code == 200, sent.text

    done = api.complete_and_wait(upload["id"])

    assert done["instances_imported"] == 4  # good.dcm and also-good.dcm, twice (the same: not new)
    errors = {e["file"]: e for e in done["errors"]}
    assert set(errors) == {f"{z}:{m}" for z in ("a.zip", "b.zip") for m in ("deflate.dcm", "bz2.dcm")}
    assert all(e["code"] == "refused-archive-member" and "corrupt" in e["message"] for e in errors.values())


def test_a_deeply_nested_sequence_is_an_invalid_instance(api: Api) -> None:
    data = nested_sequences(make_study(series=1, instances=1)[0], 5000)
    upload = api.start()
    assert api.put_raw(upload["id"], "deep.dcm", data).status_code == 200
    assert api.put(upload["id"], "deep2.dcm", data).status_code == 200

    done = api.complete_and_wait(upload["id"])

    assert sorted((e["file"], e["code"]) for e in done["errors"]) == [
        ("deep.dcm", "invalid-instance"),
        ("deep2.dcm", "invalid-instance"),
    ]
    assert "nests sequences too deeply" in done["errors"][0]["message"]


def test_completing_while_files_are_in_flight_refuses_or_keeps_each_file(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    uploads = api.client.app.state.uploads  # type: ignore[attr-defined]  # TestClient.app is typed as a bare ASGI app
    slow_ingest = type(uploads._ingestor()).ingest_bytes

    in_flight = threading.Event()

    def slowly(self: Any, *args: Any, **kwargs: Any) -> Any:
        in_flight.set()
        time.sleep(0.3)  # the fault: each file takes a while, so completion meets files in flight
        return slow_ingest(self, *args, **kwargs)

    monkeypatch.setattr(type(uploads._ingestor()), "ingest_bytes", slowly)
    study = make_study(series=1, instances=10)
    upload = api.start()
    with ThreadPoolExecutor(len(study) + 1) as pool:
        sends = [
            pool.submit(api.put_raw, upload["id"], f"{i}.dcm", to_bytes(ds)) for i, ds in enumerate(study)
        ]
        assert in_flight.wait(30)
        completed = pool.submit(api.client.post, f"/api/v1/uploads/{upload['id']}/complete", headers=api.h())
        answers = [s.result() for s in sends]
    assert completed.result().status_code == 202

    done = api.complete_and_wait(upload["id"])

    kept = {ds.SOPInstanceUID for ds, a in zip(study, answers, strict=True) if a.status_code == 200}
    refused = {ds.SOPInstanceUID for ds, a in zip(study, answers, strict=True) if a.status_code != 200}
    assert kept and refused, [a.status_code for a in answers]
    for answer in answers:
        if answer.status_code != 200:
            assert (answer.status_code, answer.json()["error"]["code"]) == (409, "invalid-state"), answer.text
            assert "no longer" in answer.json()["error"]["message"] or "being completed" in answer.text
    assert (done["instances_imported"], done["errors"]) == (len(kept), [])
    for uid in refused:  # nothing half-written: a refused file was not stored
        assert api.client.get(f"/api/v1/instances/{uid}", headers=api.h()).status_code == 404
