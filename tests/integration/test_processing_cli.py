"""The processing commands as users run them: ``import --report-type``, ``status``, ``qc``, ``results``,
``jobs``, ``reprocess``, ``rules``, ``report-types`` (subprocesses of the real CLI)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from factories import dicomflow, make_study, server_env, write_files

PLUGIN = str(Path(__file__).parents[1] / "plugins" / "toy_report_types.py")


@pytest.fixture
def env() -> dict[str, str]:
    return server_env(
        DICOMFLOW_PROCESSING__PLUGINS=json.dumps([PLUGIN]),
        DICOMFLOW_PROCESSING__POLL_INTERVAL="0.05",
        DICOMFLOW_STORAGE__FSYNC="false",
    )


def cli(env: dict[str, str], data: Path, *args: str, code: int = 0) -> str:
    done = dicomflow(*args, "--data-dir", str(data), env=env)
    assert done.returncode == code, f"{args}: {done.stdout}\n{done.stderr}"
    return done.stdout + done.stderr


def test_import_review_results_and_reprocess_from_the_command_line(
    tmp_path: Path, env: dict[str, str]
) -> None:
    data = tmp_path / "data"
    cli(env, data, "projects", "create", "p")
    datasets = make_study(series=1, instances=3)
    uid = datasets[0].StudyInstanceUID
    folder = tmp_path / "in"
    write_files(datasets, folder)

    assert f"{uid}: QualityControl" in cli(
        env, data, "import", str(folder), "--project", "p", "--report-type", "toy_qc"
    )
    assert uid in cli(env, data, "qc", "list")
    cli(env, data, "qc", "approve", uid, "--reviewer", "rev@example.org", "--comment", "ok")
    (study,) = json.loads(cli(env, data, "status", "--json"))
    assert study["stage"] == "Finished"
    assert study["history"][-1]["actor"] == "rev@example.org"

    out = tmp_path / "out"
    assert "2 file(s)" in cli(env, data, "results", uid, "--download", str(out))
    assert json.loads((out / "toy_qc" / "note.json").read_text()) == {"patient": datasets[0].PatientID}
    assert (out / "toy_qc" / "results.json").is_file()
    (job,) = json.loads(cli(env, data, "jobs", "--json"))
    assert "job 1: done" in cli(env, data, "jobs", "--log", str(job["id"]))

    cli(env, data, "reprocess", uid)
    (again,) = json.loads(cli(env, data, "status", "--json"))
    assert (again["stage"], again["jobs"][0]["state"]) == ("Processing", "queued")  # a server would run it


def test_import_with_a_failing_check_exits_1_with_the_finding(tmp_path: Path, env: dict[str, str]) -> None:
    data = tmp_path / "data"
    cli(env, data, "projects", "create", "p")
    datasets = [ds for ds in make_study(series=1, instances=7) if ds.InstanceNumber != 4]
    write_files(datasets, tmp_path / "in")

    output = cli(
        env, data, "import", str(tmp_path / "in"), "--project", "p", "--report-type", "toy_count", code=1
    )

    assert "Failed" in output and "slice 4 of 7 missing" in output
    assert "slice 4 of 7 missing" in cli(env, data, "status")


def test_unknown_report_type_and_rules(tmp_path: Path, env: dict[str, str]) -> None:
    data = tmp_path / "data"
    cli(env, data, "projects", "create", "p")
    write_files(make_study(series=1, instances=1), tmp_path / "in")

    output = cli(env, data, "import", str(tmp_path / "in"), "--report-type", "nope", code=2)
    assert "unknown report type 'nope'" in output
    assert "rule 1: p: toy_count" in cli(
        env, data, "rules", "add", "p", "toy_count", "--match", "Modality=^CT$"
    )
    assert "toy_count" in cli(env, data, "rules", "list")
    cli(env, data, "rules", "delete", "1")
    assert cli(env, data, "rules", "list").strip() == ""
    listed = cli(env, data, "report-types")
    assert "ms_lesions v1  (QC)" in listed and "icobrain_ms -> ms_lesions" in listed


def test_reprocess_that_the_checks_block_says_why_and_the_stage_follows(
    tmp_path: Path, env: dict[str, str]
) -> None:
    data = tmp_path / "data"
    cli(env, data, "projects", "create", "p")
    datasets = make_study(series=1, instances=3)
    for ds, plane in zip(
        datasets, [[1, 0, 0, 0, 1, 0], [0, 1, 0, 0, 0, -1], [1, 0, 0, 0, 0, -1]], strict=True
    ):
        ds.ImageOrientationPatient = plane  # a three-plane localizer: toy_count only warns
    uid = datasets[0].StudyInstanceUID
    write_files(datasets, tmp_path / "in")
    assert f"{uid}: Finished" in cli(
        env, data, "import", str(tmp_path / "in"), "--project", "p", "--report-type", "toy_count"
    )

    output = cli(env, data, "reprocess", uid, "--report-type", "ct_volumetry", code=1)
    assert "Failed" in output and "cannot be stacked into one volume" in output
    (study,) = json.loads(cli(env, data, "status", "--json"))
    assert study["stage"] == "Failed"

    assert "queued for reprocessing" in cli(env, data, "reprocess", uid, "--report-type", "toy_count")
    (study,) = json.loads(cli(env, data, "status", "--json"))
    assert study["stage"] == "Processing"  # the new run decides; the blocked one does not hold it Failed
