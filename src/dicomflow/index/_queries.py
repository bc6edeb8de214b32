"""Queries over the index for the API and the command line: projects, the hierarchy with counts, series,
instances, datasets and events.

Every function takes the engine, runs one short transaction and returns frozen dataclasses, never ORM rows.
Counts come from one ``GROUP BY`` over instances, rolled up the tree in Python, so a listing costs a fixed
number of queries whatever its size. SQL stays portable (SQLite and PostgreSQL).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import astuple, dataclass
from datetime import UTC, datetime
from typing import Any, Protocol, TypeAlias, TypeVar

from sqlalchemy import Connection, Engine, Row, Select, Subquery, func, insert, select
from sqlalchemy.exc import IntegrityError, OperationalError

from dicomflow.errors import AlreadyExists, IndexUnavailable, NotFound
from dicomflow.index._db import READ_ONLY
from dicomflow.index._models import (
    Acquisition,
    Dataset,
    DatasetSeries,
    Event,
    Group,
    Instance,
    Project,
    Session,
    Subject,
    utcnow,
)

DEFAULT_GROUP = "default"
"""Group of projects created without naming one."""

_MAX_LABEL = 128
_MAX_GROUP_ID = 64
_N = TypeVar("_N")
_Query: TypeAlias = "Select[*tuple[Any, ...]]"
_AnyRow: TypeAlias = "Row[*tuple[Any, ...]]"


class _Counted(Protocol):
    @property
    def counts(self) -> Counts: ...


@dataclass(frozen=True, slots=True)
class ProjectInfo:
    """A project: its id, the id of its group, and its label as first spelt."""

    id: int
    group: str
    label: str
    created_at: datetime


@dataclass(frozen=True, slots=True)
class Counts:
    """How much lies below a node of the hierarchy; ``size`` is in bytes."""

    projects: int = 0
    subjects: int = 0
    sessions: int = 0
    acquisitions: int = 0
    instances: int = 0
    size: int = 0

    def __add__(self, other: Counts) -> Counts:
        return Counts(*(mine + theirs for mine, theirs in zip(astuple(self), astuple(other), strict=True)))


@dataclass(frozen=True, slots=True)
class AcquisitionNode:
    """One acquisition (a series, or one acquisition of a split series)."""

    id: int
    acquisition_uid: str
    series_instance_uid: str
    label: str
    modality: str
    series_number: int | None
    series_description: str
    timestamp: datetime | None
    counts: Counts


@dataclass(frozen=True, slots=True)
class SessionNode:
    """One study in a project, with the placement rule that put it there and the reason (the "why")."""

    id: int
    study_instance_uid: str
    label: str
    timestamp: datetime | None
    placement_rule: str
    placement_reason: str
    counts: Counts
    acquisitions: tuple[AcquisitionNode, ...]


@dataclass(frozen=True, slots=True)
class SubjectNode:
    """A patient or participant within a project."""

    id: int
    label: str
    counts: Counts
    sessions: tuple[SessionNode, ...]


@dataclass(frozen=True, slots=True)
class ProjectNode:
    """A project and its subjects."""

    id: int
    label: str
    counts: Counts
    subjects: tuple[SubjectNode, ...]


@dataclass(frozen=True, slots=True)
class GroupNode:
    """The top of the tree: a group and its projects."""

    id: str
    label: str
    counts: Counts
    projects: tuple[ProjectNode, ...]


@dataclass(frozen=True, slots=True)
class InstanceInfo:
    """One stored instance, as indexed."""

    sop_instance_uid: str
    sop_class_uid: str
    transfer_syntax_uid: str
    study_instance_uid: str
    series_instance_uid: str
    instance_number: int | None
    slice_position: float | None
    size: int
    sha256: str
    source: str
    received_at: datetime


@dataclass(frozen=True, slots=True)
class SeriesInfo:
    """A series: where it was placed, what it is, and its instances (by instance number)."""

    series_instance_uid: str
    study_instance_uid: str
    modality: str
    series_number: int | None
    series_description: str
    group: str
    project: str
    subject: str
    session: str
    acquisition_uids: tuple[str, ...]
    instance_count: int
    size: int
    instances: tuple[InstanceInfo, ...]


@dataclass(frozen=True, slots=True)
class BlobRef:
    """Where the bytes of one instance are kept (for downloads; not part of any API response)."""

    sop_instance_uid: str
    series_instance_uid: str
    blob_key: str
    size: int
    received_at: datetime


@dataclass(frozen=True, slots=True)
class EventInfo:
    """One entry of the event log."""

    id: int
    at: datetime
    kind: str
    actor: str
    object_uid: str
    outcome: str
    reason: str


@dataclass(frozen=True, slots=True)
class DatasetSeriesInfo:
    """A series that is a member of a dataset."""

    group: str
    project: str
    series_instance_uid: str
    study_instance_uid: str
    acquisition_uid: str
    modality: str
    series_description: str
    instance_count: int
    created_at: datetime


@dataclass(frozen=True, slots=True)
class DatasetInfo:
    """A named collection of series."""

    id: int
    name: str
    created_at: datetime
    series: tuple[DatasetSeriesInfo, ...]


# -- transactions -------------------------------------------------------------------------------------------


@contextmanager
def reading(engine: Engine) -> Iterator[Connection]:
    """A connection for one short read; database failures become :class:`IndexUnavailable`."""
    try:
        with engine.connect().execution_options(**{READ_ONLY: True}) as conn:
            yield conn
    except OperationalError as exc:
        raise IndexUnavailable(f"the index could not answer: {exc.orig}") from exc


@contextmanager
def writing(engine: Engine) -> Iterator[Connection]:
    """A connection in one short transaction, committed on success; failures become :class:`IndexUnavailable`.

    An ``IntegrityError`` is left to the caller, who knows which name clashed.
    """
    try:
        with engine.begin() as conn:
            yield conn
    except OperationalError as exc:
        raise IndexUnavailable(f"the index could not commit: {exc.orig}") from exc


def as_utc(value: datetime) -> datetime:
    """Attach UTC to a naive timestamp read back from SQLite (the index stores UTC only)."""
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def _maybe_utc(value: datetime | None) -> datetime | None:
    return None if value is None else as_utc(value)


# -- projects -----------------------------------------------------------------------------------------------


def create_project(engine: Engine, label: str, group: str = DEFAULT_GROUP) -> ProjectInfo:
    """Create a project, and its group if there is none of that id.

    Parameters
    ----------
    engine
        Engine of the index.
    label
        Project label; unique within the group, ignoring case.
    group
        Group id, matched case-insensitively to an existing group; a new group takes it as id and label.

    Returns
    -------
    ProjectInfo

    Raises
    ------
    AlreadyExists
        The group holds a project of this label (in any case).
    ValueError
        The label or group is empty or too long.
    """
    label = _checked_name("project label", label, _MAX_LABEL)
    group = _checked_name("group", group, _MAX_GROUP_ID)
    clash = AlreadyExists(
        f"project {label!r} exists already in group {group!r}", {"group": group, "label": label}
    )
    created_at = utcnow()
    try:
        with writing(engine) as conn:
            group_id = _ensure_group(conn, group)
            if _project_id(conn, group_id, label) is not None:
                raise clash
            values = {
                "group_id": group_id,
                "label": label,
                "label_key": label.lower(),
                "created_at": created_at,
            }
            project_id = conn.execute(insert(Project).values(values).returning(Project.id)).scalar_one()
    except IntegrityError as exc:  # a concurrent writer created it between our check and our insert
        raise clash from exc
    return ProjectInfo(id=project_id, group=group_id, label=label, created_at=created_at)


def list_projects(engine: Engine, group: str | None = None) -> list[ProjectInfo]:
    """All projects, by group id then label; only those of ``group`` (any case) when given."""
    query = select(Project.id, Project.group_id, Project.label, Project.created_at)
    if group is not None:
        query = query.where(func.lower(Project.group_id) == group.strip().lower())
    with reading(engine) as conn:
        rows = conn.execute(query.order_by(Project.group_id, Project.label_key)).all()
    return [ProjectInfo(row.id, row.group_id, row.label, as_utc(row.created_at)) for row in rows]


def _checked_name(what: str, value: str, max_length: int) -> str:
    value = value.strip()
    if not value or len(value) > max_length:
        raise ValueError(f"{what} {value!r} must have 1 to {max_length} characters")
    return value


def _ensure_group(conn: Connection, group: str) -> str:
    existing = conn.execute(select(Group.id).where(func.lower(Group.id) == group.lower())).scalars().first()
    if existing is not None:
        return existing
    conn.execute(insert(Group).values(id=group, label=group, created_at=utcnow()))
    return group


def _project_id(conn: Connection, group_id: str, label: str) -> int | None:
    query = select(Project.id).where(Project.group_id == group_id, Project.label_key == label.lower())
    return conn.execute(query).scalars().first()


# -- hierarchy ----------------------------------------------------------------------------------------------


def hierarchy(engine: Engine) -> list[GroupNode]:
    """The whole tree group / project / subject / session / acquisition, with counts at every node.

    Parameters
    ----------
    engine
        Engine of the index.

    Returns
    -------
    list of GroupNode
        Groups by id, projects by label, subjects by label, sessions by label, acquisitions by label.
        Empty groups and projects are included. Each node's ``counts`` cover everything below it.
    """
    with reading(engine) as conn:
        groups = conn.execute(select(Group.id, Group.label).order_by(Group.id)).all()
        projects = conn.execute(_project_rows()).all()
        subjects = conn.execute(_subject_rows()).all()
        sessions = conn.execute(_session_rows()).all()
        acquisitions = conn.execute(_acquisition_rows()).all()
    acquisition_nodes = _children(acquisitions, "session_id", _acquisition_node)
    session_nodes = _children(sessions, "subject_id", lambda row: _session_node(row, acquisition_nodes))
    subject_nodes = _children(subjects, "project_id", lambda row: _subject_node(row, session_nodes))
    project_nodes = _children(projects, "group_id", lambda row: _project_node(row, subject_nodes))
    return [_group_node(row, project_nodes) for row in groups]


def _instance_totals() -> Subquery:
    """Instances and bytes per acquisition: the one GROUP BY the counts come from."""
    return (
        select(
            Instance.acquisition_id,
            func.count(Instance.id).label("instances"),
            func.coalesce(func.sum(Instance.size), 0).label("size"),
        )
        .group_by(Instance.acquisition_id)
        .subquery("totals")
    )


def _project_rows() -> _Query:
    return select(Project.id, Project.group_id, Project.label).order_by(Project.label_key, Project.id)


def _subject_rows() -> _Query:
    return select(Subject.id, Subject.project_id, Subject.label).order_by(Subject.label, Subject.id)


def _session_rows() -> _Query:
    columns = (Session.study_instance_uid, Session.label, Session.timestamp)
    placement = (Session.placement_rule, Session.placement_reason)
    return select(Session.id, Session.subject_id, *columns, *placement).order_by(Session.label, Session.id)


def _acquisition_rows() -> _Query:
    totals = _instance_totals()
    return (
        select(
            Acquisition.id,
            Acquisition.session_id,
            Acquisition.acquisition_uid,
            Acquisition.series_instance_uid,
            Acquisition.label,
            Acquisition.modality,
            Acquisition.series_number,
            Acquisition.series_description,
            Acquisition.timestamp,
            func.coalesce(totals.c.instances, 0).label("instances"),
            func.coalesce(totals.c.size, 0).label("size"),
        )
        .outerjoin(totals, totals.c.acquisition_id == Acquisition.id)
        .order_by(Acquisition.label, Acquisition.id)
    )


def _children(rows: Sequence[_AnyRow], parent: str, build: Callable[[_AnyRow], _N]) -> dict[Any, list[_N]]:
    nodes: dict[Any, list[_N]] = defaultdict(list)
    for row in rows:
        nodes[getattr(row, parent)].append(build(row))
    return nodes


def _rollup(children: Sequence[_Counted], level: str) -> Counts:
    """The counts of a node: its children's counts added up, plus the number of children at ``level``."""
    own = Counts(**{level: len(children)})
    return sum((child.counts for child in children), own)


