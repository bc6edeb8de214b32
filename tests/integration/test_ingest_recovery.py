"""The ingest use case killed at each step of its write protocol, then recovered as ``serve`` does at start.

A child process (fork) ingests one instance and dies with ``os._exit`` at a chosen point, leaving the data
directory exactly as a crash would; the parent then runs ``recover_store`` and checks that the instance is
indexed if and only if its row was committed, and that blobs and rows match one to one.
"""

from __future__ import annotations

import hashlib
import multiprocessing
import os
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from dicomflow.config import DuplicatePolicy, Settings
from dicomflow.index import WriteLock, migrate
from dicomflow.ingest import Ingestor, Source, open_ingestor, recover_store
from dicomflow.storage import FileSystemBlobStore
from factories import DataDir, make_conflicting_pair, make_instance, to_bytes

CRASHED = 86
SOURCE = Source("import", "crash-test")


@pytest.fixture(autouse=True)
def _no_outside_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("DICOMFLOW_"):
            monkeypatch.delenv(name)


def settings_for(data_dir: Path, policy: DuplicatePolicy = DuplicatePolicy.REJECT) -> Settings:
    return Settings().with_overrides(data_dir=data_dir, **{"ingest.duplicate_policy": policy})  # type: ignore[call-arg]


def _die(*_args: Any, **_kwargs: Any) -> Any:
    os._exit(CRASHED)


def _child(settings: Settings, data: bytes, patches: list[tuple[type, str]], exit_after: bool) -> None:
    for owner, name in patches:
        setattr(owner, name, _die)
    ingestor = open_ingestor(settings)
    ingestor.ingest_bytes([data], SOURCE)
    os._exit(CRASHED if exit_after else 0)


def crash_while_ingesting(
    settings: Settings, data: bytes, patches: list[tuple[type, str]], *, exit_after: bool = False
) -> None:
    """Ingest ``data`` in a child that dies where a patched method is first called (or right after)."""
    context = multiprocessing.get_context("fork")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # fork of a threaded process (Python 3.12+)
        child = context.Process(target=_child, args=(settings, data, patches, exit_after))
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
    """Staging empty, every row's blob present with its checksum, no blob without a row; rows by UID."""
    assert list(data_dir.staging_dir.iterdir()) == []
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
        [(Ingestor, "record_rejection"), (FileSystemBlobStore, "_sync_pool")],
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
