"""The duplicate policies and the event log, through the ingest use case on a real index and store."""

from __future__ import annotations

from io import BytesIO
from pathlib import Path

import pytest
from pydicom import dcmread
from sqlalchemy import select

from dicomflow.config import DuplicatePolicy, Settings
from dicomflow.dicom import encode_file_meta
from dicomflow.errors import DuplicateConflict
from dicomflow.index import Event, Instance, migrate
from dicomflow.ingest import Ingestor, Outcome, Source, open_ingestor
from factories import dataset_bytes, make_conflicting_pair, to_bytes

pytestmark = pytest.mark.usefixtures("index_url")  # each test on SQLite and on PostgreSQL (tests/pg.py)

SOURCE = Source("import", "test")


def _ingestor(tmp_path: Path, policy: DuplicatePolicy) -> Ingestor:
    settings = Settings().with_overrides(data_dir=tmp_path, **{"ingest.duplicate_policy": policy})  # type: ignore[call-arg]  # data_dir comes from with_overrides
    ingestor = open_ingestor(settings)
    migrate(ingestor.engine)
    return ingestor


@pytest.fixture
def pair() -> tuple[bytes, bytes]:
    first, second = make_conflicting_pair()
    return to_bytes(first), to_bytes(second)


def _blobs(tmp_path: Path) -> list[Path]:
    return sorted(p for p in (tmp_path / "blobs" / "objects").rglob("*.dcm"))


def _staged(tmp_path: Path) -> list[Path]:
    """Staged files of every process (each stages in a folder of its own)."""
    return sorted(p for p in (tmp_path / "blobs" / "staging").rglob("*") if p.suffix in (".part", ".dcm"))


def _kinds(ingestor: Ingestor) -> list[str]:
    with ingestor.engine.connect() as conn:
        return list(conn.scalars(select(Event.kind).order_by(Event.id)))


def test_identical_resend_is_success_without_second_copy(tmp_path: Path, pair: tuple[bytes, bytes]) -> None:
    ingestor = _ingestor(tmp_path, DuplicatePolicy.REJECT)
    assert ingestor.ingest_bytes([pair[0]], SOURCE).outcome is Outcome.STORED
    assert ingestor.ingest_bytes([pair[0]], SOURCE).outcome is Outcome.DUPLICATE
    assert len(_blobs(tmp_path)) == 1
    assert _kinds(ingestor)[-1] == "duplicate"
    ingestor.store.flush()
    assert _staged(tmp_path) == []


def test_reject_keeps_the_first(tmp_path: Path, pair: tuple[bytes, bytes]) -> None:
    ingestor = _ingestor(tmp_path, DuplicatePolicy.REJECT)
    ingestor.ingest_bytes([pair[0]], SOURCE)
    with pytest.raises(DuplicateConflict, match="different content already stored"):
        ingestor.ingest_bytes([pair[1]], SOURCE)
    assert [p.read_bytes() for p in _blobs(tmp_path)] == [pair[0]]
    assert _kinds(ingestor)[-1] == "rejected"
    ingestor.store.flush()
    assert _staged(tmp_path) == []


def test_overwrite_replaces_row_and_bytes(tmp_path: Path, pair: tuple[bytes, bytes]) -> None:
    ingestor = _ingestor(tmp_path, DuplicatePolicy.OVERWRITE)
    ingestor.ingest_bytes([pair[0]], SOURCE)
    assert ingestor.ingest_bytes([pair[1]], SOURCE).outcome is Outcome.OVERWRITTEN
    ingestor.store.flush()  # the replaced blob goes once the change is durable
    assert [p.read_bytes() for p in _blobs(tmp_path)] == [pair[1]]
    with ingestor.engine.connect() as conn:
        assert len(conn.execute(select(Instance.id)).all()) == 1
        reason = conn.scalar(select(Event.reason).where(Event.kind == "received").order_by(Event.id.desc()))
    assert reason is not None and "policy: overwrite" in reason


def test_keep_both_keeps_two(tmp_path: Path, pair: tuple[bytes, bytes]) -> None:
    ingestor = _ingestor(tmp_path, DuplicatePolicy.KEEP_BOTH)
    ingestor.ingest_bytes([pair[0]], SOURCE)
    assert ingestor.ingest_bytes([pair[1]], SOURCE).outcome is Outcome.KEPT_BOTH
    assert sorted(p.read_bytes() for p in _blobs(tmp_path)) == sorted(pair)
    with ingestor.engine.connect() as conn:
        assert len(conn.execute(select(Instance.id)).all()) == 2
        reason = conn.scalar(select(Event.reason).where(Event.kind == "received").order_by(Event.id.desc()))
    assert reason is not None and "policy: keep-both" in reason


def _with_meta(data: bytes, source_ae: str) -> bytes:
    """The same data set behind the file meta the receiver writes for a C-STORE from ``source_ae``."""
    ds = dcmread(BytesIO(data), stop_before_pixels=True)
    meta = encode_file_meta(
        ds.file_meta.MediaStorageSOPClassUID,
        ds.file_meta.MediaStorageSOPInstanceUID,
        ds.file_meta.TransferSyntaxUID,
        source_ae,
    )
    return meta + dataset_bytes(data)


@pytest.mark.parametrize("policy", list(DuplicatePolicy))
def test_same_data_set_under_another_file_meta_is_an_identical_resend(
    tmp_path: Path, pair: tuple[bytes, bytes], policy: DuplicatePolicy
) -> None:
    """Sent from two calling AEs, or once as a file over HTTP and once over DICOM: only the file meta
    differs, so the second is a success without a second copy, whatever the policy for real conflicts."""
    ingestor = _ingestor(tmp_path, policy)
    as_file, from_a, from_b = pair[0], _with_meta(pair[0], "MODALITY_A"), _with_meta(pair[0], "MODALITY_B")
    assert len({as_file, from_a, from_b}) == 3

    first = ingestor.ingest_bytes([from_a], SOURCE)
    assert first.outcome is Outcome.STORED
    for again in (from_b, as_file):
        result = ingestor.ingest_bytes([again], SOURCE)
        assert result.outcome is Outcome.DUPLICATE
        assert (result.blob_key, result.acquisition_id) == (first.blob_key, first.acquisition_id)
    ingestor.store.flush()
    assert [p.read_bytes() for p in _blobs(tmp_path)] == [from_a]
    with ingestor.engine.connect() as conn:
        assert len(conn.execute(select(Instance.id)).all()) == 1
    assert _kinds(ingestor)[-2:] == ["duplicate", "duplicate"]
    ingestor.close()


def test_a_different_data_set_under_another_file_meta_is_still_a_conflict(
    tmp_path: Path, pair: tuple[bytes, bytes]
) -> None:
    ingestor = _ingestor(tmp_path, DuplicatePolicy.REJECT)
    ingestor.ingest_bytes([_with_meta(pair[0], "MODALITY_A")], SOURCE)
    with pytest.raises(DuplicateConflict, match="different content already stored"):
        ingestor.ingest_bytes([_with_meta(pair[1], "MODALITY_A")], SOURCE)
    with pytest.raises(DuplicateConflict, match="different content already stored"):
        ingestor.ingest_bytes([pair[1]], SOURCE)
    ingestor.store.flush()
    assert len(_blobs(tmp_path)) == 1
    ingestor.close()