def _acquisition_node(row: _AnyRow) -> AcquisitionNode:
    return AcquisitionNode(
        id=row.id,
        acquisition_uid=row.acquisition_uid,
        series_instance_uid=row.series_instance_uid,
        label=row.label,
        modality=row.modality,
        series_number=row.series_number,
        series_description=row.series_description,
        timestamp=_maybe_utc(row.timestamp),
        counts=Counts(instances=int(row.instances), size=int(row.size)),
    )


def _session_node(row: _AnyRow, acquisitions: dict[Any, list[AcquisitionNode]]) -> SessionNode:
    children = tuple(acquisitions.get(row.id, ()))
    return SessionNode(
        id=row.id,
        study_instance_uid=row.study_instance_uid,
        label=row.label,
        timestamp=_maybe_utc(row.timestamp),
        placement_rule=row.placement_rule,
        placement_reason=row.placement_reason,
        counts=_rollup(children, "acquisitions"),
        acquisitions=children,
    )


def _subject_node(row: _AnyRow, sessions: dict[Any, list[SessionNode]]) -> SubjectNode:
    children = tuple(sessions.get(row.id, ()))
    return SubjectNode(id=row.id, label=row.label, counts=_rollup(children, "sessions"), sessions=children)


def _project_node(row: _AnyRow, subjects: dict[Any, list[SubjectNode]]) -> ProjectNode:
    children = tuple(subjects.get(row.id, ()))
    return ProjectNode(id=row.id, label=row.label, counts=_rollup(children, "subjects"), subjects=children)


