"""The ingest use case killed at each step of its write protocol, then recovered as ``serve`` does at start.

A child process (fork) ingests one instance and dies with ``os._exit`` at a chosen point, leaving the data
directory exactly as a crash would; the parent then runs ``recover_store`` and checks that the instance is
indexed if and only if its row was committed, and that blobs and rows match one to one.
"""

from __future__ import annotations

import hashlib
import multiprocessing
import os
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from dicomflow.config import DuplicatePolicy, Settings
from dicomflow.index import WriteLock, create_index_engine, migrate
from dicomflow.ingest import Ingestor, Source, open_ingestor, recover_store
from dicomflow.storage import FileSystemBlobStore, StagingArea
from factories import DataDir, create_project, make_conflicting_pair, make_instance, to_bytes
from waiting import wait_until

pytestmark = pytest.mark.usefixtures("index_url")  # each test on SQLite and on PostgreSQL (tests/pg.py)

CRASHED = 86
SOURCE = Source("import", "crash-test")


@pytest.fixture(autouse=True)
def _no_outside_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("DICOMFLOW_"):
            monkeypatch.delenv(name)


def settings_for(data_dir: Path, policy: DuplicatePolicy = DuplicatePolicy.REJECT) -> Settings:
    return Settings().with_overrides(data_dir=data_dir, **{"ingest.duplicate_policy": policy})  # type: ignore[call-arg]  # data_dir comes from with_overrides


def _die(*_args: Any, **_kwargs: Any) -> Any:
    os._exit(CRASHED)


def _child(
    settings: Settings, data: bytes, patches: list[tuple[type, str]], exit_after: bool, source: Source
) -> None:
    for owner, name in patches:
        setattr(owner, name, _die)
    ingestor = open_ingestor(settings)
    ingestor.ingest_bytes([data], source)
    os._exit(CRASHED if exit_after else 0)


def crash_while_ingesting(
    settings: Settings,
    data: bytes,
    patches: list[tuple[type, str]],
    *,
    exit_after: bool = False,
    source: Source = SOURCE,
) -> None:
    """Ingest ``data`` in a child that dies where a patched method is first called (or right after)."""
    context = multiprocessing.get_context("fork")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # fork of a threaded process (Python 3.12+)
        child = context.Process(target=_child, args=(settings, data, patches, exit_after, source))
        child.start()
    child.join(60)
    assert child.exitcode == CRASHED, f"the child did not die at the crash point (exit {child.exitcode})"


def recover(settings: Settings) -> None:
    ingestor = open_ingestor(settings)
    try:
        recover_store(ingestor)
    finally:
        ingestor.close()


def assert_consistent(data_dir: DataDir) -> dict[str, str]:
    """Nothing staged, every row's blob present with its checksum, no blob without a row; rows by UID."""
    assert staged(data_dir.data_dir) == []
    rows = data_dir.rows("SELECT sop_instance_uid, sha256, blob_key FROM instances")
    published = {str(p.relative_to(data_dir.objects_dir)) for p in data_dir.blob_files()}
    indexed = {blob_key for _uid, _sha, blob_key in rows}
    assert indexed - published == set(), "index rows without a blob"
    assert published - indexed == set(), "blobs without an index row (orphans)"
    for _uid, sha256, blob_key in rows:
        assert hashlib.sha256((data_dir.objects_dir / blob_key).read_bytes()).hexdigest() == sha256
    return {uid: sha256 for uid, sha256, _key in rows}


@pytest.fixture
def ready(tmp_path: Path) -> Callable[..., Settings]:
    """Settings of a migrated, empty installation in ``tmp_path`` (policy selectable)."""

    def make(policy: DuplicatePolicy = DuplicatePolicy.REJECT) -> Settings:
        settings = settings_for(tmp_path / "data", policy)
        ingestor = open_ingestor(settings)
        migrate(ingestor.engine)
        ingestor.close()
        return settings

    return make


