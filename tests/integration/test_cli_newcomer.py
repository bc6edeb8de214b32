"""The command line as a newcomer meets it: a mistake gets one ``error:`` line with what to do next (never a
traceback), read commands do not create a data directory, ``status`` shows whole UIDs, ``--help`` is quick
because it imports nothing heavy, and ``demo-data`` counts what it writes."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from dicomflow.cli import app
from factories import dicomflow, make_study, server_env, write_files

HEAVY = (
    "scipy",
    "sqlalchemy",
    "pydicom",
    "numpy",
    "pynetdicom",
    "fastapi",
    "httpx",
    "pydantic_settings",
    "markdown_it",  # typer's rich help formatter: 0.14 s of --help's 0.3 s budget
)


@pytest.fixture(autouse=True)
def _no_outside_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("DICOMFLOW_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("DICOMFLOW_STORAGE__FSYNC", "false")


def run(*args: str) -> Result:
    return CliRunner().invoke(app, list(args))


def failed(result: Result, code: int = 1) -> str:
    """The error output of a command that must have failed cleanly with ``code``."""
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert result.exit_code == code, result.output
    return " ".join(re.sub("[│╭╮╰╯─]", " ", result.stderr).split())  # one line, whatever the width or box


@pytest.fixture
def data(tmp_path: Path) -> Path:
    data = tmp_path / "data"
    assert run("projects", "create", "p", "--data-dir", str(data)).exit_code == 0
    return data


# -- 22: errors, not tracebacks; each says what to do next ---------------------------------------------

MISTAKES = [
    (["rules", "add", "p", "typo"], "unknown report type 'typo'", "run `dicomflow report-types`"),
    (["rules", "add", "nosuch", "ct_volumetry"], "no project", "run `dicomflow projects list`"),
    (["status", "--project", "nosuch"], "no project", "run `dicomflow projects list`"),
    (["users", "grant", "a@b.org", "--project", "nosuch", "--role", "viewer"], "no project", "projects list"),
    (["results", "1.2.3"], "no study '1.2.3'", "run `dicomflow status`"),
    (["reprocess", "1.2.3"], "no study '1.2.3'", "run `dicomflow status`"),
    (["qc", "approve", "1.2.3", "--reviewer", "r"], "no study '1.2.3'", "run `dicomflow status`"),
    (["jobs", "--log", "99"], "no job with id 99", "run `dicomflow jobs`"),
    (["rules", "delete", "7"], "no project rule with id 7", "run `dicomflow rules list`"),
    (["tokens", "create", "--user", "nobody@x.org"], "nobody@x.org", "`dicomflow users create"),
    (["projects", "create", "P"], "exists already", "run `dicomflow projects list`"),
]


@pytest.mark.parametrize(("args", "message", "hint"), MISTAKES, ids=[" ".join(m[0][:2]) for m in MISTAKES])
def test_a_mistake_is_one_error_line_with_a_hint(
    data: Path, args: list[str], message: str, hint: str
) -> None:
    error = failed(run(*args, "--data-dir", str(data)))

    assert error.startswith("error: ") and message in error and hint in error


def test_an_unknown_report_type_lists_the_aliases_too(data: Path) -> None:
    error = failed(run("rules", "add", "p", "typo", "--data-dir", str(data)))
    assert "ms_lesions" in error and "icobrain_ms" in error
    listed = run("report-types", "--data-dir", str(data)).stdout
    assert "icobrain_ms -> ms_lesions" in listed


def test_stages_are_case_insensitive_and_a_bad_one_is_a_usage_error(data: Path) -> None:
    assert run("status", "--stage", "finished", "--data-dir", str(data)).exit_code == 0
    assert run("status", "--stage", "QUALITYCONTROL", "--data-dir", str(data)).exit_code == 0
    error = failed(run("status", "--stage", "done", "--data-dir", str(data)), code=2)
    assert "finished" in error.lower()  # the choices are listed
    failed(run("jobs", "--state", "nope", "--data-dir", str(data)), code=2)
    assert run("jobs", "--state", "QUEUED", "--data-dir", str(data)).exit_code == 0


def test_a_bad_environment_variable_is_named(data: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DICOMFLOW_DIMSE__PORT", "eleven")
    error = failed(run("ls", "--data-dir", str(data)))
    assert "DICOMFLOW_DIMSE__PORT" in error and "eleven" in error


def test_a_missing_plugin_file_is_an_error(tmp_path: Path) -> None:
    error = failed(run("node", str(tmp_path / "nosuch.py"), "--data-dir", str(tmp_path / "node")))
    assert "nosuch.py" in error and "does not exist" in error


def test_demo_data_into_a_place_that_cannot_be_written(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    error = failed(run("demo-data", str(tmp_path / "file" / "demo"), "--kind", "ct"))
    assert str(tmp_path / "file") in error


def test_a_mistake_in_a_real_process_prints_no_traceback(data: Path) -> None:
    done = dicomflow("rules", "add", "p", "typo", "--data-dir", str(data), env=server_env())
    assert done.returncode == 1
    assert "Traceback" not in done.stderr and "╭" not in done.stderr
    assert done.stderr.startswith("error: unknown report type 'typo'"), done.stderr


# -- 23: read commands need an existing data directory; <data_dir>/dicomflow.toml is read ----------------

READS = [
    ["ls"],
    ["status"],
    ["jobs"],
    ["results", "1.2.3"],
    ["qc", "list"],
    ["rules", "list"],
    ["projects", "list"],
    ["tokens", "create", "--user", "a@b.org"],
    ["users", "grant", "a@b.org", "--project", "p", "--role", "viewer"],
]


@pytest.mark.parametrize("args", READS, ids=[" ".join(r[:2]) for r in READS])
def test_a_read_on_a_missing_data_dir_says_so_and_creates_nothing(tmp_path: Path, args: list[str]) -> None:
    missing = tmp_path / "typo"
    error = failed(run(*args, "--data-dir", str(missing)))
    assert f"data directory {missing} does not exist" in error and "--data-dir" in error
    assert not missing.exists()


def test_a_directory_without_an_index_is_not_a_data_dir(tmp_path: Path) -> None:
    error = failed(run("status", "--data-dir", str(tmp_path)))
    assert "holds no dicomflow index" in error
    assert not (tmp_path / "index.sqlite3").exists()


def test_the_toml_file_in_the_data_dir_is_read(data: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (data / "dicomflow.toml").write_text('[processing.aliases]\nbody = "ct_volumetry"\n')
    assert "body -> ct_volumetry" in run("report-types", "--data-dir", str(data)).stdout
    monkeypatch.setenv("DICOMFLOW_PROCESSING__ALIASES", '{"body": "nifti_export"}')
    listed = run("report-types", "--data-dir", str(data)).stdout
    assert "body -> nifti_export" in listed and "body -> ct_volumetry" not in listed  # the environment wins


# -- 25: whole UIDs ---------------------------------------------------------------------------------------


def _long_uid(n: int) -> str:
    uid = f"1.2.826.0.1.3680043.8.498.{n}."
    return uid + "1" * (64 - len(uid))


def test_status_and_jobs_print_whole_uids_at_any_width(
    data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    plugins = json.dumps([str(Path(__file__).parents[1] / "plugins" / "toy_report_types.py")])
    monkeypatch.setenv("DICOMFLOW_PROCESSING__PLUGINS", plugins)
    label = "a-project-label-long-enough-to-crowd-the-table"
    assert run("projects", "create", label, "--data-dir", str(data)).exit_code == 0
    uids = [_long_uid(n) for n in (1, 2)]
    gap = [ds for ds in make_study(series=1, instances=5, StudyInstanceUID=uids[0]) if ds.InstanceNumber != 3]
    write_files(gap, tmp_path / "gap")
    write_files(make_study(series=1, instances=1, StudyInstanceUID=uids[1]), tmp_path / "one")
    for folder, report_type, code in (("gap", "toy_count", 1), ("one", "toy_qc", 0)):
        args = ("import", str(tmp_path / folder), "--project", label, "--report-type", report_type)
        assert run(*args, "--data-dir", str(data)).exit_code == code
    for columns in ("80", "200"):
        for command in ("status", "jobs"):
            env = server_env(TTY_COMPATIBLE="1", COLUMNS=columns, DICOMFLOW_PROCESSING__PLUGINS=plugins)
            done = dicomflow(command, "--data-dir", str(data), env=env)
            assert done.returncode == 0, done.stderr
            for uid in uids if command == "status" else uids[1:]:  # the gap failed its checks: no job
                assert uid in done.stdout, (command, columns, done.stdout)
    # what status prints is what the other commands take
    assert run("results", uids[0], "--data-dir", str(data)).exit_code == 0


# -- 26: a quick --help; demo-data counts ------------------------------------------------------------------


def test_help_imports_nothing_heavy() -> None:
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "dicomflow", "--help"],
        capture_output=True,
        text=True,
        env=server_env(),
        timeout=60,
        check=True,
    )
    imported = {line.rsplit("|", 1)[-1].strip().split(".")[0] for line in done.stderr.splitlines()}
    assert "typer" in imported and "send" in done.stdout
    assert sorted(imported & set(HEAVY)) == []


def test_building_every_command_imports_nothing_heavy() -> None:
    code = (
        "import sys, typer.main; from dicomflow.cli import app; typer.main.get_command(app); "
        f"print(sorted(m for m in {HEAVY!r} if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(done.stdout.replace("'", '"')) == []


def test_demo_data_shows_the_count_written(tmp_path: Path) -> None:
    result = run("demo-data", str(tmp_path / "out"), "--kind", "mr")
    assert result.exit_code == 0, result.output
    assert "80/80" in result.output
    assert "wrote 80 files in 1 studies" in result.output


def test_the_command_line_copies_of_heavy_names_match_the_originals() -> None:
    from dicomflow.cli import _admin, _demo, _upload
    from dicomflow.client import DEFAULT_URL
    from dicomflow.demo import DemoKind
    from dicomflow.index.catalog import DEFAULT_GROUP
    from dicomflow.usecases.accounts import Role

    assert [r.value for r in _admin.Role] == [r.value for r in Role]
    assert [k.value for k in _demo.Kind] == [k.value for k in DemoKind]
    assert (_admin.DEFAULT_GROUP, _upload.DEFAULT_URL) == (DEFAULT_GROUP, DEFAULT_URL)


def test_upload_without_a_token_or_a_server_says_what_to_do(
    tmp_path: Path, free_port: Callable[[], int]
) -> None:
    write_files(make_study(series=1, instances=1), tmp_path / "in")
    url = f"http://127.0.0.1:{free_port()}"

    no_token = failed(run("upload", str(tmp_path / "in"), "--project", "p", "--url", url), code=2)
    assert "create one with `dicomflow tokens create --user EMAIL`" in no_token
    no_server = failed(run("upload", str(tmp_path / "in"), "--project", "p", "--url", url, "--token", "t"))
    assert no_server.startswith("error: ") and url in no_server and "check --url" in no_server