def _group_node(row: _AnyRow, projects: dict[Any, list[ProjectNode]]) -> GroupNode:
    children = tuple(projects.get(row.id, ()))
    return GroupNode(id=row.id, label=row.label, counts=_rollup(children, "projects"), projects=children)


# -- series and instances -----------------------------------------------------------------------------------


Sees = Callable[[str, str], bool]
"""Whether the caller may see a project, by group id and label (``None``: every project)."""


def series(engine: Engine, series_instance_uid: str, sees: Sees | None = None) -> SeriesInfo:
    """A series with its placement and its instances.

    Parameters
    ----------
    engine
        Engine of the index.
    series_instance_uid
        The Series Instance UID.
    sees
        Only projects this accepts are looked at. The same series may be kept in several projects (each
        its own copy); the one of the oldest session among them is returned.

    Returns
    -------
    SeriesInfo
        Metadata of the series' first acquisition; ``acquisition_uids`` lists all of them (a series holding
        several acquisitions is split); instances ordered by instance number.

    Raises
    ------
    NotFound
        No acquisition (that ``sees`` accepts) has this Series Instance UID; the message does not echo it.
    """
    with reading(engine) as conn:
        rows = _in_one_project(conn.execute(_series_rows(series_instance_uid)).all(), sees)
        instances = _instances_of_acquisitions(conn, [row.id for row in rows])
    if not rows:
        raise _series_not_found()
    first = rows[0]
    return SeriesInfo(
        series_instance_uid=series_instance_uid,
        study_instance_uid=first.study_instance_uid,
        modality=first.modality,
        series_number=first.series_number,
        series_description=first.series_description,
        group=first.group_id,
        project=first.project,
        subject=first.subject,
        session=first.session,
        acquisition_uids=tuple(row.acquisition_uid for row in rows),
        instance_count=len(instances),
        size=sum(instance.size for instance in instances),
        instances=instances,
    )


