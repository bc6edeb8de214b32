"""The running receiver driven by DCMTK: C-ECHO, C-STORE in every transfer syntax, duplicates, downloads.

Every instance must be indexed with the transfer syntax it was sent in, and downloads must hand back the
data set exactly as it came over the network (the server writes its own file meta in front of it).
"""

from __future__ import annotations

import hashlib
import io
import re
import shutil
import subprocess
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from dcmtk import dcmsend, echoscu, storescu, storescu_as_is
from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.uid import (
    UID,
    CTImageStorage,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
)
from scu import store_files

from dicomflow.client import Client
from dicomflow.dimse import TRANSFER_SYNTAXES as ACCEPTED_SYNTAXES
from factories import (
    TRANSFER_SYNTAXES,
    DicomflowServer,
    bits_for,
    dataset_bytes,
    make_conflicting_pair,
    make_instance,
    make_study,
    write_files,
)

pytestmark = pytest.mark.e2e

SUCCESS = 0x0000
DUPLICATE_SOP_INSTANCE = 0x0111
STOCK = {"DICOMFLOW_PERFORMANCE__FAST_PATHS": "0"}


@pytest.fixture(scope="module", params=["fast-paths", "stock"])
def server_each_way(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, free_port: Callable[[], int]
) -> Iterator[DicomflowServer]:
    """The module's server (fast paths on), then one running the stock library code (``performance.
    fast_paths`` off): the core tests of the receiver run on both."""
    if request.param == "fast-paths":
        yield request.getfixturevalue("server")
        return
    running = DicomflowServer(tmp_path_factory.mktemp("stock") / "data", free_port(), free_port(), STOCK)
    try:
        running.start()
        yield running
    finally:
        running.stop()


def sop_uid(path: Path) -> str:
    return str(dcmread(path, stop_before_pixels=True).SOPInstanceUID)


def assert_stored_as_sent(server: DicomflowServer, path: Path, transfer_syntax: str) -> None:
    """One row in ``transfer_syntax``, its blob on disk, and the download equal to what was sent."""
    uid = sop_uid(path)
    rows = server.rows(
        "SELECT transfer_syntax_uid, sha256, size, blob_key FROM instances WHERE sop_instance_uid = ?", (uid,)
    )
    assert len(rows) == 1, f"{uid}: {len(rows)} index rows"
    stored_syntax, sha256, size, blob_key = rows[0]
    assert stored_syntax == transfer_syntax, (
        f"{path.name} sent in {UID(transfer_syntax).name} but stored in {UID(stored_syntax).name}"
    )
    response = server.http.get(f"/instances/{uid}/file")
    assert response.status_code == 200
    download = response.content
    assert hashlib.sha256(download).hexdigest() == sha256
    assert len(download) == size
    assert (server.objects_dir / blob_key).read_bytes() == download
    assert dataset_bytes(download) == dataset_bytes(path.read_bytes())
    meta = dcmread(io.BytesIO(download), stop_before_pixels=True).file_meta
    assert meta.TransferSyntaxUID == transfer_syntax
    assert meta.MediaStorageSOPInstanceUID == uid


def send_study(server: DicomflowServer, folder: Path, **attrs: Any) -> tuple[list[Dataset], list[Path]]:
    """A 2x2 study in explicit VR little endian, sent with plain ``storescu``."""
    study = make_study(series=2, instances=2, **attrs)
    paths = write_files(study, folder)
    storescu(server.dimse_port, paths)
    return study, paths


def test_echo(server_each_way: DicomflowServer) -> None:
    echoscu(server_each_way.dimse_port)


