"""The unmodified ``icometrix-sdk==0.0.9`` (PyPI, in its own virtualenv made by ``make test``) against a
running dicomflow: the reference example end to end, password login, paging, series, an empty upload."""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from dicomflow.demo import make_ms_study
from factories import ADMIN_EMAIL, ADMIN_PASSWORD, DicomflowServer, write_files

pytestmark = pytest.mark.e2e

HERE = Path(__file__).parent / "icometrix"
SDK_PYTHON = Path(__file__).parents[2] / ".venv-icometrix" / "bin" / "python"


def _sdk(script: str, *args: str, env: dict[str, str], cwd: Path) -> subprocess.Popen[str]:
    assert SDK_PYTHON.exists(), "make test creates .venv-icometrix with icometrix-sdk==0.0.9"
    base = {k: v for k, v in os.environ.items() if not k.startswith(("DICOMFLOW_", "VIRTUAL_ENV", "PYTHON"))}
    return subprocess.Popen(
        [str(SDK_PYTHON), str(HERE / script), *args],
        env={**base, **env},
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _finish(process: subprocess.Popen[str], timeout: float = 120) -> str:
    output, _ = process.communicate(timeout=timeout)
    assert process.returncode == 0, output
    return output


def _project_uuid(server: DicomflowServer, label: str) -> str:
    server.http.post("/projects", json={"label": label}).raise_for_status()
    number = next(p["id"] for p in server.get_json("/projects") if p["label"] == label)
    return f"00000001-0000-4000-8000-{number:012x}"


@pytest.fixture
def server(make_server: Callable[..., DicomflowServer]) -> DicomflowServer:
    return make_server(DICOMFLOW_PROCESSING__POLL_INTERVAL="0.1")


def _env(server: DicomflowServer, **extra: str) -> dict[str, str]:
    return {"API_HOST": f"http://127.0.0.1:{server.http_port}", "TOKEN": server.token, **extra}


def test_the_reference_example_runs_unchanged_to_downloaded_report_files(
    server: DicomflowServer, tmp_path: Path
) -> None:
    project_id = _project_uuid(server, "MS")
    study = make_ms_study()
    write_files([*study.t1, *study.flair], tmp_path / "dicoms")
    uid = study.t1[0].StudyInstanceUID
    work = tmp_path / "work"
    work.mkdir()
    process = _sdk(
        "reference.py",
        env=_env(server, PROJECT_ID=project_id, DICOM_DIR_PATH=str(tmp_path / "dicoms")),
        cwd=work,
    )

    deadline = time.monotonic() + 120
    stage = ""
    while time.monotonic() < deadline and process.poll() is None:
        found = server.http.get(f"/studies/{uid}")
        stage = found.json().get("stage", "") if found.status_code == 200 else ""
        if stage == "QualityControl":
            server.http.post(f"/studies/{uid}/qc/approve", json={"comment": "checked"}).raise_for_status()
            break
        time.sleep(0.3)
    assert stage == "QualityControl", (
        process.stdout.read() if process.poll() is not None and process.stdout else stage
    )
    _finish(process)

    (folder,) = [p for p in work.iterdir() if p.is_dir()]
    files = {p.name: p.stat().st_size for p in folder.iterdir()}
    assert {"ms_lesions.pdf", "lesions.png", "results.json"} <= set(files)
    assert all(size > 0 for size in files.values())
    assert (
        json.loads((folder / "results.json").read_text())["measurements"]["lesion_count"]
        == study.lesion_count
    )
    assert server.get_json(f"/studies/{uid}")["stage"] == "Finished"


def test_password_login_and_paging_over_several_pages(server: DicomflowServer, tmp_path: Path) -> None:
    labels = [f"P{n}" for n in range(5)]
    for label in labels:
        server.http.post("/projects", json={"label": label}).raise_for_status()
    env = {
        "API_HOST": f"http://127.0.0.1:{server.http_port}",
        "EMAIL": ADMIN_EMAIL,
        "PASSWORD": ADMIN_PASSWORD,
    }

    body: dict[str, Any] = json.loads(
        _finish(_sdk("probes.py", "pages", env=env, cwd=tmp_path)).splitlines()[-1]
    )

    assert body["pages"] == 3 and sorted(body["names"]) == sorted(labels)
    assert body["me"] == ADMIN_EMAIL


def test_series_of_a_study_fill_every_required_field(server: DicomflowServer, tmp_path: Path) -> None:
    project_id = _project_uuid(server, "Series")
    study = make_ms_study()
    write_files([*study.t1, *study.flair], tmp_path / "in")
    from dcmtk import storescu

    storescu(server.dimse_port, sorted((tmp_path / "in").iterdir()), called_ae="kp-Series")
    session = server.get_json("/hierarchy")[0]["projects"][0]["subjects"][0]
    subject_id = server.rows("select id from subjects where label = ?", (session["label"],))[0][0]
    session_id = server.rows("select id from sessions where subject_id = ?", (subject_id,))[0][0]
    ids = (
        project_id,
        f"00000002-0000-4000-8000-{subject_id:012x}",
        f"00000003-0000-4000-8000-{session_id:012x}",
    )

    body = json.loads(
        _finish(_sdk("probes.py", "series", *ids, env=_env(server), cwd=tmp_path)).splitlines()[-1]
    )

    assert body["modality"] == "MR"
    flair = next(s for s in body["series"] if "FLAIR" in s["series_description"].upper())
    assert flair["echo_time"] and flair["repetition_time"] and flair["series_number"]
    assert flair["images_in_acquisition"] == len(study.flair) and flair["slice_orientation"] == "axial"


def test_an_upload_without_dicom_reports_why(server: DicomflowServer, tmp_path: Path) -> None:
    project_id = _project_uuid(server, "Empty")
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "readme.txt").write_text("no images here")

    body = json.loads(
        _finish(
            _sdk(
                "probes.py",
                "empty-upload",
                project_id,
                str(tmp_path / "notes"),
                env=_env(server),
                cwd=tmp_path,
            )
        ).splitlines()[-1]
    )

    assert body["status"] == "import_success"
    assert body["errors"][0].startswith("No DICOM files found")
    assert "readme.txt" in body["errors"][1]