def instances_of_series(engine: Engine, series_instance_uid: str) -> list[InstanceInfo]:
    """The instances of a series, by instance number (those without one last), then SOP Instance UID."""
    with reading(engine) as conn:
        return list(_instances_of_series(conn, series_instance_uid))


def instance(engine: Engine, sop_instance_uid: str) -> InstanceInfo:
    """One instance; if several were kept under this SOP Instance UID, the last received.

    Raises
    ------
    NotFound
        No instance has this SOP Instance UID.
    """
    query = _instance_query().where(Instance.sop_instance_uid == sop_instance_uid)
    with reading(engine) as conn:
        row = conn.execute(query.order_by(Instance.id.desc()).limit(1)).first()
    if row is None:
        raise _instance_not_found()
    return _instance_info(row)


def instance_blob(engine: Engine, sop_instance_uid: str, sees: Sees | None = None) -> BlobRef:
    """Where the bytes of an instance are: the last received under this UID, in a project ``sees`` accepts.

    Raises
    ------
    NotFound
        No instance (that ``sees`` accepts) has this SOP Instance UID; the message does not echo it.
    """
    query = _located(_blob_query()).where(Instance.sop_instance_uid == sop_instance_uid)
    with reading(engine) as conn:
        rows = conn.execute(query.order_by(Instance.id.desc())).all()
    visible = [row for row in rows if sees is None or sees(row.group_id, row.project)]
    if not visible:
        raise _instance_not_found()
    return _blob_ref(visible[0])