@pytest.mark.parametrize("transfer_syntax", TRANSFER_SYNTAXES, ids=lambda ts: UID(ts).keyword or ts)
def test_storescu_study_is_stored_in_its_transfer_syntax(
    server: DicomflowServer, tmp_path: Path, transfer_syntax: str
) -> None:
    study = make_study(series=2, instances=2, bits=bits_for(transfer_syntax))
    paths = write_files(study, tmp_path / "files", transfer_syntax)

    storescu_as_is(server.dimse_port, paths, [CTImageStorage], transfer_syntax, tmp_path)

    for path in paths:
        assert_stored_as_sent(server, path, transfer_syntax)
    series = {ds.SeriesInstanceUID for ds in study}
    for series_uid in series:
        info = server.get_json(f"/series/{series_uid}")
        assert info["instance_count"] == 2
        assert {i["transfer_syntax_uid"] for i in info["instances"]} == {transfer_syntax}


# dcmsend proposes uncompressed files as "explicit little endian first" whatever their encoding (it converts
# them itself); every other file it proposes in the file's own syntax first.
DCMSEND_KEEPS = [ts for ts in TRANSFER_SYNTAXES if ts not in (ImplicitVRLittleEndian, ExplicitVRBigEndian)]


def test_dcmsend_files_are_stored_in_their_own_transfer_syntax(
    server_each_way: DicomflowServer, tmp_path: Path
) -> None:
    """dcmsend (Kaapana's sender) proposes each file's syntax first, then uncompressed fallbacks in the
    same presentation context: the receiver must honour that order, or the sender decompresses."""
    folder = tmp_path / "mixed"
    paths = []
    for transfer_syntax in DCMSEND_KEEPS:
        ds = make_instance(bits=bits_for(transfer_syntax))
        paths += write_files([ds], folder / UID(transfer_syntax).keyword, transfer_syntax)

    dcmsend(server_each_way.dimse_port, "-aec", "DICOMFLOW", "--scan-directories", "--recurse", str(folder))

    wrong = {}
    for path, transfer_syntax in zip(paths, DCMSEND_KEEPS, strict=True):
        stored = server_each_way.scalar(
            "SELECT transfer_syntax_uid FROM instances WHERE sop_instance_uid = ?", (sop_uid(path),)
        )
        if stored != transfer_syntax:
            wrong[UID(transfer_syntax).name] = UID(stored).name if stored else None
    assert not wrong, f"sent in one syntax, stored in another (sent: stored): {wrong}"
    for path, transfer_syntax in zip(paths, DCMSEND_KEEPS, strict=True):
        assert_stored_as_sent(server_each_way, path, transfer_syntax)


def test_resending_the_same_files_keeps_one_copy(server: DicomflowServer, tmp_path: Path) -> None:
    study, paths = send_study(server, tmp_path)
    uids = [ds.SOPInstanceUID for ds in study]
    instances, blobs = server.instance_count(), len(server.blob_files())

    storescu(server.dimse_port, paths)

    assert server.instance_count() == instances
    assert len(server.blob_files()) == blobs
    for uid, path in zip(uids, paths, strict=True):
        assert len(server.events(kind="received", object_uid=uid)) == 1
        assert len(server.events(kind="duplicate", object_uid=uid)) == 1
        assert_stored_as_sent(server, path, ExplicitVRLittleEndian)


def test_other_object_under_a_stored_sop_instance_uid_is_refused(
    server: DicomflowServer, tmp_path: Path
) -> None:
    first, second = make_conflicting_pair()
    paths = write_files([first, second], tmp_path)
    uid = first.SOPInstanceUID

    statuses = store_files(server.dimse_port, paths, [(CTImageStorage, ExplicitVRLittleEndian)])

    assert statuses[0].status == SUCCESS
    assert statuses[1].status == DUPLICATE_SOP_INSTANCE
    # The ErrorComment (LO, at most 64 characters) must still say what is wrong after truncation.
    assert "different content" in statuses[1].comment or "already stored" in statuses[1].comment, (
        f"ErrorComment does not name the problem: {statuses[1].comment!r}"
    )
    assert server.scalar("SELECT count(*) FROM instances WHERE sop_instance_uid = ?", (uid,)) == 1
    assert_stored_as_sent(server, paths[0], ExplicitVRLittleEndian)
    [rejected] = server.events(kind="rejected", object_uid=uid)
    assert rejected["reason"].startswith("duplicate-conflict:")
    assert rejected["outcome"] == "failed"