CRASH_POINTS: dict[str, tuple[list[tuple[type, str]], bool, bool]] = {
    # name: (methods that kill the child when called, exit right after ingest returns, indexed after recovery)
    # Once the bytes are staged the staged file is a complete instance: recovery ingests it again if its
    # row did not survive (at least once), so every point after staging ends indexed.
    "before-the-header-is-parsed": (
        [(Ingestor, "record_rejection"), (StagingArea, "_sync_pool")],
        False,
        True,
    ),
    "before-publish": ([(FileSystemBlobStore, "publish")], False, True),
    "before-row-commit": ([(Ingestor, "_commit_row")], False, True),
    "before-index-log-sync": ([(WriteLock, "sync_log")], True, True),
    "before-release": ([(FileSystemBlobStore, "release")], False, True),
    "before-directory-sync": ([(FileSystemBlobStore, "flush")], True, True),
}


@pytest.mark.parametrize("point", list(CRASH_POINTS))
def test_crash_during_ingest_is_recovered(ready: Callable[..., Settings], point: str) -> None:
    patches, exit_after, indexed = CRASH_POINTS[point]
    settings = ready()
    ds = make_instance()
    data = to_bytes(ds)

    crash_while_ingesting(settings, data, patches, exit_after=exit_after)
    recover(settings)

    rows = assert_consistent(DataDir(settings.data_dir))
    if indexed:
        assert rows == {ds.SOPInstanceUID: hashlib.sha256(data).hexdigest()}
    else:
        assert rows == {}
    # the instance can be sent again afterwards, and then it is there exactly once
    again = open_ingestor(settings)
    try:
        again.ingest_bytes([data], SOURCE)
    finally:
        again.close()
    assert assert_consistent(DataDir(settings.data_dir)) == {
        ds.SOPInstanceUID: hashlib.sha256(data).hexdigest()
    }


def test_crash_before_the_replaced_blob_is_deleted_leaves_no_orphan(ready: Callable[..., Settings]) -> None:
    """Policy overwrite: the new row is committed, the old row deleted, then the process dies before the
    batch that deletes the old blob; after recovery no blob may be left without a row."""
    settings = ready(DuplicatePolicy.OVERWRITE)
    first, second = make_conflicting_pair()
    ingestor = open_ingestor(settings)
    ingestor.ingest_bytes([to_bytes(first)], SOURCE)
    ingestor.close()

    crash_while_ingesting(settings, to_bytes(second), [(FileSystemBlobStore, "flush")], exit_after=True)
    recover(settings)

    rows = assert_consistent(DataDir(settings.data_dir))
    assert rows == {first.SOPInstanceUID: hashlib.sha256(to_bytes(second)).hexdigest()}


def staged(data_dir: Path) -> list[Path]:
    """Staged instances (and holds) of every process, wherever their process keeps them."""
    return DataDir(data_dir).staged_now()


def _stall_before_publish(settings: Settings, data: bytes, source: Source) -> None:
    def stall(*_args: Any, **_kwargs: Any) -> Any:
        time.sleep(3600)  # a live process in the middle of a write, until the test kills it

    FileSystemBlobStore.publish = stall  # type: ignore[method-assign]  # the child's copy only
    ingestor = open_ingestor(settings)
    ingestor.ingest_bytes([data], source)


SOURCES = {
    "dimse": Source("dimse", "MODALITY@127.0.0.1", calling_ae="kp-cohort", called_ae="kp-lungs"),
    "upload": Source("upload", "someone@example.org upload 0b1e5b0c", called_ae="kp-lungs"),
}


def with_project(settings: Settings, label: str = "lungs") -> Settings:
    engine = create_index_engine(settings.index_url)
    create_project(engine, label)
    engine.dispose()
    return settings


def placement_of(data_dir: Path, sop_instance_uid: str) -> tuple[str, str | None]:
    """The project of an instance and the datasets (comma separated) its series belongs to."""
    data = DataDir(data_dir)
    names = "string_agg(d.name, ',')" if data.index_url.startswith("postgresql") else "group_concat(d.name)"
    [(project, datasets)] = data.rows(
        f"SELECT p.label, (SELECT {names} FROM dataset_series m JOIN datasets d"
        "  ON d.id = m.dataset_id WHERE m.acquisition_id = a.id)"
        " FROM instances i JOIN acquisitions a ON a.id = i.acquisition_id"
        " JOIN sessions s ON s.id = a.session_id JOIN projects p ON p.id = s.project_id"
        " WHERE i.sop_instance_uid = ?",
        (sop_instance_uid,),
    )
    return project, datasets


