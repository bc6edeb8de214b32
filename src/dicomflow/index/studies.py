"""Repository of studies: the versions of a session's study, their stages, history and findings.

Each function runs inside the caller's connection (``reading`` / ``writing``) and returns frozen
dataclasses. Times are UTC.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from sqlalchemy import Connection, Row, Select, and_, delete, func, insert, not_, select, update

from dicomflow.errors import NotFound, UnknownProject
from dicomflow.flow import Stage, check_transition
from dicomflow.index._db import as_utc
from dicomflow.index._models import (
    Acquisition,
    Event,
    FindingRow,
    Instance,
    Job,
    Project,
    Session,
    StageChange,
    Study,
    Subject,
    Upload,
    utcnow,
)
from dicomflow.index.arrivals import PIPELINE_SOURCE
from dicomflow.index.jobs import JobInfo, job_infos_of_study


@dataclass(frozen=True)
class StudyVersion:
    """One version of a session's study, as stored."""

    id: int
    session_id: int
    version: int
    stage: Stage
    reason: str
    report_types: tuple[str, ...]
    upload_id: str | None
    scope: str  # "session", or "subject" in node mode (a job reads every session of the subject)
    last_instance_id: int
    last_instance_at: datetime
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True)
class StageEntry:
    """One step of a study's stage history."""

    at: datetime
    stage: Stage
    actor: str
    reason: str


@dataclass(frozen=True)
class FindingInfo:
    """A stored finding."""

    report_type: str
    code: str
    severity: str
    message: str
    series_instance_uid: str | None


@dataclass(frozen=True)
class StudyInfo:
    """A study version with its stage, history, findings and jobs."""

    id: int
    study_instance_uid: str
    version: int
    project: str
    group: str
    subject: str
    session: str
    stage: Stage
    reason: str
    report_types: list[str]
    upload_id: str | None
    created_at: datetime
    updated_at: datetime
    history: list[StageEntry] = field(default_factory=list)
    findings: list[FindingInfo] = field(default_factory=list)
    jobs: list[JobInfo] = field(default_factory=list)


class Finding(Protocol):
    """What :func:`add_findings` stores of a check's finding."""

    @property
    def code(self) -> str: ...
    @property
    def severity(self) -> object: ...
    @property
    def message(self) -> str: ...
    @property
    def series_instance_uid(self) -> str | None: ...


class Scoped(Protocol):
    """What :func:`study_blob_keys` needs of a study version: whose instances its jobs read."""

    @property
    def session_id(self) -> int: ...
    @property
    def scope(self) -> str: ...


def _version(row: Row[Any]) -> StudyVersion:
    return StudyVersion(
        id=row.id,
        session_id=row.session_id,
        version=row.version,
        stage=Stage(row.stage),
        reason=row.reason,
        report_types=tuple(json.loads(row.report_types or "[]")),
        upload_id=row.upload_id,
        scope=row.scope,
        last_instance_id=row.last_instance_id,
        last_instance_at=as_utc(row.last_instance_at),
        created_at=as_utc(row.created_at),
        updated_at=as_utc(row.updated_at),
    )


# -- sessions -----------------------------------------------------------------------------------------------


def session_blob_keys(conn: Connection, session_id: int, *, include_derived: bool = True) -> list[str]:
    """Blob keys of every instance of a session."""
    query = (
        select(Instance.blob_key)
        .join(Acquisition, Acquisition.id == Instance.acquisition_id)
        .where(Acquisition.session_id == session_id)
        .order_by(Instance.id)
    )
    if not include_derived:
        query = query.where(not_(Instance.source.startswith(PIPELINE_SOURCE)))
    return list(conn.scalars(query))


def study_blob_keys(conn: Connection, study: Scoped) -> list[str]:
    """Blob keys a study version's jobs read (pipeline outputs left out), by its scope."""
    if study.scope != "subject":
        return session_blob_keys(conn, study.session_id, include_derived=False)
    subject_id = conn.scalar(select(Session.subject_id).where(Session.id == study.session_id))
    return list(
        conn.scalars(
            select(Instance.blob_key)
            .join(Acquisition, Acquisition.id == Instance.acquisition_id)
            .join(Session, Session.id == Acquisition.session_id)
            .where(Session.subject_id == subject_id, not_(Instance.source.startswith(PIPELINE_SOURCE)))
            .order_by(Instance.id)
        )
    )