def test_series_and_session_downloads_hold_the_stored_bytes(server: DicomflowServer, tmp_path: Path) -> None:
    study, paths = send_study(server, tmp_path)
    sent = {ds.SOPInstanceUID: path for ds, path in zip(study, paths, strict=True)}

    for series_uid in dict.fromkeys(ds.SeriesInstanceUID for ds in study):
        response = server.http.get(f"/series/{series_uid}/download")
        assert response.status_code == 200
        assert response.headers["content-type"] == "application/zip"
        with zipfile.ZipFile(io.BytesIO(response.content)) as archive:
            members = {name: archive.read(name) for name in archive.namelist()}
        expected = [ds.SOPInstanceUID for ds in study if ds.SeriesInstanceUID == series_uid]
        assert sorted(members) == sorted(f"{uid}.dcm" for uid in expected)
        for uid in expected:
            single = server.http.get(f"/instances/{uid}/file").content
            assert members[f"{uid}.dcm"] == single
            assert dataset_bytes(single) == dataset_bytes(sent[uid].read_bytes())

    response = server.http.get(f"/sessions/{study[0].StudyInstanceUID}/download")
    assert response.status_code == 200
    with zipfile.ZipFile(io.BytesIO(response.content)) as archive:
        assert sorted(archive.namelist()) == sorted(f"{uid}.dcm" for uid in sent)


def test_ls_why_shows_the_placement_rule(server: DicomflowServer, tmp_path: Path) -> None:
    study, _paths = send_study(server, tmp_path, PatientID="WHY001")
    study_uid = study[0].StudyInstanceUID
    sessions = [
        session
        for group in server.get_json("/hierarchy")
        for project in group["projects"]
        for subject in project["subjects"]
        for session in subject["sessions"]
        if session["study_instance_uid"] == study_uid
    ]
    assert len(sessions) == 1
    rule, reason = sessions[0]["placement_rule"], sessions[0]["placement_reason"]
    assert rule and reason

    output = server.cli("ls", "--why").stdout

    lines = output.splitlines()
    [at] = [i for i, line in enumerate(lines) if study_uid in line]
    assert f"why: {rule}: {reason}" in lines[at + 1]


def test_tools_needed_are_installed() -> None:
    for tool in ("storescu", "dcmsend", "echoscu", "dcmconv", "dcmcjpeg", "dcmcjpls"):
        assert shutil.which(tool), f"{tool} (DCMTK) is not installed"


def test_every_transfer_syntax_the_receiver_accepts_is_tested_here() -> None:
    assert set(TRANSFER_SYNTAXES) == set(ACCEPTED_SYNTAXES)


def test_small_pdus_are_reassembled(server_each_way: DicomflowServer, tmp_path: Path) -> None:
    """4 KiB PDUs: every data set arrives in about a hundred fragments (the fast path's buffer grows too)."""
    study = make_study(series=1, instances=2)
    for ds in study:
        ds.Rows = ds.Columns = 512
        ds.PixelData = bytes(range(256)) * 2048  # 512 x 512 x 2 bytes
    paths = write_files(study, tmp_path)
    storescu(server_each_way.dimse_port, paths, "--max-send-pdu", "4096")
    for path in paths:
        assert_stored_as_sent(server_each_way, path, ExplicitVRLittleEndian)