def series_blobs(engine: Engine, series_instance_uid: str, sees: Sees | None = None) -> list[BlobRef]:
    """Where the bytes of every instance of a series are (one project's copy, as :func:`series`).

    Raises
    ------
    NotFound
        The series has no instances (that ``sees`` accepts).
    """
    blobs = _blobs(engine, Instance.series_instance_uid == series_instance_uid, sees)
    if not blobs:
        raise _series_not_found()
    return blobs


def study_blobs(engine: Engine, study_instance_uid: str, sees: Sees | None = None) -> list[BlobRef]:
    """Where the bytes of every instance of a study (one project's session) are, series by series.

    Raises
    ------
    NotFound
        The study has no instances (that ``sees`` accepts); the message does not echo the UID.
    """
    blobs = _blobs(engine, Instance.study_instance_uid == study_instance_uid, sees)
    if not blobs:
        raise NotFound("no study with this Study Instance UID is in the index")
    return blobs


def _in_one_project(rows: Sequence[_AnyRow], sees: Sees | None) -> list[_AnyRow]:
    """The rows ``sees`` accepts, of the oldest session among them (one project's copy of a UID)."""
    visible = [row for row in rows if sees is None or sees(row.group_id, row.project)]
    if not visible:
        return []
    oldest = min(row.session_id for row in visible)
    return [row for row in visible if row.session_id == oldest]


def _located(query: _Query) -> _Query:
    """``query`` over instances, with the session and project each instance is placed in."""
    return (
        query.add_columns(Acquisition.session_id, Project.group_id, Project.label.label("project"))
        .join(Acquisition, Acquisition.id == Instance.acquisition_id)
        .join(Session, Session.id == Acquisition.session_id)
        .join(Project, Project.id == Session.project_id)
    )


def _series_not_found() -> NotFound:
    return NotFound("no series with this Series Instance UID is in the index")


def _instance_not_found() -> NotFound:
    return NotFound("no instance with this SOP Instance UID is in the index")


def _series_rows(series_instance_uid: str) -> _Query:
    return (
        select(
            Acquisition.id,
            Acquisition.session_id,
            Acquisition.acquisition_uid,
            Acquisition.modality,
            Acquisition.series_number,
            Acquisition.series_description,
            Session.study_instance_uid,
            Session.label.label("session"),
            Subject.label.label("subject"),
            Project.label.label("project"),
            Project.group_id,
        )
        .join(Session, Session.id == Acquisition.session_id)
        .join(Subject, Subject.id == Session.subject_id)
        .join(Project, Project.id == Session.project_id)
        .where(Acquisition.series_instance_uid == series_instance_uid)
        .order_by(Acquisition.id)
    )


def _instance_query() -> _Query:
    return select(
        Instance.sop_instance_uid,
        Instance.sop_class_uid,
        Instance.transfer_syntax_uid,
        Instance.study_instance_uid,
        Instance.series_instance_uid,
        Instance.instance_number,
        Instance.slice_position,
        Instance.size,
        Instance.sha256,
        Instance.source,
        Instance.received_at,
    )


def _instance_info(row: _AnyRow) -> InstanceInfo:
    values = row._asdict()
    values["received_at"] = as_utc(row.received_at)
    return InstanceInfo(**values)


def _instances_of_acquisitions(conn: Connection, acquisition_ids: list[int]) -> tuple[InstanceInfo, ...]:
    query = _instance_query().where(Instance.acquisition_id.in_(acquisition_ids))
    instances = [_instance_info(row) for row in conn.execute(query)]
    return tuple(sorted(instances, key=_instance_order))


