"""An upload through the native API against a running ``dicomflow serve``: the SDK and ``dicomflow upload``
send a folder of the demo MR study, the import and the studies are followed, the review is approved through
the API, and the report files are downloaded; a study with a missing slice fails with its finding."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from dicomflow.client import Client, NotFound, Stage, StudyFailed
from dicomflow.demo import make_ms_study
from factories import DicomflowServer, server_env, write_files
from waiting import wait_until

pytestmark = pytest.mark.e2e

FAST = {"DICOMFLOW_PROCESSING__POLL_INTERVAL": "0.1"}
REPORT_TYPE = "icobrain_ms"
CLI_TIMEOUT = 300


def sdk(server: DicomflowServer) -> Client:
    return Client(f"http://127.0.0.1:{server.http_port}", server.token)


def new_project(server: DicomflowServer, label: str) -> None:
    server.http.post("/projects", json={"label": label}).raise_for_status()


def assert_report_files(files: list[Path]) -> None:
    suffixes = {path.suffix for path in files}
    assert {".pdf", ".png", ".json"} <= suffixes, files
    assert all(path.stat().st_size > 0 for path in files), files
    (pdf,) = [path for path in files if path.suffix == ".pdf"]
    assert pdf.read_bytes().startswith(b"%PDF")


def test_the_sdk_takes_a_folder_through_import_review_and_results(
    make_server: Callable[..., DicomflowServer], tmp_path: Path
) -> None:
    server = make_server(**FAST)
    new_project(server, "ms")
    study = make_ms_study()
    folder = tmp_path / "mr"
    write_files([*study.t1, *study.flair], folder)
    uid = study.t1[0].StudyInstanceUID

    with sdk(server) as client:
        started = client.upload_dir("ms", folder, REPORT_TYPE, progress=False)
        upload = client.wait_for_import(started.id, timeout=120)
        assert upload.errors == [] and upload.summary_errors == []
        assert upload.instances_imported == len(study.t1) + len(study.flair)
        assert [s.study_instance_uid for s in client.studies_for_upload(upload.id)] == [uid]

        waiting = client.wait_for_results(uid, timeout=180, poll=0.2, accept_review=True)
        assert waiting.stage == Stage.QUALITY_CONTROL, waiting
        assert waiting.upload_id == upload.id
        approved = client.approve(uid, "looks right")
        assert approved.stage == Stage.FINISHED
        finished = client.wait_for_results(uid, timeout=30, poll=0.2)
        assert [h.stage for h in finished.history][-2:] == [Stage.QUALITY_CONTROL, Stage.FINISHED]

        reports = client.reports_for_study(uid)
        assert [job.state for job in reports.jobs] == ["succeeded"]
        files = client.download_report_files(uid, tmp_path / "out")
    assert sorted(p.name for p in files) == sorted(r.name for r in reports.results)
    assert_report_files(files)


def test_the_upload_command_waits_through_review_and_downloads(
    make_server: Callable[..., DicomflowServer], tmp_path: Path
) -> None:
    server = make_server(**FAST)
    new_project(server, "ms")
    study = make_ms_study(seed=1, patient_id="DEMO002")
    folder = tmp_path / "mr"
    write_files([*study.t1, *study.flair], folder)
    uid = study.t1[0].StudyInstanceUID
    out = tmp_path / "out"
    log = tmp_path / "upload.log"

    with log.open("w") as sink:
        command = subprocess.Popen(
            [sys.executable, "-m", "dicomflow", "upload", str(folder), "--project", "ms"]
            + ["--report-type", REPORT_TYPE, "--wait", "--download", str(out), "--timeout", "240"],
            stdout=sink,
            stderr=subprocess.STDOUT,
            env=server_env(
                DICOMFLOW_URL=f"http://127.0.0.1:{server.http_port}", DICOMFLOW_TOKEN=server.token
            ),
        )
    try:
        with sdk(server) as client:
            _wait_until_in_review(client, uid, command)
            _wait_for_text(log, "waiting for review", command)
            assert command.poll() is None, log.read_text()  # still waiting, through QualityControl
            client.approve(uid, "approved while the command waits")
        code = command.wait(CLI_TIMEOUT)
    finally:
        if command.poll() is None:
            command.kill()
            command.wait()
    output = log.read_text()
    assert code == 0, output
    assert f"study {uid} Finished" in output
    files = sorted(p for p in out.rglob("*") if p.is_file())
    assert all(p.is_relative_to(out / uid) for p in files), files
    assert_report_files(files)


def test_a_study_that_fails_its_checks_fails_the_command_with_the_finding(
    make_server: Callable[..., DicomflowServer], tmp_path: Path
) -> None:
    server = make_server(**FAST)
    new_project(server, "ms")
    study = make_ms_study(seed=2, patient_id="DEMO003")
    middle = len(study.flair) // 2
    folder = tmp_path / "mr"
    write_files([*study.t1, *study.flair[:middle], *study.flair[middle + 1 :]], folder)
    uid = study.t1[0].StudyInstanceUID
    env = server_env(DICOMFLOW_TOKEN=server.token)
    url = f"http://127.0.0.1:{server.http_port}"

    done = subprocess.run(
        [sys.executable, "-m", "dicomflow", "upload", str(folder), "--project", "ms", "--url", url]
        + ["--report-type", REPORT_TYPE, "--wait", "--timeout", "240"],
        capture_output=True,
        text=True,
        timeout=CLI_TIMEOUT,
        env=env,
        check=False,
    )

    output = done.stdout + done.stderr
    assert done.returncode == 1, output
    with sdk(server) as client, pytest.raises(StudyFailed) as raised:
        client.wait_for_results(uid, timeout=5)
    assert raised.value.findings, raised.value.details
    assert raised.value.reason in output
    for finding in raised.value.findings:
        assert finding["message"] in output
    assert f"of {len(study.flair)} missing" in output


def test_the_sdk_imports_nothing_of_the_server() -> None:
    code = (
        "import dicomflow.client, sys; "
        "assert 'sqlalchemy' not in sys.modules and 'fastapi' not in sys.modules "
        "and 'pynetdicom' not in sys.modules, sorted(sys.modules)"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("DICOMFLOW_")}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60)
    assert done.returncode == 0, done.stderr


def _wait_until_in_review(
    client: Client, uid: str, command: subprocess.Popen[bytes], timeout: float = 180
) -> None:

    def in_review() -> bool:
        assert command.poll() is None, "dicomflow upload ended before the review"
        try:
            return client.get_study(uid).stage == Stage.QUALITY_CONTROL
        except NotFound:  # not imported yet
            return False

    wait_until(in_review, timeout, interval=0.2, message=f"study {uid} not in QualityControl")


def _wait_for_text(log: Path, text: str, command: subprocess.Popen[bytes], timeout: float = 30) -> None:

    def printed() -> bool:
        assert command.poll() is None, log.read_text()
        return text in log.read_text()

    wait_until(printed, timeout, interval=0.1, message=log.read_text)
