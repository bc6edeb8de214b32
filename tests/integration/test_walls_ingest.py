"""Projects are walls in the ingest (issue 9, item 6): an instance's identity, the duplicate policy and the
de-duplication of identical re-sends hold within one project. The same bytes sent into two projects are
stored in each (one shared, content-addressed blob); replacing one project's copy leaves the other's."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select

from dicomflow.config import DuplicatePolicy, Settings
from dicomflow.errors import DuplicateConflict
from dicomflow.index import Acquisition, Instance, Project, Session, migrate
from dicomflow.ingest import Ingestor, Outcome, Source, open_ingestor
from factories import create_project, make_conflicting_pair, to_bytes

pytestmark = pytest.mark.usefixtures("index_url")  # each test on SQLite and on PostgreSQL (tests/pg.py)

P1, P2 = Source("dimse", "test", called_ae="kp-p1"), Source("dimse", "test", called_ae="kp-p2")


def _ingestor(tmp_path: Path, policy: DuplicatePolicy) -> Ingestor:
    settings = Settings().with_overrides(data_dir=tmp_path, **{"ingest.duplicate_policy": policy})  # type: ignore[call-arg]  # data_dir comes from with_overrides
    ingestor = open_ingestor(settings)
    migrate(ingestor.engine)
    create_project(ingestor.engine, "p1")
    create_project(ingestor.engine, "p2")
    return ingestor


@pytest.fixture
def pair() -> tuple[bytes, bytes]:
    first, second = make_conflicting_pair()
    return to_bytes(first), to_bytes(second)


def _copies(ingestor: Ingestor) -> dict[str, bytes]:
    """The bytes each project holds under the pair's SOP Instance UID, by project label."""
    with ingestor.engine.connect() as conn:
        rows = conn.execute(
            select(Project.label, Instance.blob_key)
            .join(Acquisition, Acquisition.id == Instance.acquisition_id)
            .join(Session, Session.id == Acquisition.session_id)
            .join(Project, Project.id == Session.project_id)
        ).all()
    copies = {}
    for label, key in rows:
        with ingestor.store.open(key) as handle:
            copies[label] = handle.read()
    return copies


def test_the_same_bytes_are_stored_in_each_project(tmp_path: Path, pair: tuple[bytes, bytes]) -> None:
    ingestor = _ingestor(tmp_path, DuplicatePolicy.REJECT)
    first = ingestor.ingest_bytes([pair[0]], P1)
    second = ingestor.ingest_bytes([pair[0]], P2)
    assert (first.outcome, second.outcome) == (Outcome.STORED, Outcome.STORED)
    assert first.acquisition_id != second.acquisition_id
    assert _copies(ingestor) == {"p1": pair[0], "p2": pair[0]}
    assert len(list((tmp_path / "blobs" / "objects").rglob("*.dcm"))) == 1  # one blob, two rows
    assert ingestor.ingest_bytes([pair[0]], P2).outcome is Outcome.DUPLICATE  # within p2: a re-send
    ingestor.close()


def test_the_duplicate_policy_holds_within_a_project(tmp_path: Path, pair: tuple[bytes, bytes]) -> None:
    ingestor = _ingestor(tmp_path, DuplicatePolicy.REJECT)
    ingestor.ingest_bytes([pair[0]], P1)
    assert ingestor.ingest_bytes([pair[1]], P2).outcome is Outcome.STORED  # another project: no conflict
    with pytest.raises(DuplicateConflict):
        ingestor.ingest_bytes([pair[1]], P1)
    assert _copies(ingestor) == {"p1": pair[0], "p2": pair[1]}
    ingestor.close()


def test_overwriting_one_projects_copy_keeps_the_others(tmp_path: Path, pair: tuple[bytes, bytes]) -> None:
    ingestor = _ingestor(tmp_path, DuplicatePolicy.OVERWRITE)
    ingestor.ingest_bytes([pair[0]], P1)
    ingestor.ingest_bytes([pair[0]], P2)
    assert ingestor.ingest_bytes([pair[1]], P1).outcome is Outcome.OVERWRITTEN
    ingestor.store.flush()  # replaced blobs nobody holds any more go now
    assert _copies(ingestor) == {"p1": pair[1], "p2": pair[0]}
    assert ingestor.ingest_bytes([pair[1]], P2).outcome is Outcome.OVERWRITTEN
    ingestor.store.flush()
    assert _copies(ingestor) == {"p1": pair[1], "p2": pair[1]}
    assert (
        len(list((tmp_path / "blobs" / "objects").rglob("*.dcm"))) == 1
    )  # the old blob went with its last row
    ingestor.close()
