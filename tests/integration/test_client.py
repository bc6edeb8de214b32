"""The SDK (``dicomflow.client``) against the API in process (``TestClient``), and its own behaviour (errors
rebuilt from codes, request shapes, waits, safe downloads) against ``httpx.MockTransport``."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydicom.uid import generate_uid

from apihelpers import ApiContext, make_part10
from dicomflow import errors
from dicomflow.client import (
    AuthenticationRequired,
    Client,
    DicomflowError,
    ImportFailed,
    InvalidRequest,
    NotFound,
    ServerUnreachable,
    Stage,
    Study,
    StudyFailed,
    UploadState,
    WaitTimeout,
)
from dicomflow.errors import ERRORS_BY_CODE
from dicomflow.flow import Stage as FlowStage
from dicomflow.usecases.accounts import Role

NOW = "2024-05-01T10:20:00Z"


def sdk(api: ApiContext, role: Role = Role.ADMIN) -> Client:
    """The SDK on the in-process API, with the token of a user of ``role``."""
    return Client(str(api.client.base_url), api.tokens[role], http=api.client)


# -- against the API in process -------------------------------------------------------------------------


def test_an_unknown_study_is_not_found_on_both_sides(api: ApiContext) -> None:
    with pytest.raises(NotFound) as raised:
        sdk(api).get_study(generate_uid())
    assert type(raised.value) is errors.NotFound
    assert raised.value.code == "not-found"


def test_a_bad_token_is_authentication_required(api: ApiContext) -> None:
    client = Client(str(api.client.base_url), "not-a-token", http=api.client)
    with pytest.raises(AuthenticationRequired, match="not valid"):
        client.results(api.seeded.study_a)


def test_a_request_the_api_refuses_is_invalid_request(api: ApiContext) -> None:
    with pytest.raises(InvalidRequest) as raised:
        sdk(api).create_upload("")
    assert raised.value.details["errors"][0]["loc"] == ["body", "project"]


def test_an_injected_client_is_used_as_is_and_left_open(api: ApiContext) -> None:
    with sdk(api) as client:
        assert client.api_url == "http://testserver/api/v1"
        with pytest.raises(NotFound):
            client.get_study(generate_uid())
    assert not api.client.is_closed
    assert "Authorization" not in api.client.headers  # the token goes on each request, not the client


def test_an_upload_through_the_api(api: ApiContext, tmp_path: Path) -> None:
    study, series = generate_uid(), generate_uid()
    folder = tmp_path / "in"
    (folder / "sub").mkdir(parents=True)
    for n in (1, 2, 3):
        (folder / "sub" / f"{n}.dcm").write_bytes(make_part10(study, series, n)[1])
    (folder / ".DS_Store").write_bytes(b"hidden, never sent")
    client = sdk(api, Role.ADMIN)

    started = client.upload_dir("Brain", folder, None, parallel=2, progress=False)
    assert started.state in (UploadState.IMPORTING, UploadState.IMPORTED)
    assert started.files_received == 3
    done = client.wait_for_import(started.id, timeout=60, poll=0.1)

    assert done.errors == [] and done.summary_errors == []
    assert done.instances_imported == 3
    assert done.study_instance_uids == [study]
    assert [s.study_instance_uid for s in client.studies_for_upload(done.id)] == [study]
    assert client.get_upload(done.id) == done
    assert done.id in [u.id for u in client.list_uploads("Brain")]


def test_an_upload_of_no_dicom_fails_its_import(api: ApiContext, tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("not DICOM")
    client = sdk(api)
    started = client.upload_dir("Brain", tmp_path / "notes.txt", progress=False)
    with pytest.raises(ImportFailed) as raised:
        client.wait_for_import(started.id, timeout=60, poll=0.1)
    assert raised.value.summary_errors or raised.value.errors, raised.value.details


def test_an_upload_into_an_unknown_project_is_refused(api: ApiContext, tmp_path: Path) -> None:
    (tmp_path / "a.dcm").write_bytes(make_part10(generate_uid(), generate_uid(), 1)[1])
    with pytest.raises(DicomflowError) as raised:
        sdk(api).upload_dir("No such project", tmp_path, progress=False)
    assert raised.value.http_status == 404


def test_upload_dir_needs_files(api: ApiContext, tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / ".hidden").write_bytes(b"x")
    with pytest.raises(ValueError, match="no files"):
        sdk(api).upload_dir("Brain", tmp_path / "empty", progress=False)


# -- the SDK's own behaviour ----------------------------------------------------------------------------


class Recorder:
    """An ``httpx.MockTransport`` handler answering from a function and keeping every request."""

    def __init__(self, answer: Callable[[httpx.Request], httpx.Response]) -> None:
        self.answer = answer
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        request.read()
        self.requests.append(request)
        return self.answer(request)

    def client(self) -> Client:
        return Client("http://sdk.test/", "T0KEN", http=httpx.Client(transport=httpx.MockTransport(self)))


def error(status: int, code: str, message: str = "no", **details: Any) -> httpx.Response:
    return httpx.Response(status, json={"error": {"code": code, "message": message, "details": details}})


def upload_json(state: str = "importing", **fields: Any) -> dict[str, Any]:
    base = {
        "id": "u-1",
        "project": "ms",
        "report_type": "icobrain_ms",
        "force_reprocessing": False,
        "state": state,
        "created_at": NOW,
        "updated_at": NOW,
        "expires_at": NOW,
        "files_received": 2,
        "instances_imported": 0,
        "errors": [],
        "summary_errors": [],
        "study_instance_uids": [],
        "created_by": "a field this SDK does not know",
    }
    return {**base, **fields}


def study_json(stage: str, **fields: Any) -> dict[str, Any]:
    base = {
        "id": 7,
        "study_instance_uid": "1.2.3",
        "version": 1,
        "project": "ms",
        "group": "neuro",
        "subject": "P1",
        "session": "S1",
        "stage": stage,
        "reason": "",
        "report_types": ["icobrain_ms"],
        "upload_id": "u-1",
        "created_at": NOW,
        "updated_at": NOW,
        "history": [{"at": NOW, "stage": stage, "actor": "flow", "reason": ""}],
        "findings": [],
        "jobs": [],
    }
    return {**base, **fields}


@pytest.mark.parametrize("error_class", [cls for _, cls in sorted(ERRORS_BY_CODE.items())])
def test_every_error_class_is_rebuilt_from_its_code(error_class: type[DicomflowError]) -> None:
    recorder = Recorder(lambda _r: error(error_class.http_status, error_class.code, "it broke", uid="1.2"))
    with pytest.raises(DicomflowError) as raised:
        recorder.client().get_study("1.2")
    assert type(raised.value) is error_class
    assert (raised.value.message, raised.value.details) == ("it broke", {"uid": "1.2"})


@pytest.mark.parametrize(
    ("response", "expected", "details"),
    [
        (error(404, "no-such-code"), NotFound, {"code": "no-such-code", "http_status": 404}),
        (
            error(405, "method-not-allowed"),
            DicomflowError,
            {"code": "method-not-allowed", "http_status": 405},
        ),
        (httpx.Response(502, text="<html>bad gateway</html>"), DicomflowError, {"http_status": 502}),
        (error(422, "validation-error", errors=[]), InvalidRequest, {"errors": []}),
    ],
)
def test_codes_without_a_class_fall_back_on_the_status(
    response: httpx.Response, expected: type[DicomflowError], details: dict[str, Any]
) -> None:
    with pytest.raises(DicomflowError) as raised:
        Recorder(lambda _r: response).client().get_study("1.2")
    assert type(raised.value) is expected
    assert raised.value.details == details


def test_no_answer_is_server_unreachable() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    with pytest.raises(ServerUnreachable, match="connection refused"):
        Recorder(refuse).client().get_study("1.2")


def test_request_shapes_of_an_upload(tmp_path: Path) -> None:
    (tmp_path / "a" / ".git").mkdir(parents=True)
    (tmp_path / "a" / "x.dcm").write_bytes(b"first")
    (tmp_path / "a" / ".git" / "config").write_bytes(b"hidden folder")
    (tmp_path / "b.zip").write_bytes(b"second")

    def answer(request: httpx.Request) -> httpx.Response:
        if request.method == "PUT":
            return httpx.Response(200, json={"received": [{"name": "stored", "size": 5}]})
        return httpx.Response(201 if request.url.path == "/api/v1/uploads" else 202, json=upload_json())

    recorder = Recorder(answer)
    sent: list[tuple[str, int]] = []
    recorder.client().upload_dir(
        "ms", tmp_path, "icobrain_ms", parallel=3, progress=lambda path, size: sent.append((path.name, size))
    )

    create, *puts, complete = recorder.requests
    assert (create.method, create.url.path) == ("POST", "/api/v1/uploads")
    assert json.loads(create.content) == {
        "project": "ms",
        "report_type": "icobrain_ms",
        "force_reprocessing": False,
    }
    assert {r.headers["Authorization"] for r in recorder.requests} == {"Bearer T0KEN"}
    assert sorted((r.method, r.url.raw_path) for r in puts) == [
        ("PUT", b"/api/v1/uploads/u-1/files/a%2Fx.dcm"),  # the label, one path segment
        ("PUT", b"/api/v1/uploads/u-1/files/b.zip"),
    ]
    assert all(r.headers["Content-Type"] == "application/octet-stream" for r in puts)
    assert sorted((r.read(), r.headers["Content-Length"]) for r in puts) == [
        (b"first", "5"),
        (b"second", "6"),
    ]
    bodies = b"".join(r.content for r in puts)
    assert b"hidden folder" not in bodies
    assert sorted(sent) == [("b.zip", 6), ("x.dcm", 5)]
    assert (complete.method, complete.url.path) == ("POST", "/api/v1/uploads/u-1/complete")


def test_a_failed_send_stops_the_upload_and_names_it(tmp_path: Path) -> None:
    for n in range(6):
        (tmp_path / f"{n}.dcm").write_bytes(b"x")

    def answer(request: httpx.Request) -> httpx.Response:
        if request.method == "PUT":
            return error(507, "storage-error", "disk full")
        return httpx.Response(201, json=upload_json("uploading"))

    recorder = Recorder(answer)
    with pytest.raises(errors.StorageError, match="disk full") as raised:
        recorder.client().upload_dir("ms", tmp_path, parallel=1, progress=False)
    assert raised.value.details["upload_id"] == "u-1"
    assert not [r for r in recorder.requests if r.url.path.endswith("/complete")]
    assert len([r for r in recorder.requests if r.method == "PUT"]) == 1  # parallel=1: none after the failure


def test_wait_for_import_raises_import_failed_with_the_errors() -> None:
    states = iter(["importing", "failed"])
    file_error = {"file": "x.dcm", "code": "invalid-instance", "message": "not DICOM"}
    recorder = Recorder(
        lambda _r: httpx.Response(
            200, json=upload_json(next(states), errors=[file_error], summary_errors=["No DICOM files found"])
        )
    )
    with pytest.raises(ImportFailed, match="No DICOM files found") as raised:
        recorder.client().wait_for_import("u-1", timeout=10, poll=0.01)
    assert raised.value.errors == [file_error]
    assert raised.value.summary_errors == ["No DICOM files found"]
    assert len(recorder.requests) == 2


def test_wait_for_import_times_out() -> None:
    recorder = Recorder(lambda _r: httpx.Response(200, json=upload_json("importing")))
    with pytest.raises(WaitTimeout, match="still importing"):
        recorder.client().wait_for_import("u-1", timeout=0.05, poll=0.01)


def test_wait_for_results_stops_at_review_only_when_asked() -> None:
    stages = iter(["Processing", "QualityControl", "QualityControl", "Finished"])
    recorder = Recorder(lambda _r: httpx.Response(200, json=study_json(next(stages))))
    client, seen = recorder.client(), list[Study]()
    waiting = client.wait_for_results(
        "1.2.3", timeout=10, poll=0.01, accept_review=True, on_stage=seen.append
    )
    assert waiting.stage == Stage.QUALITY_CONTROL
    finished = client.wait_for_results("1.2.3", timeout=10, poll=0.01, on_stage=seen.append)
    assert finished.stage == Stage.FINISHED
    assert [s.stage for s in seen] == ["Processing", "QualityControl", "QualityControl", "Finished"]


def test_wait_for_results_raises_study_failed_with_reason_and_findings() -> None:
    finding = {
        "report_type": "icobrain_ms",
        "code": "missing-slice",
        "severity": "error",
        "message": "series 2 (FLAIR): slice 21 of 40 missing",
        "series_instance_uid": "1.2.3.4",
    }
    failed = study_json("Failed", reason="completeness check failed", findings=[finding])
    recorder = Recorder(lambda _r: httpx.Response(200, json=failed))
    with pytest.raises(StudyFailed, match="completeness check failed") as raised:
        recorder.client().wait_for_results("1.2.3", timeout=10, poll=0.01)
    assert raised.value.reason == "completeness check failed"
    assert raised.value.findings == [finding]


def test_wait_for_results_times_out_in_review() -> None:
    recorder = Recorder(lambda _r: httpx.Response(200, json=study_json("QualityControl")))
    with pytest.raises(WaitTimeout, match="QualityControl"):
        recorder.client().wait_for_results("1.2.3", timeout=0.05, poll=0.01)


def test_waits_go_on_through_a_broken_connection() -> None:
    answers = iter(["refuse", "importing", "refuse", "imported"])

    def answer(request: httpx.Request) -> httpx.Response:
        state = next(answers)
        if state == "refuse":
            raise httpx.ConnectError("restarting", request=request)
        return httpx.Response(200, json=upload_json(state))

    assert Recorder(answer).client().wait_for_import("u-1", timeout=10, poll=0.01).state == "imported"


def result_json(result_id: int, report_type: str, name: str, data: bytes) -> dict[str, Any]:
    return {
        "id": result_id,
        "job_id": 1,
        "report_type": report_type,
        "name": name,
        "kind": "report",
        "media_type": "application/octet-stream",
        "size": len(data),
        "sha256": hashlib.sha256(data).hexdigest(),
        "path": f"results/{name}",
    }


def test_downloads_keep_to_the_output_folder(tmp_path: Path) -> None:
    files = {1: b"%PDF report", 2: b"evil", 3: b"dot", 4: b"same name, other type"}
    listing = [
        result_json(1, "ms_lesions", "report.pdf", files[1]),
        result_json(2, "../../up", "../../../escape.sh", files[2]),
        result_json(3, "ms_lesions", "..", files[3]),
        result_json(4, "ms_lesions", "sub/report.pdf", files[4]),
    ]

    def answer(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/results"):
            return httpx.Response(200, json=listing)
        return httpx.Response(200, content=files[int(request.url.path.split("/")[-2])])

    out = tmp_path / "out"
    written = Recorder(answer).client().download_report_files("1.2.3", out)

    assert [p.relative_to(out).as_posix() for p in written] == [
        "ms_lesions/report.pdf",
        "up/escape.sh",
        "ms_lesions/result-3",
        "ms_lesions/4-report.pdf",
    ]
    assert [p.read_bytes() for p in written] == list(files.values())
    assert sorted(p for p in tmp_path.rglob("*") if p.is_file()) == sorted(written)


def test_a_download_that_does_not_match_its_checksum_is_refused(tmp_path: Path) -> None:
    listing = [result_json(1, "ms_lesions", "report.pdf", b"the real bytes")]

    def answer(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/results"):
            return httpx.Response(200, json=listing)
        return httpx.Response(200, content=b"other bytes!!!")

    with pytest.raises(DicomflowError, match="SHA-256"):
        Recorder(answer).client().download_report_files("1.2.3", tmp_path)
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == []


def test_schema_enums_are_the_servers() -> None:
    assert [s.value for s in Stage] == [s.value for s in FlowStage]