def _instances_of_series(conn: Connection, series_instance_uid: str) -> tuple[InstanceInfo, ...]:
    query = _instance_query().where(Instance.series_instance_uid == series_instance_uid)
    instances = [_instance_info(row) for row in conn.execute(query)]
    return tuple(sorted(instances, key=_instance_order))


def _instance_order(item: InstanceInfo | _AnyRow) -> tuple[bool, int, str]:
    """Instance number first, those without one last; portable where NULLS LAST is not."""
    number: int | None = item.instance_number
    return number is None, number or 0, item.sop_instance_uid


def _blob_query() -> _Query:
    return select(
        Instance.sop_instance_uid,
        Instance.series_instance_uid,
        Instance.blob_key,
        Instance.size,
        Instance.received_at,
        Instance.instance_number,
    )


def _blob_ref(row: _AnyRow) -> BlobRef:
    return BlobRef(
        sop_instance_uid=row.sop_instance_uid,
        series_instance_uid=row.series_instance_uid,
        blob_key=row.blob_key,
        size=row.size,
        received_at=as_utc(row.received_at),
    )


def _blobs(engine: Engine, where: Any, sees: Sees | None) -> list[BlobRef]:
    with reading(engine) as conn:
        rows = _in_one_project(conn.execute(_located(_blob_query()).where(where)).all(), sees)
    ordered = sorted(rows, key=lambda row: (row.series_instance_uid, *_instance_order(row)))
    return [_blob_ref(row) for row in ordered]


# -- events and datasets ------------------------------------------------------------------------------------


def events(
    engine: Engine, limit: int = 100, kind: str | None = None, object_uid: str | None = None
) -> list[EventInfo]:
    """The newest events first.

    Parameters
    ----------
    engine
        Engine of the index.
    limit
        At most this many (at least 1).
    kind, object_uid
        Only events of this kind, or about this object, when given.

    Returns
    -------
    list of EventInfo
    """
    if limit < 1:
        raise ValueError(f"limit {limit!r} must be at least 1")
    query = select(Event.id, Event.at, Event.kind, Event.actor, Event.object_uid, Event.outcome, Event.reason)
    if kind is not None:
        query = query.where(Event.kind == kind)
    if object_uid is not None:
        query = query.where(Event.object_uid == object_uid)
    with reading(engine) as conn:
        rows = conn.execute(query.order_by(Event.at.desc(), Event.id.desc()).limit(limit)).all()
    return [EventInfo(**{**row._asdict(), "at": as_utc(row.at)}) for row in rows]


def list_datasets(engine: Engine) -> list[DatasetInfo]:
    """All datasets by name, each with its series (by Study, then Series Instance UID)."""
    with reading(engine) as conn:
        query = select(Dataset.id, Dataset.name, Dataset.created_at).order_by(Dataset.name)
        datasets = conn.execute(query).all()
        members = conn.execute(_dataset_series_rows()).all()
    series_by_dataset: dict[int, list[DatasetSeriesInfo]] = defaultdict(list)
    for row in members:
        values = row._asdict()
        dataset_id = values.pop("dataset_id")
        values["created_at"] = as_utc(row.created_at)
        values["instance_count"] = int(row.instance_count)
        series_by_dataset[dataset_id].append(DatasetSeriesInfo(**values))
    return [
        DatasetInfo(row.id, row.name, as_utc(row.created_at), tuple(series_by_dataset.get(row.id, ())))
        for row in datasets
    ]


def _dataset_series_rows() -> _Query:
    totals = _instance_totals()
    return (
        select(
            DatasetSeries.dataset_id,
            Project.group_id.label("group"),
            Project.label.label("project"),
            Acquisition.series_instance_uid,
            Session.study_instance_uid,
            Acquisition.acquisition_uid,
            Acquisition.modality,
            Acquisition.series_description,
            func.coalesce(totals.c.instances, 0).label("instance_count"),
            DatasetSeries.created_at,
        )
        .join(Acquisition, Acquisition.id == DatasetSeries.acquisition_id)
        .join(Session, Session.id == Acquisition.session_id)
        .join(Project, Project.id == Session.project_id)
        .outerjoin(totals, totals.c.acquisition_id == Acquisition.id)
        .order_by(Session.study_instance_uid, Acquisition.series_instance_uid, Acquisition.acquisition_uid)
    )