def test_echo_and_store_share_an_association(server_each_way: DicomflowServer, tmp_path: Path) -> None:
    """C-ECHO (left to pynetdicom) between C-STOREs (received in the DUL thread) on one association."""
    from pynetdicom import AE

    first, second = make_conflicting_pair()
    ae = AE(ae_title="MIXED")
    ae.add_requested_context(CTImageStorage, ExplicitVRLittleEndian)
    ae.add_requested_context("1.2.840.10008.1.1")
    assoc = ae.associate("127.0.0.1", server_each_way.dimse_port, ae_title="DICOMFLOW")
    try:
        assert assoc.is_established
        statuses = [
            int(assoc.send_c_echo().Status),
            int(assoc.send_c_store(first).Status),
            int(assoc.send_c_echo().Status),
        ]
        refused = assoc.send_c_store(second)
        statuses.append(int(assoc.send_c_echo().Status))
    finally:
        assoc.release()

    assert statuses == [SUCCESS, SUCCESS, SUCCESS, SUCCESS]
    assert int(refused.Status) == DUPLICATE_SOP_INSTANCE
    assert str(refused.ErrorComment).startswith("different content already stored")


def store_responses(done: subprocess.CompletedProcess[str]) -> list[str]:
    """The status names of the C-STORE responses ``storescu -v`` reports."""
    return re.findall(r"Received Store Response \(([^)]*)\)", done.stdout + done.stderr)


def assert_stored_once(server: DicomflowServer, path: Path, uid: str) -> None:
    assert server.scalar("SELECT count(*) FROM instances WHERE sop_instance_uid = ?", (uid,)) == 1
    assert len([p for p in server.blob_files() if uid in p.name]) == 1
    assert server.events(kind="rejected", object_uid=uid) == []
    assert len(server.events(kind="duplicate", object_uid=uid)) == 1
    assert dataset_bytes(server.http.get(f"/instances/{uid}/file").content) == dataset_bytes(
        path.read_bytes()
    )


def test_the_same_files_from_another_calling_ae_are_a_success_stored_once(
    server_each_way: DicomflowServer, tmp_path: Path
) -> None:
    """The stored file meta names the first sender (SourceApplicationEntityTitle); a re-send from another
    modality carries the same data set and is an identical re-send, not a conflict (0x0111)."""
    study, paths = send_study(server_each_way, tmp_path)

    done = storescu(server_each_way.dimse_port, paths, "-v", calling_ae="OTHER_MODALITY")

    assert store_responses(done) == ["Success"] * len(paths)
    for ds, path in zip(study, paths, strict=True):
        assert_stored_once(server_each_way, path, ds.SOPInstanceUID)


def test_the_same_file_over_http_and_over_dicom_is_a_success_stored_once(
    server_each_way: DicomflowServer, tmp_path: Path
) -> None:
    server_each_way.http.post("/projects", json={"label": "twice"}).raise_for_status()
    ds = make_instance()
    [path] = write_files([ds], tmp_path / "file")

    with Client(f"http://127.0.0.1:{server_each_way.http_port}", server_each_way.token) as client:
        upload = client.wait_for_import(client.upload_dir("twice", path, progress=False).id, timeout=60)
        assert upload.errors == [] and upload.summary_errors == []
        done = storescu(server_each_way.dimse_port, [path], "-v", called_ae="kp-twice", calling_ae="MODALITY")
        assert store_responses(done) == ["Success"]
        again = client.wait_for_import(client.upload_dir("twice", path, progress=False).id, timeout=60)
        assert again.errors == [] and again.summary_errors == []

    assert (
        server_each_way.scalar(
            "SELECT count(*) FROM instances WHERE sop_instance_uid = ?", (ds.SOPInstanceUID,)
        )
        == 1
    )
    assert server_each_way.events(kind="rejected", object_uid=ds.SOPInstanceUID) == []
    assert len(server_each_way.events(kind="duplicate", object_uid=ds.SOPInstanceUID)) == 2
    # the copy kept is the first one received: the uploaded file, its own file meta included
    assert server_each_way.http.get(f"/instances/{ds.SOPInstanceUID}/file").content == path.read_bytes()
