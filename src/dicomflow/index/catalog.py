"""The catalogue: groups, projects, the hierarchy with counts, datasets and the event log.

Every function takes the caller's connection first (see :func:`~dicomflow.index.reading` and
:func:`~dicomflow.index.writing`) and returns frozen dataclasses, never rows. Counts come from one
``GROUP BY`` over instances, rolled up the tree in Python, so a listing costs a fixed number of queries
whatever its size. SQL stays portable (SQLite and PostgreSQL).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import astuple, dataclass
from datetime import datetime
from typing import Any, Protocol, TypeAlias, TypeVar

from sqlalchemy import Connection, Row, Select, Subquery, func, insert, select
from sqlalchemy.exc import IntegrityError

from dicomflow.errors import AlreadyExists
from dicomflow.index._db import as_utc
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
from dicomflow.index._rows import insert_event

__all__ = [
    "DEFAULT_GROUP",
    "AcquisitionNode",
    "Counts",
    "DatasetInfo",
    "DatasetSeriesInfo",
    "EventInfo",
    "GroupNode",
    "ProjectInfo",
    "ProjectNode",
    "SessionNode",
    "SubjectNode",
    "create_project",
    "events",
    "hierarchy",
    "list_datasets",
    "list_projects",
    "record_event",
]

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


def _maybe_utc(value: datetime | None) -> datetime | None:
    return None if value is None else as_utc(value)


# -- projects -----------------------------------------------------------------------------------------------


def create_project(conn: Connection, label: str, group: str = DEFAULT_GROUP) -> ProjectInfo:
    """Create a project, and its group if there is none of that id (in the caller's write transaction).

    Parameters
    ----------
    conn
        A connection of :func:`~dicomflow.index.writing`.
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
        group_id = _ensure_group(conn, group)
        if _project_id(conn, group_id, label) is not None:
            raise clash
        values = {"group_id": group_id, "label": label, "label_key": label.lower(), "created_at": created_at}
        project_id = conn.execute(insert(Project).values(values).returning(Project.id)).scalar_one()
    except IntegrityError as exc:  # a concurrent writer created it between our check and our insert
        raise clash from exc
    return ProjectInfo(id=project_id, group=group_id, label=label, created_at=created_at)


def list_projects(conn: Connection, group: str | None = None) -> list[ProjectInfo]:
    """All projects, by group id then label; only those of ``group`` (any case) when given."""
    query = select(Project.id, Project.group_id, Project.label, Project.created_at)
    if group is not None:
        query = query.where(func.lower(Project.group_id) == group.strip().lower())
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


def hierarchy(conn: Connection) -> list[GroupNode]:
    """The whole tree group / project / subject / session / acquisition, with counts at every node.

    Parameters
    ----------
    conn
        A connection of the caller's transaction (five queries, whatever the size of the tree).

    Returns
    -------
    list of GroupNode
        Groups by id, projects by label, subjects by label, sessions by label, acquisitions by label.
        Empty groups and projects are included. Each node's ``counts`` cover everything below it.
    """
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


# -- events and datasets ------------------------------------------------------------------------------------


def events(
    conn: Connection, limit: int = 100, kind: str | None = None, object_uid: str | None = None
) -> list[EventInfo]:
    """The newest events first.

    Parameters
    ----------
    conn
        A connection of the caller's transaction.
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
    rows = conn.execute(query.order_by(Event.at.desc(), Event.id.desc()).limit(limit)).all()
    return [EventInfo(**{**row._asdict(), "at": as_utc(row.at)}) for row in rows]


def list_datasets(conn: Connection) -> list[DatasetInfo]:
    """All datasets by name, each with its series (by Study, then Series Instance UID)."""
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


def record_event(
    conn: Connection, kind: str, actor: str, object_uid: str, reason: str, outcome: str = "ok"
) -> None:
    """Append one entry to the event log (in the caller's transaction)."""
    row = {
        "at": utcnow(),
        "kind": kind,
        "actor": actor[:128],
        "object_uid": object_uid[:80],
        "outcome": outcome,
        "reason": reason,
    }
    insert_event(conn, row)