def sessions_of_study_uid(conn: Connection, study_instance_uid: str) -> list[int]:
    """Sessions holding a StudyInstanceUID (one per project)."""
    return list(conn.scalars(select(Session.id).where(Session.study_instance_uid == study_instance_uid)))


def session_last_instance(conn: Connection, session_id: int) -> int:
    """The highest instance id of a session (0 when empty)."""
    return int(
        conn.scalar(
            select(func.max(Instance.id))
            .join(Acquisition, Acquisition.id == Instance.acquisition_id)
            .where(Acquisition.session_id == session_id)
        )
        or 0
    )


def session_of_acquisition(conn: Connection, acquisition_id: int) -> int:
    """The session an acquisition belongs to."""
    return int(conn.scalar(select(Acquisition.session_id).where(Acquisition.id == acquisition_id)) or 0)


def project_of_session(conn: Connection, session_id: int) -> tuple[int, str]:
    """Project id and label of a session."""
    row = conn.execute(
        select(Project.id, Project.label)
        .join(Session, Session.project_id == Project.id)
        .where(Session.id == session_id)
    ).one()
    return int(row.id), str(row.label)


def project_ref(conn: Connection, project_id: int) -> tuple[str, str]:
    """The (group id, label) of a project."""
    row = conn.execute(select(Project.group_id, Project.label).where(Project.id == project_id)).one()
    return str(row.group_id), str(row.label)


def project_id_by_label(conn: Connection, label: str) -> int:
    """The id of the one project called ``label``.

    Raises
    ------
    UnknownProject
        When no project, or more than one (in several groups), has that label.
    """
    ids = list(conn.scalars(select(Project.id).where(Project.label == label).limit(2)))
    if len(ids) != 1:
        raise UnknownProject(
            f"no project named {label!r}" if not ids else f"project name {label!r} is ambiguous"
        )
    return int(ids[0])


# -- versions and stages ------------------------------------------------------------------------------------


def latest_study(conn: Connection, session_id: int) -> StudyVersion | None:
    """The newest version of a session's study, or None."""
    row = conn.execute(
        select(Study).where(Study.session_id == session_id).order_by(Study.version.desc()).limit(1)
    ).first()
    return None if row is None else _version(row)


def open_study(
    conn: Connection,
    session_id: int,
    *,
    stage: Stage,
    report_types: Sequence[str],
    last_instance_id: int,
    last_instance_at: datetime,
    actor: str,
    reason: str,
    upload_id: str | None = None,
    scope: str = "session",
) -> int:
    """Open the next version of a session's study in ``stage``; returns its id.

    ``scope`` says what a job reads: the session's instances, or (node mode, grouping by patient) those of
    every session of its subject in the project.
    """
    previous = latest_study(conn, session_id)
    version = 1 if previous is None else previous.version + 1
    now = utcnow()
    study_id = int(
        conn.execute(
            insert(Study)
            .values(
                session_id=session_id,
                version=version,
                stage=stage.value,
                reason=reason,
                report_types=json.dumps(sorted(set(report_types))),
                upload_id=upload_id,
                scope=scope,
                last_instance_id=last_instance_id,
                last_instance_at=last_instance_at,
                created_at=now,
                updated_at=now,
            )
            .returning(Study.id)
        ).scalar_one()
    )
    _history(conn, study_id, stage, actor, reason)
    return study_id


def touch_study(conn: Connection, study_id: int, last_instance_id: int, last_instance_at: datetime) -> None:
    """Record that more instances arrived for a study still importing."""
    conn.execute(
        update(Study)
        .where(Study.id == study_id)
        .values(last_instance_id=last_instance_id, last_instance_at=last_instance_at, updated_at=utcnow())
    )


