"""``dicomflow import`` (folder and zip into a data directory) and ``dicomflow send`` (C-STORE SCU) to a
running server, as a user runs them: subprocesses, judged by exit code and by the index."""

from __future__ import annotations

import zipfile
from collections.abc import Callable
from pathlib import Path

from pydicom import dcmread
from pydicom.uid import UID, DeflatedExplicitVRLittleEndian, JPEG2000Lossless, JPEGLSLossless, RLELossless

from factories import DataDir, DicomflowServer, dicomflow, make_instance, make_study, write_files


def import_(data_dir: Path, *args: str) -> int:
    return dicomflow("import", *args, "--data-dir", str(data_dir)).returncode


def send(server: DicomflowServer, *args: str | Path) -> tuple[int, str]:
    done = dicomflow("send", *map(str, args), "--port", str(server.dimse_port))
    return done.returncode, done.stdout + done.stderr


# -- import ---------------------------------------------------------------------------------------------


def test_import_folder_indexes_every_instance_once(tmp_path: Path) -> None:
    study = make_study(series=2, instances=3)
    write_files(study[:3], tmp_path / "in" / "a")
    write_files(study[3:], tmp_path / "in" / "b" / "deeper")
    data = DataDir(tmp_path / "data")

    assert import_(data.data_dir, str(tmp_path / "in")) == 0
    assert sorted(r[0] for r in data.rows("SELECT sop_instance_uid FROM instances")) == sorted(
        ds.SOPInstanceUID for ds in study
    )
    assert len(data.blob_files()) == 6

    assert import_(data.data_dir, str(tmp_path / "in")) == 0  # again: duplicates, nothing new
    assert data.instance_count() == 6
    assert len(data.blob_files()) == 6
    assert data.scalar("SELECT count(*) FROM events WHERE kind = 'duplicate'") == 6
    assert data.staged_files() == []


def test_import_zip_with_a_non_dicom_member_imports_the_rest_and_fails(tmp_path: Path) -> None:
    study = make_study(series=1, instances=4)
    paths = write_files(study, tmp_path / "files")
    archive = tmp_path / "upload.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for path in paths:
            zf.write(path, f"series/{path.name}")
        zf.writestr("series/README.txt", "not an image\n")
    data = DataDir(tmp_path / "data")

    assert import_(data.data_dir, str(archive)) == 1
    assert data.instance_count() == 4
    reasons = [r[0] for r in data.rows("SELECT reason FROM events WHERE kind = 'rejected'")]
    assert len(reasons) == 1
    assert reasons[0].startswith("invalid-instance:")
    assert data.staged_files() == []


def test_import_into_project_and_dataset(tmp_path: Path) -> None:
    study = make_study(series=2, instances=1)
    write_files(study, tmp_path / "in")
    data = DataDir(tmp_path / "data")
    assert dicomflow("projects", "create", "Trial7", "--data-dir", str(data.data_dir)).returncode == 0

    assert import_(data.data_dir, str(tmp_path / "in"), "--project", "Trial7", "--dataset", "cohortA") == 0

    projects = data.rows(
        "SELECT DISTINCT p.label FROM instances i JOIN acquisitions a ON a.id = i.acquisition_id "
        "JOIN sessions s ON s.id = a.session_id JOIN projects p ON p.id = s.project_id"
    )
    assert projects == [("Trial7",)]
    members = data.rows(
        "SELECT a.series_instance_uid FROM dataset_series m JOIN datasets d ON d.id = m.dataset_id "
        "JOIN acquisitions a ON a.id = m.acquisition_id WHERE d.name = 'cohortA'"
    )
    assert sorted(r[0] for r in members) == sorted({ds.SeriesInstanceUID for ds in study})


def test_import_into_a_missing_project_imports_nothing(tmp_path: Path) -> None:
    write_files([make_instance()], tmp_path / "in")
    data = DataDir(tmp_path / "data")

    assert import_(data.data_dir, str(tmp_path / "in"), "--project", "nosuch") != 0
    assert not data.index_path.exists() or data.instance_count() == 0


# -- send -----------------------------------------------------------------------------------------------


def test_send_over_three_associations(server: DicomflowServer, tmp_path: Path) -> None:
    study = make_study(series=2, instances=5)
    write_files(study, tmp_path / "out")

    code, output = send(server, tmp_path / "out", "--associations", "3")

    assert code == 0, output
    assert "success" in output
    for ds in study:
        assert server.http.get(f"/instances/{ds.SOPInstanceUID}").status_code == 200
    actors = {e["actor"].split("@")[0] for e in server.events(kind="received")}
    assert "DICOMFLOW-SCU" in actors


def test_send_to_an_unreachable_port_fails_once(tmp_path: Path, free_port: Callable[[], int]) -> None:
    write_files(make_study(series=1, instances=12), tmp_path / "out")
    port = free_port()  # nothing listens there

    done = dicomflow("send", str(tmp_path / "out"), "--port", str(port))

    output = done.stdout + done.stderr
    assert done.returncode == 1, output
    assert output.count(f"cannot connect to 127.0.0.1:{port}") == 1, output
    assert "check --host and --port" in output
    assert "Traceback" not in output and ".dcm" not in output and "/12" not in output


def test_send_to_a_missing_kp_project_fails(server: DicomflowServer, tmp_path: Path) -> None:
    study = make_study(series=1, instances=2)
    write_files(study, tmp_path / "out")

    code, output = send(server, tmp_path / "out", "--called-ae", "kp-nosuch")

    assert code == 1, output
    assert output.count("association rejected by kp-nosuch@") == 1, output  # once for both files
    for ds in study:
        assert server.http.get(f"/instances/{ds.SOPInstanceUID}").status_code == 404


def test_send_to_a_kp_project_and_dataset(server: DicomflowServer, tmp_path: Path) -> None:
    server.cli("projects", "create", "sendproj")
    study = make_study(series=1, instances=2)
    write_files(study, tmp_path / "out")

    code, output = send(server, tmp_path / "out", "--called-ae", "kp-sendproj", "--calling-ae", "kp-sendset")

    assert code == 0, output
    assert server.get_json(f"/series/{study[0].SeriesInstanceUID}")["project"] == "sendproj"
    [sendset] = [d for d in server.get_json("/datasets") if d["name"] == "sendset"]
    assert [s["series_instance_uid"] for s in sendset["series"]] == [study[0].SeriesInstanceUID]


def test_send_keeps_each_file_transfer_syntax(server: DicomflowServer, tmp_path: Path) -> None:
    """``send`` promises the stored bytes unchanged: compressed files must arrive compressed."""
    syntaxes = (RLELossless, JPEG2000Lossless, JPEGLSLossless, DeflatedExplicitVRLittleEndian)
    paths = [write_files([make_instance()], tmp_path / "out" / UID(ts).keyword, ts)[0] for ts in syntaxes]

    code, output = send(server, tmp_path / "out")

    assert code == 0, output
    for path, transfer_syntax in zip(paths, syntaxes, strict=True):
        uid = dcmread(path, stop_before_pixels=True).SOPInstanceUID
        stored = server.scalar("SELECT transfer_syntax_uid FROM instances WHERE sop_instance_uid = ?", (uid,))
        assert stored == transfer_syntax, f"{UID(transfer_syntax).name} stored as {stored}"