@pytest.mark.parametrize("kind", list(SOURCES))
def test_recovery_leaves_a_live_process_staged_writes_alone(
    ready: Callable[..., Settings], kind: str
) -> None:
    """A server starting (or any recovery) used to ingest again, then delete, the staged files of a process
    still writing them: the files of instances it was about to acknowledge. Once that process is killed
    (SIGKILL), its write is finished for the source it was sent with."""
    settings = with_project(ready())
    source = SOURCES[kind]
    ds = make_instance()
    data = to_bytes(ds)
    context = multiprocessing.get_context("fork")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        child = context.Process(target=_stall_before_publish, args=(settings, data, source))
        child.start()
    try:

        def has_staged() -> bool:
            assert child.is_alive(), "the child died before staging"
            return bool(staged(settings.data_dir))

        wait_until(has_staged, interval=0.02, message="the child staged nothing")
        [in_flight] = staged(settings.data_dir)
        content = in_flight.read_bytes()

        recover(settings)

        assert staged(settings.data_dir) == [in_flight]
        assert in_flight.read_bytes() == content == data
        assert DataDir(settings.data_dir).instance_count() == 0
        assert DataDir(settings.data_dir).blob_files() == []
    finally:
        child.kill()
        child.join(10)
    recover(settings)  # now its process is gone: the write is finished
    assert assert_consistent(DataDir(settings.data_dir)) == {
        ds.SOPInstanceUID: hashlib.sha256(data).hexdigest()
    }
    assert placement_of(settings.data_dir, ds.SOPInstanceUID) == (
        "lungs",
        "cohort" if source.calling_ae else None,
    )


@pytest.mark.parametrize("kind", list(SOURCES))
@pytest.mark.parametrize("point", ["before-publish", "before-row-commit"])
def test_an_instance_recovered_goes_where_its_live_ingest_would_have(
    ready: Callable[..., Settings], kind: str, point: str
) -> None:
    """The source (called and calling AE, upload) is kept with the staged file, so that an instance whose
    row was lost lands in the project and dataset its sender chose, not in the fallback project."""
    settings = with_project(ready())
    source = SOURCES[kind]
    ds = make_instance()
    patches, exit_after, _indexed = CRASH_POINTS[point]

    crash_while_ingesting(settings, to_bytes(ds), patches, exit_after=exit_after, source=source)
    recover(settings)

    assert placement_of(settings.data_dir, ds.SOPInstanceUID) == (
        "lungs",
        "cohort" if source.calling_ae else None,
    )
    assert_consistent(DataDir(settings.data_dir))


def projects_of(data_dir: Path, sop_instance_uid: str) -> list[str]:
    rows = DataDir(data_dir).rows(
        "SELECT p.label FROM instances i JOIN acquisitions a ON a.id = i.acquisition_id"
        " JOIN sessions s ON s.id = a.session_id JOIN projects p ON p.id = s.project_id"
        " WHERE i.sop_instance_uid = ? ORDER BY p.label",
        (sop_instance_uid,),
    )
    return [label for (label,) in rows]


@pytest.mark.parametrize(
    "source",
    [
        Source("dimse", "MODALITY@127.0.0.1", called_ae="kp-heart"),
        Source("upload", "someone@example.org upload 1c2d", project=("default", "heart")),
    ],
    ids=["kp-called-ae", "upload-project"],
)
def test_a_copy_into_a_second_project_is_recovered_though_another_project_has_its_blob(
    ready: Callable[..., Settings], source: Source
) -> None:
    """Identical bytes in two projects share one blob key; the row of project lungs must not make recovery
    think the staged copy for project heart was indexed (issue 9, items 6 and 14)."""
    settings = with_project(with_project(ready()), "heart")
    ds = make_instance()
    ingestor = open_ingestor(settings)
    ingestor.ingest_bytes([to_bytes(ds)], SOURCES["dimse"])  # into lungs
    ingestor.close()

    patches, exit_after, _indexed = CRASH_POINTS["before-row-commit"]
    crash_while_ingesting(settings, to_bytes(ds), patches, exit_after=exit_after, source=source)
    recover(settings)

    assert projects_of(settings.data_dir, ds.SOPInstanceUID) == ["heart", "lungs"]
    assert_consistent(DataDir(settings.data_dir))