def request_report_types(conn: Connection, study_id: int, report_types: Sequence[str]) -> None:
    """Add report types to a study's request."""
    current = json.loads(conn.scalar(select(Study.report_types).where(Study.id == study_id)) or "[]")
    merged = sorted(set(current) | set(report_types))
    conn.execute(update(Study).where(Study.id == study_id).values(report_types=json.dumps(merged)))


def attach_upload(conn: Connection, study_id: int, upload_id: str) -> None:
    """Record that an upload brought (part of) a study version."""
    conn.execute(update(Study).where(Study.id == study_id).values(upload_id=upload_id))


def set_stage(conn: Connection, study_id: int, stage: Stage, actor: str, reason: str) -> None:
    """Move a study to ``stage`` (checked against the flow), with history and an event-log entry."""
    current = conn.scalar(select(Study.stage).where(Study.id == study_id))
    if current is None:
        raise NotFound(f"no study with id {study_id}")
    check_transition(current, stage)
    conn.execute(
        update(Study)
        .where(Study.id == study_id)
        .values(stage=stage.value, reason=reason, updated_at=utcnow())
    )
    _history(conn, study_id, stage, actor, reason)


def _history(conn: Connection, study_id: int, stage: Stage, actor: str, reason: str) -> None:
    now = utcnow()
    conn.execute(
        insert(StageChange).values(
            study_id=study_id, at=now, stage=stage.value, actor=actor[:128], reason=reason
        )
    )
    uid = conn.scalar(
        select(Session.study_instance_uid)
        .join(Study, Study.session_id == Session.id)
        .where(Study.id == study_id)
    )
    outcome = "failed" if stage is Stage.FAILED else "ok"
    conn.execute(
        insert(Event).values(
            at=now,
            kind="stage",
            actor=actor[:128],
            object_uid=str(uid)[:80],
            outcome=outcome,
            reason=f"{stage.value}: {reason}",
        )
    )


def studies_ready(conn: Connection, settled_before: datetime) -> list[StudyVersion]:
    """Studies importing over DICOM whose last instance arrived before ``settled_before``."""
    rows = conn.execute(
        select(Study).where(
            Study.stage == Stage.IMPORTING.value,
            Study.upload_id.is_(None),
            Study.last_instance_at < settled_before,
        )
    ).all()
    return [_version(row) for row in rows]


def uploaded_studies_unchecked(conn: Connection, upload_states: Sequence[str]) -> list[int]:
    """Studies still importing whose upload is in one of ``upload_states`` (a stop came before the checks)."""
    return list(
        conn.scalars(
            select(Study.id)
            .join(Upload, Upload.id == Study.upload_id)
            .where(Study.stage == Stage.IMPORTING.value, Upload.state.in_(upload_states))
        )
    )


def study_row(conn: Connection, study_id: int) -> StudyVersion:
    """A study version by id."""
    row = conn.execute(select(Study).where(Study.id == study_id)).first()
    if row is None:
        raise NotFound(f"no study with id {study_id}")
    return _version(row)


def add_findings(conn: Connection, study_id: int, report_type: str, findings: Sequence[Finding]) -> None:
    """Store findings (objects with code, severity, message, series_instance_uid)."""
    for f in findings:
        conn.execute(
            insert(FindingRow).values(
                study_id=study_id,
                report_type=report_type,
                code=f.code,
                severity=str(f.severity),
                message=f.message,
                series_instance_uid=f.series_instance_uid,
            )
        )


def clear_findings(conn: Connection, study_id: int) -> None:
    """Forget a study version's findings (before its checks run again)."""
    conn.execute(delete(FindingRow).where(FindingRow.study_id == study_id))


# -- listing ------------------------------------------------------------------------------------------------


def _study_query() -> Select[Any]:
    return (
        select(
            *Study.__table__.c,
            Session.study_instance_uid,
            Session.label.label("session_label"),
            Subject.label.label("subject_label"),
            Project.label.label("project_label"),
            Project.group_id,
        )
        .join(Session, Session.id == Study.session_id)
        .join(Subject, Subject.id == Session.subject_id)
        .join(Project, Project.id == Session.project_id)
    )


