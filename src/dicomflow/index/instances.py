"""Series, instances and where their bytes are (blob references), as indexed.

Every function takes the caller's connection first (see :func:`~dicomflow.index.reading`) and returns
frozen dataclasses, never rows. Where one UID is kept in several projects, ``sees`` picks those the caller
may see, and one project's copy is returned (that of the oldest session among them).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeAlias

from sqlalchemy import Connection, Row, Select, select

from dicomflow.errors import NotFound
from dicomflow.index._db import as_utc
from dicomflow.index._models import Acquisition, Instance, Project, Session, Subject

__all__ = [
    "BlobRef",
    "InstanceInfo",
    "Sees",
    "SeriesInfo",
    "instance",
    "instance_blob",
    "instances_of_series",
    "is_indexed",
    "projects_holding",
    "series",
    "series_blobs",
    "study_blobs",
]

_Query: TypeAlias = "Select[*tuple[Any, ...]]"
_AnyRow: TypeAlias = "Row[*tuple[Any, ...]]"


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


Sees = Callable[[str, str], bool]
"""Whether the caller may see a project, by group id and label (``None``: every project)."""


def series(conn: Connection, series_instance_uid: str, sees: Sees | None = None) -> SeriesInfo:
    """A series with its placement and its instances.

    Parameters
    ----------
    conn
        A connection of the caller's transaction.
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


def instances_of_series(conn: Connection, series_instance_uid: str) -> list[InstanceInfo]:
    """The instances of a series, by instance number (those without one last), then SOP Instance UID."""
    return list(_instances_of_series(conn, series_instance_uid))


def instance(conn: Connection, sop_instance_uid: str) -> InstanceInfo:
    """One instance; if several were kept under this SOP Instance UID, the last received.

    Raises
    ------
    NotFound
        No instance has this SOP Instance UID.
    """
    query = _instance_query().where(Instance.sop_instance_uid == sop_instance_uid)
    row = conn.execute(query.order_by(Instance.id.desc()).limit(1)).first()
    if row is None:
        raise _instance_not_found()
    return _instance_info(row)


def instance_blob(conn: Connection, sop_instance_uid: str, sees: Sees | None = None) -> BlobRef:
    """Where the bytes of an instance are: the last received under this UID, in a project ``sees`` accepts.

    Raises
    ------
    NotFound
        No instance (that ``sees`` accepts) has this SOP Instance UID; the message does not echo it.
    """
    query = _located(_blob_query()).where(Instance.sop_instance_uid == sop_instance_uid)
    rows = conn.execute(query.order_by(Instance.id.desc())).all()
    visible = [row for row in rows if sees is None or sees(row.group_id, row.project)]
    if not visible:
        raise _instance_not_found()
    return _blob_ref(visible[0])


def series_blobs(conn: Connection, series_instance_uid: str, sees: Sees | None = None) -> list[BlobRef]:
    """Where the bytes of every instance of a series are (one project's copy, as :func:`series`).

    Raises
    ------
    NotFound
        The series has no instances (that ``sees`` accepts).
    """
    blobs = _blobs(conn, Instance.series_instance_uid == series_instance_uid, sees)
    if not blobs:
        raise _series_not_found()
    return blobs


def study_blobs(conn: Connection, study_instance_uid: str, sees: Sees | None = None) -> list[BlobRef]:
    """Where the bytes of every instance of a study (one project's session) are, series by series.

    Raises
    ------
    NotFound
        The study has no instances (that ``sees`` accepts); the message does not echo the UID.
    """
    blobs = _blobs(conn, Instance.study_instance_uid == study_instance_uid, sees)
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


def _blobs(conn: Connection, where: Any, sees: Sees | None) -> list[BlobRef]:
    rows = _in_one_project(conn.execute(_located(_blob_query()).where(where)).all(), sees)
    ordered = sorted(rows, key=lambda row: (row.series_instance_uid, *_instance_order(row)))
    return [_blob_ref(row) for row in ordered]


# -- blob references (recovery) -----------------------------------------------------------------------------


def is_indexed(conn: Connection, blob_key: str) -> bool:
    """Whether an instance row refers to the blob under ``blob_key``."""
    return conn.scalar(select(Instance.id).where(Instance.blob_key == blob_key).limit(1)) is not None


def projects_holding(conn: Connection, blob_key: str) -> list[tuple[str, str]]:
    """The ``(group, label)`` of each project an instance row of ``blob_key`` is placed in (one per row).

    Identical bytes sent into two projects share one blob key, each with its own row.
    """
    rows = conn.execute(
        select(Project.group_id, Project.label)
        .join(Session, Session.project_id == Project.id)
        .join(Acquisition, Acquisition.session_id == Session.id)
        .join(Instance, Instance.acquisition_id == Acquisition.id)
        .where(Instance.blob_key == blob_key)
    ).all()
    return [(str(group), str(label)) for group, label in rows]
