"""Streaming zip archives of blobs: members byte-identical, names, order, and streaming in pieces."""

from __future__ import annotations

import io
import os
import zipfile
from datetime import UTC, datetime
from pathlib import Path

import pytest

from dicomflow.api import _archive
from dicomflow.api._archive import zip_stream
from dicomflow.index.instances import BlobRef
from dicomflow.storage import FileSystemBlobStore

RECEIVED = datetime(2024, 5, 1, 10, 20, 30, tzinfo=UTC)


def put(store: FileSystemBlobStore, sop_instance_uid: str, data: bytes, key: str | None = None) -> BlobRef:
    key = key or f"1.2/1.2.3/{sop_instance_uid}.dcm"
    staged = store.stage([data])
    store.publish(staged, key)
    store.release(staged)
    return BlobRef(sop_instance_uid, "1.2.3", key, len(data), RECEIVED)


@pytest.fixture
def store(tmp_path: Path) -> FileSystemBlobStore:
    return FileSystemBlobStore(tmp_path, fsync=False)


def unzip(pieces: list[bytes]) -> zipfile.ZipFile:
    archive = zipfile.ZipFile(io.BytesIO(b"".join(pieces)))
    assert archive.testzip() is None
    return archive


def test_members_are_byte_identical_and_in_order(store: FileSystemBlobStore) -> None:
    payloads = {f"1.2.3.{n}": os.urandom(1000 + n) for n in (3, 1, 2)}
    blobs = [put(store, uid, data) for uid, data in payloads.items()]
    with unzip(list(zip_stream(store, blobs))) as archive:
        assert archive.namelist() == [f"{uid}.dcm" for uid in payloads]
        for uid, data in payloads.items():
            assert archive.read(f"{uid}.dcm") == data
            info = archive.getinfo(f"{uid}.dcm")
            assert info.compress_type == zipfile.ZIP_STORED
            assert info.date_time == (2024, 5, 1, 10, 20, 30)


def test_a_second_object_under_one_uid_gets_a_suffix(store: FileSystemBlobStore) -> None:
    first = put(store, "1.2.3.4", b"first", key="a/1.2.3.4.dcm")
    second = put(store, "1.2.3.4", b"second", key="b/1.2.3.4.dcm")
    with unzip(list(zip_stream(store, [first, second]))) as archive:
        assert archive.namelist() == ["1.2.3.4.dcm", "1.2.3.4_2.dcm"]
        assert archive.read("1.2.3.4_2.dcm") == b"second"


def test_large_members_are_streamed_in_pieces(
    store: FileSystemBlobStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_archive, "CHUNK", 4096)
    data = os.urandom(10 * 4096 + 17)
    pieces = list(zip_stream(store, [put(store, "1.2.3.9", data)]))
    assert max(len(piece) for piece in pieces) < 2 * 4096
    with unzip(pieces) as archive:
        assert archive.read("1.2.3.9.dcm") == data


def test_an_empty_list_is_an_empty_archive(store: FileSystemBlobStore) -> None:
    with unzip(list(zip_stream(store, []))) as archive:
        assert archive.namelist() == []