def list_studies(
    conn: Connection,
    *,
    project: str | None = None,
    stage: Stage | str | None = None,
    study_instance_uid: str | None = None,
    upload_id: str | None = None,
    latest_only: bool = True,
    detail: bool = True,
) -> list[StudyInfo]:
    """Study versions with their stage (and with ``detail``: history, findings and jobs), newest first."""
    query = _study_query().order_by(Study.id.desc())
    if project:
        query = query.where(Project.label == project)
    if stage:
        query = query.where(Study.stage == str(stage))
    if study_instance_uid:
        query = query.where(Session.study_instance_uid == study_instance_uid)
    if upload_id:
        query = query.where(Study.upload_id == upload_id)
    if latest_only:
        newest = (
            select(Study.session_id, func.max(Study.version).label("v")).group_by(Study.session_id).subquery()
        )
        query = query.join(newest, and_(newest.c.session_id == Study.session_id, newest.c.v == Study.version))
    return [_study_info(conn, row, detail) for row in conn.execute(query).all()]


def _study_info(conn: Connection, row: Row[Any], detail: bool) -> StudyInfo:
    history, findings, jobs = (
        (_history_of(conn, row.id), _findings_of(conn, row.id), job_infos_of_study(conn, row.id))
        if detail
        else ([], [], [])
    )
    return StudyInfo(
        id=row.id,
        study_instance_uid=row.study_instance_uid,
        version=row.version,
        project=row.project_label,
        group=row.group_id,
        subject=row.subject_label,
        session=row.session_label,
        stage=Stage(row.stage),
        reason=row.reason,
        report_types=json.loads(row.report_types),
        upload_id=row.upload_id,
        created_at=as_utc(row.created_at),
        updated_at=as_utc(row.updated_at),
        history=history,
        findings=findings,
        jobs=jobs,
    )


def _history_of(conn: Connection, study_id: int) -> list[StageEntry]:
    query = select(StageChange).where(StageChange.study_id == study_id).order_by(StageChange.id)
    return [StageEntry(as_utc(h.at), Stage(h.stage), h.actor, h.reason) for h in conn.execute(query)]


def _findings_of(conn: Connection, study_id: int) -> list[FindingInfo]:
    query = select(FindingRow).where(FindingRow.study_id == study_id).order_by(FindingRow.id)
    return [
        FindingInfo(f.report_type, f.code, f.severity, f.message, f.series_instance_uid)
        for f in conn.execute(query)
    ]


def study_of_job(conn: Connection, job_id: int) -> StudyInfo:
    """The study version a job belongs to (without details)."""
    study_id = conn.scalar(select(Job.study_id).where(Job.id == job_id))
    if study_id is None:
        raise NotFound(f"no job with id {job_id}")
    return study_by_id(conn, study_id, detail=False)


def study_by_id(conn: Connection, study_id: int, *, detail: bool = True) -> StudyInfo:
    """A study version by id (with ``detail``: history, findings and jobs).

    Raises
    ------
    NotFound
        When no study version has that id.
    """
    row = conn.execute(_study_query().where(Study.id == study_id)).first()
    if row is None:
        raise NotFound(f"no study with id {study_id}")
    return _study_info(conn, row, detail)


def find_study(
    conn: Connection,
    study_instance_uid: str,
    version: int | None = None,
    *,
    sees: Callable[[str, str], bool] | None = None,
) -> StudyInfo:
    """The newest (or a given) version of a study by StudyInstanceUID.

    ``sees`` (group id, project label) limits the search to some projects: the same study may have a
    session, and versions, in several.

    Raises
    ------
    NotFound
        When no study version matches; the message echoes the UID only to a caller who sees every
        project (``sees`` is None), so that another project's UID looks like an unknown one.
    """
    found = list_studies(conn, study_instance_uid=study_instance_uid, latest_only=version is None)
    if sees is not None:
        found = [s for s in found if sees(s.group, s.project)]
    if version is not None:
        found = [s for s in found if s.version == version]
    if not found:
        suffix = f" version {version}" if version is not None else ""
        which = "such study" if sees is not None else f"study {study_instance_uid!r}"
        raise NotFound(f"no {which}{suffix} in processing")
    return found[0]
