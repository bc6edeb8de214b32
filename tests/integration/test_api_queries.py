"""The index queries behind the API and ``dicomflow ls``: results, order, errors, a fixed query count."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
from pydicom.uid import generate_uid
from sqlalchemy import Engine, event

from apihelpers import IndexWriter, Seeded, api_settings, seed_index
from dicomflow.errors import AlreadyExists, NotFound
from dicomflow.index import Project, catalog, create_index_engine, migrate, reading
from dicomflow.index import instances as instance_rows
from dicomflow.index.catalog import Counts, GroupNode
from dicomflow.storage import FileSystemBlobStore
from factories import create_project

pytestmark = pytest.mark.usefixtures("index_url")  # each test on SQLite and on PostgreSQL (tests/pg.py)

T = TypeVar("T")


def _read(query: Callable[..., T]) -> Callable[..., T]:
    """``query`` of a repository, in one read transaction on the engine it is given."""

    def run(engine: Engine, *args: Any, **kwargs: Any) -> T:
        with reading(engine) as conn:
            return query(conn, *args, **kwargs)

    return run


events = _read(catalog.events)
hierarchy = _read(catalog.hierarchy)
list_datasets = _read(catalog.list_datasets)
list_projects = _read(catalog.list_projects)
instance = _read(instance_rows.instance)
instance_blob = _read(instance_rows.instance_blob)
instances_of_series = _read(instance_rows.instances_of_series)
series = _read(instance_rows.series)
series_blobs = _read(instance_rows.series_blobs)
study_blobs = _read(instance_rows.study_blobs)


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    settings = api_settings(tmp_path)
    engine = create_index_engine(settings.index_url)
    migrate(engine)
    yield engine
    engine.dispose()


@pytest.fixture
def store(tmp_path: Path) -> FileSystemBlobStore:
    return FileSystemBlobStore(tmp_path / "blobs", fsync=False)


@pytest.fixture
def seeded(engine: Engine, store: FileSystemBlobStore) -> Seeded:
    return seed_index(engine, store)


def test_create_project_creates_its_group(engine: Engine) -> None:
    project = create_project(engine, "  Cardio ", group="heart")
    assert (project.group, project.label) == ("heart", "Cardio")
    assert project.created_at.tzinfo is not None
    assert [g.id for g in hierarchy(engine)] == ["heart"]
    assert list_projects(engine) == [
        dataclasses.replace(project, created_at=list_projects(engine)[0].created_at)
    ]


def test_create_project_reuses_a_group_of_any_case(engine: Engine, seeded: Seeded) -> None:
    project = create_project(engine, "Spine", group="NEURO")
    assert project.group == "neuro"
    assert [p.label for p in list_projects(engine, group="neuro")] == ["Brain", "Spine"]


@pytest.mark.parametrize("label", ["Brain", "brain", "BRAIN", " brain "])
def test_project_labels_clash_ignoring_case(engine: Engine, seeded: Seeded, label: str) -> None:
    with pytest.raises(AlreadyExists, match="exists already"):
        create_project(engine, label, group="neuro")


@pytest.mark.parametrize(
    ("label", "group"), [("", "g"), ("   ", "g"), ("x" * 129, "g"), ("ok", ""), ("ok", "g" * 65)]
)
def test_create_project_rejects_bad_names(engine: Engine, label: str, group: str) -> None:
    with pytest.raises(ValueError, match="must have 1 to"):
        create_project(engine, label, group=group)


def test_hierarchy_counts_roll_up(engine: Engine, seeded: Seeded) -> None:
    neuro, unknown = hierarchy(engine)
    size = sum(len(item.data) for item in seeded.all_instances())
    assert neuro.counts == Counts(projects=1, subjects=2, sessions=2, acquisitions=3, instances=6, size=size)
    assert unknown.counts == Counts(projects=1)
    brain = neuro.projects[0]
    assert brain.counts == Counts(subjects=2, sessions=2, acquisitions=3, instances=6, size=size)
    p001, p002 = brain.subjects
    assert (p001.label, p002.label) == ("P001", "P002")
    assert p002.counts == Counts(
        sessions=1, acquisitions=1, instances=1, size=len(seeded.instances["B1"][0].data)
    )
    session = p001.sessions[0]
    assert session.counts.acquisitions == 2 and session.counts.instances == 5
    assert session.placement_rule == "routing-string"
    assert session.timestamp is not None and session.timestamp.tzinfo is not None


def test_hierarchy_costs_a_fixed_number_of_queries(engine: Engine, store: FileSystemBlobStore) -> None:
    seed_index(engine, store)
    few = _statements(engine, hierarchy)
    writer = IndexWriter(engine, store)
    project_id = writer.insert(Project, group_id="neuro", label="More", label_key="more")
    for n in range(5):
        study = generate_uid()
        writer.series(writer.session(project_id, f"S{n}", study), study, [1, 2])
    assert _statements(engine, hierarchy) == few <= 6


def _statements(engine: Engine, query: Any) -> int:
    seen: list[str] = []

    def count(*args: Any) -> None:
        seen.append(args[2])

    event.listen(engine, "before_cursor_execute", count)
    try:
        query(engine)
    finally:
        event.remove(engine, "before_cursor_execute", count)
    return sum(1 for statement in seen if statement.lstrip().upper().startswith("SELECT"))


def test_empty_index_has_no_groups(engine: Engine) -> None:
    assert hierarchy(engine) == []
    assert list_projects(engine) == []
    assert list_datasets(engine) == []
    assert events(engine) == []


def test_series_and_its_instances(engine: Engine, seeded: Seeded) -> None:
    info = series(engine, seeded.series["A1"])
    assert (info.group, info.project, info.subject, info.modality) == ("neuro", "Brain", "P001", "CT")
    assert info.acquisition_uids == (seeded.series["A1"],)
    assert info.instance_count == 3
    assert [i.instance_number for i in info.instances] == [1, 2, 3]
    assert list(info.instances) == instances_of_series(engine, seeded.series["A1"])
    assert [i.instance_number for i in instances_of_series(engine, seeded.series["A2"])] == [1, None]


def test_unknown_uids_are_not_found(engine: Engine, seeded: Seeded) -> None:
    for lookup in (series, series_blobs, study_blobs, instance, instance_blob):
        with pytest.raises(NotFound) as raised:
            lookup(engine, "1.2.3.4")
        # never echoed: the answer for a UID of a project the caller may not see must be the same
        assert "1.2.3.4" not in raised.value.message and raised.value.details == {}
    assert instances_of_series(engine, "1.2.3.4") == []


def test_instance_and_blobs(engine: Engine, seeded: Seeded) -> None:
    stored = seeded.instances["B1"][0]
    info = instance(engine, stored.sop_instance_uid)
    assert (info.series_instance_uid, info.size) == (stored.series_instance_uid, len(stored.data))
    assert info.received_at.tzinfo is not None
    blob = instance_blob(engine, stored.sop_instance_uid)
    assert blob.blob_key.endswith(f"{stored.sop_instance_uid}.dcm")


def test_blobs_come_in_archive_order(engine: Engine, seeded: Seeded) -> None:
    study = study_blobs(engine, seeded.study_a)
    expected = seeded.instances["A1"] + seeded.instances["A2"]
    assert {b.sop_instance_uid for b in study} == {i.sop_instance_uid for i in expected}
    series_uids = [b.series_instance_uid for b in study]
    assert series_uids == sorted(series_uids)  # series after series
    a1 = series_blobs(engine, seeded.series["A1"])
    by_number = sorted(seeded.instances["A1"], key=lambda i: i.instance_number or 0)
    assert [b.sop_instance_uid for b in a1] == [i.sop_instance_uid for i in by_number]


def test_events_filters_and_limit(engine: Engine, seeded: Seeded) -> None:
    assert [e.kind for e in events(engine)] == ["stored", "placed", "placed"]
    assert len(events(engine, limit=1)) == 1
    assert {e.object_uid for e in events(engine, kind="placed")} == {seeded.study_a, seeded.study_b}
    assert [e.kind for e in events(engine, object_uid=seeded.study_a)] == ["stored", "placed"]
    assert events(engine, kind="placed", object_uid=seeded.study_b)[0].reason == f"placed {seeded.study_b}"
    with pytest.raises(ValueError, match="limit"):
        events(engine, limit=0)


def test_datasets_with_series(engine: Engine, seeded: Seeded) -> None:
    (cohort,) = list_datasets(engine)
    assert cohort.name == "cohort"
    (member,) = cohort.series
    assert (member.series_instance_uid, member.study_instance_uid) == (seeded.series["A1"], seeded.study_a)
    assert member.instance_count == 3


def test_results_are_frozen_dataclasses(engine: Engine, seeded: Seeded) -> None:
    group: GroupNode = hierarchy(engine)[0]
    with pytest.raises(dataclasses.FrozenInstanceError):
        group.label = "changed"  # type: ignore[misc]  # the point: the dataclass is frozen
    assert isinstance(group.projects, tuple)
