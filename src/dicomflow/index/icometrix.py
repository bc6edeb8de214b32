"""Repository of the icometrix-compatible API's reads: the hierarchy by id, and each series' summary.

A series' summary is its instance count and the header attributes of its first instance
(``acquisitions.series_header``, kept when the series is placed), so that listing a study's series is one
query and opens no file. Each function runs inside the caller's connection and returns frozen dataclasses.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, func, select, update

from dicomflow.index._models import Acquisition, Instance, Project, Session, Study, Subject

__all__ = [
    "HierarchyIds",
    "ProjectRecord",
    "SeriesRecord",
    "SessionRecord",
    "SubjectRecord",
    "first_blob_key",
    "ids_of_version",
    "modalities",
    "project",
    "projects",
    "record_series_header",
    "series_of_session",
    "session",
    "sessions",
    "subject",
    "subject_label",
    "subjects",
    "version_ids_of_session",
]


@dataclass(frozen=True, slots=True)
class ProjectRecord:
    """A project."""

    id: int
    label: str
    group_id: str
    created_at: datetime


@dataclass(frozen=True, slots=True)
class SubjectRecord:
    """A subject (the icometrix API's patient)."""

    id: int
    project_id: int
    label: str
    firstname: str | None
    lastname: str | None
    sex: str | None
    created_at: datetime


@dataclass(frozen=True, slots=True)
class SessionRecord:
    """A session (the icometrix API's study)."""

    id: int
    subject_id: int
    project_id: int
    study_instance_uid: str
    label: str
    timestamp: datetime | None
    created_at: datetime


@dataclass(frozen=True, slots=True)
class SeriesRecord:
    """An acquisition with its summary: instance count and the first instance's series attributes."""

    id: int
    modality: str
    label: str
    series_number: int | None
    series_description: str
    series_instance_uid: str
    created_at: datetime
    instance_count: int
    header: Mapping[str, list[str]] | None
    """``dicom.SERIES_KEYWORDS`` present in the first instance; ``None``: not read yet."""


@dataclass(frozen=True, slots=True)
class HierarchyIds:
    """The project, subject and session a study version belongs to."""

    project: int
    subject: int
    session: int


def projects(conn: Connection) -> list[ProjectRecord]:
    """Every project, by id."""
    return [_project(row) for row in conn.execute(select(Project).order_by(Project.id)).all()]


def project(conn: Connection, project_id: int) -> ProjectRecord | None:
    """The project of ``project_id``, if any."""
    row = conn.execute(select(Project).where(Project.id == project_id)).first()
    return None if row is None else _project(row)


def subjects(conn: Connection, project_id: int) -> list[SubjectRecord]:
    """The subjects of a project, by id."""
    query = select(Subject).where(Subject.project_id == project_id).order_by(Subject.id)
    return [_subject(row) for row in conn.execute(query).all()]


def subject(conn: Connection, project_id: int, subject_id: int) -> SubjectRecord | None:
    """The subject ``subject_id`` of a project, if any."""
    query = select(Subject).where(Subject.id == subject_id, Subject.project_id == project_id)
    row = conn.execute(query).first()
    return None if row is None else _subject(row)


def subject_label(conn: Connection, subject_id: int) -> str:
    """The label of a subject (``""`` if it has none)."""
    return conn.scalar(select(Subject.label).where(Subject.id == subject_id)) or ""


def sessions(conn: Connection, subject_id: int) -> list[SessionRecord]:
    """The sessions of a subject, by id."""
    query = select(Session).where(Session.subject_id == subject_id).order_by(Session.id)
    return [_session(row) for row in conn.execute(query).all()]


def session(conn: Connection, subject_id: int, session_id: int) -> SessionRecord | None:
    """The session ``session_id`` of a subject, if any."""
    query = select(Session).where(Session.id == session_id, Session.subject_id == subject_id)
    row = conn.execute(query).first()
    return None if row is None else _session(row)


def modalities(conn: Connection, session_id: int) -> list[str]:
    """The distinct modalities of a session's acquisitions."""
    query = select(Acquisition.modality).where(Acquisition.session_id == session_id).distinct()
    return list(conn.scalars(query))


def series_of_session(conn: Connection, session_id: int) -> list[SeriesRecord]:
    """The acquisitions of a session, by id, each with its summary (one query)."""
    count = (
        select(func.count())
        .where(Instance.acquisition_id == Acquisition.id)
        .correlate(Acquisition)
        .scalar_subquery()
    )
    query = (
        select(Acquisition, count.label("instance_count"))
        .where(Acquisition.session_id == session_id)
        .order_by(Acquisition.id)
    )
    return [_series(row) for row in conn.execute(query).all()]


def first_blob_key(conn: Connection, acquisition_id: int) -> str | None:
    """The blob of an acquisition's first instance (``None``: it has none)."""
    query = select(Instance.blob_key).where(Instance.acquisition_id == acquisition_id).order_by(Instance.id)
    return conn.scalar(query.limit(1))


def record_series_header(conn: Connection, acquisition_id: int, header: Mapping[str, list[str]]) -> None:
    """Keep the series attributes of an acquisition, unless it has some already."""
    conn.execute(
        update(Acquisition)
        .where(Acquisition.id == acquisition_id, Acquisition.series_header.is_(None))
        .values(series_header=json.dumps(header, separators=(",", ":")))
    )


def version_ids_of_session(conn: Connection, session_id: int) -> set[int]:
    """The ids of the study versions of a session."""
    return set(conn.scalars(select(Study.id).where(Study.session_id == session_id)))


def ids_of_version(conn: Connection, study_id: int) -> HierarchyIds:
    """The project, subject and session of a study version."""
    row = conn.execute(
        select(Session.id, Session.subject_id, Session.project_id)
        .join(Study, Study.session_id == Session.id)
        .where(Study.id == study_id)
    ).one()
    return HierarchyIds(project=row.project_id, subject=row.subject_id, session=row.id)


def _project(row: Any) -> ProjectRecord:
    return ProjectRecord(row.id, row.label, row.group_id, row.created_at)


def _subject(row: Any) -> SubjectRecord:
    return SubjectRecord(
        row.id, row.project_id, row.label, row.firstname, row.lastname, row.sex, row.created_at
    )


def _session(row: Any) -> SessionRecord:
    return SessionRecord(
        row.id,
        row.subject_id,
        row.project_id,
        row.study_instance_uid,
        row.label,
        row.timestamp,
        row.created_at,
    )


def _series(row: Any) -> SeriesRecord:
    header = row.series_header
    return SeriesRecord(
        id=row.id,
        modality=row.modality,
        label=row.label,
        series_number=row.series_number,
        series_description=row.series_description,
        series_instance_uid=row.series_instance_uid,
        created_at=row.created_at,
        instance_count=int(row.instance_count or 0),
        header=None if header is None else json.loads(header),
    )
