"""Queries of the processing flow: study versions, stages, findings, jobs, results, the outbox, rules.

Each function runs inside the caller's connection (``reading``/``writing``), so one use case can make
several changes in one transaction. Times are UTC.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, and_, delete, func, insert, not_, or_, select, update

from dicomflow.errors import NotFound, UnknownProject
from dicomflow.flow import JobState, Stage, check_transition
from dicomflow.index._models import (
    Acquisition,
    Cursor,
    Event,
    FindingRow,
    Instance,
    Job,
    OutboxItem,
    Project,
    ProjectRule,
    ResultRow,
    Session,
    StageChange,
    Study,
    Subject,
    Upload,
    utcnow,
)

PIPELINE_SOURCE = "pipeline:"  # instances a job filed back; they never open a new study version
UPLOAD_SOURCE = "upload:"  # instances of an HTTP upload, handed to the flow when the upload is complete
IMPORT_FLOW_SOURCE = "import-flow:"  # of `dicomflow import --report-type`, handed over by the command itself


# -- value objects ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class StageEntry:
    """One step of a study's stage history."""

    at: datetime
    stage: str
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
class JobInfo:
    """A job as listed by ``dicomflow jobs`` and the API."""

    id: int
    study_id: int
    study_instance_uid: str
    report_type: str
    report_version: str
    state: str
    attempts: int
    max_attempts: int
    requires_qc: bool
    error: str
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    next_attempt_at: datetime | None


@dataclass(frozen=True)
class ResultInfo:
    """A result file of a study."""

    id: int
    job_id: int
    report_type: str
    name: str
    kind: str
    media_type: str
    size: int
    sha256: str
    path: str


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
    stage: str
    reason: str
    report_types: list[str]
    upload_id: str | None
    created_at: datetime
    updated_at: datetime
    history: list[StageEntry] = field(default_factory=list)
    findings: list[FindingInfo] = field(default_factory=list)
    jobs: list[JobInfo] = field(default_factory=list)


@dataclass(frozen=True)
class RuleInfo:
    """A project rule: run ``report_type`` on new studies whose tags match ``match`` (keyword → regex)."""

    id: int
    project: str
    report_type: str
    match: dict[str, str]


def _utc(value: datetime | None) -> datetime | None:
    from dicomflow.index._queries import as_utc

    return None if value is None else as_utc(value)


# -- cursor and new instances -------------------------------------------------------------------------------


def cursor(conn: Connection, name: str) -> int:
    """The stored position of a cursor (0 when new)."""
    return int(conn.scalar(select(Cursor.position).where(Cursor.name == name)) or 0)


def move_cursor(conn: Connection, name: str, position: int) -> None:
    """Store a cursor position."""
    if conn.execute(update(Cursor).where(Cursor.name == name).values(position=position)).rowcount == 0:
        conn.execute(insert(Cursor).values(name=name, position=position))


@dataclass(frozen=True)
class Arrival:
    """New instances of one session since the cursor."""

    session_id: int
    last_instance_id: int
    last_received_at: datetime
    blob_key: str  # of one new instance, to read tags for project rules


def arrivals(conn: Connection, after_id: int, limit: int = 5000) -> tuple[list[Arrival], int]:
    """Sessions with instances received after ``after_id`` (pipeline outputs excluded), and the new cursor."""
    rows = conn.execute(
        select(Instance.id, Instance.received_at, Instance.source, Instance.blob_key, Acquisition.session_id)
        .join(Acquisition, Acquisition.id == Instance.acquisition_id)
        .where(Instance.id > after_id)
        .order_by(Instance.id)
        .limit(limit)
    ).all()
    by_session: dict[int, Arrival] = {}
    for row in rows:
        if row.source.startswith((PIPELINE_SOURCE, UPLOAD_SOURCE, IMPORT_FLOW_SOURCE)):
            continue  # a job's outputs never open a version; uploads and flow imports hand theirs over
        by_session[row.session_id] = Arrival(
            row.session_id, row.id, _utc(row.received_at) or utcnow(), row.blob_key
        )
    return list(by_session.values()), (rows[-1].id if rows else after_id)


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


def study_blob_keys(conn: Connection, study: Any) -> list[str]:
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


# -- studies and stages -------------------------------------------------------------------------------------


def latest_study(conn: Connection, session_id: int) -> Any:
    """The newest version row of a session's study, or None."""
    return conn.execute(
        select(Study).where(Study.session_id == session_id).order_by(Study.version.desc()).limit(1)
    ).first()


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


def studies_ready(conn: Connection, settled_before: datetime) -> list[Any]:
    """Studies importing over DICOM whose last instance arrived before ``settled_before``."""
    return list(
        conn.execute(
            select(Study).where(
                Study.stage == Stage.IMPORTING.value,
                Study.upload_id.is_(None),
                Study.last_instance_at < settled_before,
            )
        ).all()
    )


def uploaded_studies_unchecked(conn: Connection, upload_states: Sequence[str]) -> list[int]:
    """Studies still importing whose upload is in one of ``upload_states`` (a stop came before the checks)."""
    return list(
        conn.scalars(
            select(Study.id)
            .join(Upload, Upload.id == Study.upload_id)
            .where(Study.stage == Stage.IMPORTING.value, Upload.state.in_(upload_states))
        )
    )


def study_row(conn: Connection, study_id: int) -> Any:
    """The row of a study version."""
    row = conn.execute(select(Study).where(Study.id == study_id)).first()
    if row is None:
        raise NotFound(f"no study with id {study_id}")
    return row


def add_findings(conn: Connection, study_id: int, report_type: str, findings: Sequence[Any]) -> None:
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


# -- jobs ---------------------------------------------------------------------------------------------------


def create_job(
    conn: Connection,
    study_id: int,
    report_type: str,
    report_version: str,
    *,
    requires_qc: bool,
    max_attempts: int,
    timeout: float,
) -> int:
    """Queue a job, or queue the existing job of that identity again (reprocessing), with fresh attempts."""
    existing = conn.scalar(
        select(Job.id).where(
            Job.study_id == study_id, Job.report_type == report_type, Job.report_version == report_version
        )
    )
    values = {
        "state": JobState.QUEUED.value,
        "attempts": 0,
        "max_attempts": max_attempts,
        "timeout": timeout,
        "requires_qc": requires_qc,
        "next_attempt_at": utcnow(),
        "error": "",
        "started_at": None,
        "finished_at": None,
        "worker": "",
    }
    if existing is not None:
        conn.execute(update(Job).where(Job.id == existing).values(**values))
        conn.execute(delete(ResultRow).where(ResultRow.job_id == existing))
        return int(existing)
    return int(
        conn.execute(
            insert(Job)
            .values(
                study_id=study_id,
                report_type=report_type,
                report_version=report_version,
                created_at=utcnow(),
                **values,
            )
            .returning(Job.id)
        ).scalar_one()
    )


def claim_job(conn: Connection, worker: str, now: datetime) -> Any:
    """Take the oldest due queued or retrying job for ``worker``; None when nothing is due."""
    due = conn.execute(
        select(Job.id)
        .where(Job.state.in_([JobState.QUEUED.value, JobState.RETRYING.value]), Job.next_attempt_at <= now)
        .order_by(Job.next_attempt_at, Job.id)
        .limit(1)
    ).first()
    if due is None:
        return None
    claimed = conn.execute(
        update(Job)
        .where(Job.id == due.id, Job.state.in_([JobState.QUEUED.value, JobState.RETRYING.value]))
        .values(
            state=JobState.RUNNING.value,
            attempts=Job.attempts + 1,
            started_at=now,
            heartbeat_at=now,
            worker=worker[:128],
        )
    ).rowcount
    if not claimed:
        return None
    return conn.execute(select(Job).where(Job.id == due.id)).one()


def heartbeat(conn: Connection, job_ids: Sequence[int], now: datetime) -> None:
    """Mark running jobs alive."""
    if job_ids:
        conn.execute(
            update(Job)
            .where(Job.id.in_(job_ids), Job.state == JobState.RUNNING.value)
            .values(heartbeat_at=now)
        )


def finish_job(
    conn: Connection, job_id: int, state: JobState, error: str = "", retry_at: datetime | None = None
) -> None:
    """End an attempt: succeeded, failed for good, or retrying at ``retry_at``."""
    conn.execute(
        update(Job)
        .where(Job.id == job_id)
        .values(
            state=state.value, error=error, finished_at=utcnow(), next_attempt_at=retry_at, heartbeat_at=None
        )
    )


def requeue_lost(conn: Connection, stale_before: datetime, workers_gone: Sequence[str] = ()) -> list[int]:
    """Running jobs whose worker stopped beating (or is known dead) go back to the queue; their ids."""
    lost = or_(Job.heartbeat_at < stale_before, Job.heartbeat_at.is_(None))
    if workers_gone:
        lost = or_(lost, Job.worker.in_(workers_gone))
    ids = list(conn.scalars(select(Job.id).where(Job.state == JobState.RUNNING.value, lost)))
    if ids:
        conn.execute(
            update(Job)
            .where(Job.id.in_(ids))
            .values(
                state=JobState.QUEUED.value,
                next_attempt_at=utcnow(),
                error="resumed: the worker running it stopped",
            )
        )
    return ids


def job_row(conn: Connection, job_id: int) -> Any:
    """The row of a job."""
    row = conn.execute(select(Job).where(Job.id == job_id)).first()
    if row is None:
        raise NotFound(f"no job with id {job_id}")
    return row


def jobs_of_study(conn: Connection, study_id: int) -> list[Any]:
    """Every job of a study version."""
    return list(conn.execute(select(Job).where(Job.study_id == study_id).order_by(Job.id)).all())


def jobs_of_run(conn: Connection, study_id: int) -> list[Any]:
    """The jobs of a study version's current run: those not ended before it last entered Processing.

    A job of an earlier run that this run did not queue again (a reprocessing that named other report
    types) ended before then and is left out, so the stage follows the new run alone.
    """
    since = _utc(
        conn.scalar(
            select(func.max(StageChange.at)).where(
                StageChange.study_id == study_id, StageChange.stage == Stage.PROCESSING.value
            )
        )
    )
    jobs = jobs_of_study(conn, study_id)
    if since is None:
        return jobs
    return [job for job in jobs if job.finished_at is None or (_utc(job.finished_at) or since) >= since]


def list_jobs(conn: Connection, *, state: str | None = None, limit: int = 200) -> list[JobInfo]:
    """Newest jobs first, optionally of one state."""
    query = (
        select(*Job.__table__.c, Session.study_instance_uid)
        .join(Study, Study.id == Job.study_id)
        .join(Session, Session.id == Study.session_id)
        .order_by(Job.id.desc())
        .limit(limit)
    )
    if state:
        query = query.where(Job.state == state)
    return [_job_info(row) for row in conn.execute(query).all()]


def _job_info(row: Any) -> JobInfo:
    job = row
    return JobInfo(
        id=job.id,
        study_id=job.study_id,
        study_instance_uid=row.study_instance_uid,
        report_type=job.report_type,
        report_version=job.report_version,
        state=job.state,
        attempts=job.attempts,
        max_attempts=job.max_attempts,
        requires_qc=bool(job.requires_qc),
        error=job.error,
        created_at=_utc(job.created_at) or utcnow(),
        started_at=_utc(job.started_at),
        finished_at=_utc(job.finished_at),
        next_attempt_at=_utc(job.next_attempt_at),
    )


# -- results and the outbox ---------------------------------------------------------------------------------


def add_result(
    conn: Connection,
    *,
    job_id: int,
    study_id: int,
    name: str,
    kind: str,
    media_type: str,
    size: int,
    sha256: str,
    path: str,
) -> None:
    """Record one result file."""
    conn.execute(
        insert(ResultRow).values(
            job_id=job_id,
            study_id=study_id,
            name=name,
            kind=kind,
            media_type=media_type,
            size=size,
            sha256=sha256,
            path=path,
            created_at=utcnow(),
        )
    )


def results_of_study(conn: Connection, study_id: int) -> list[ResultInfo]:
    """Result files of a study version."""
    rows = conn.execute(
        select(*ResultRow.__table__.c, Job.report_type)
        .join(Job, Job.id == ResultRow.job_id)
        .where(ResultRow.study_id == study_id)
        .order_by(ResultRow.id)
    ).all()
    return [
        ResultInfo(
            r.id,
            r.job_id,
            r.report_type,
            r.name,
            r.kind,
            r.media_type,
            r.size,
            r.sha256,
            r.path,
        )
        for r in rows
    ]


def result_row(conn: Connection, result_id: int) -> ResultInfo:
    """One result file by id."""
    row = conn.execute(
        select(*ResultRow.__table__.c, Job.report_type)
        .join(Job, Job.id == ResultRow.job_id)
        .where(ResultRow.id == result_id)
    ).first()
    if row is None:
        raise NotFound(f"no result with id {result_id}")
    r = row
    return ResultInfo(r.id, r.job_id, row.report_type, r.name, r.kind, r.media_type, r.size, r.sha256, r.path)


def enqueue_export(conn: Connection, job_id: int | None, node: str, path: str) -> None:
    """Put one file in the outbox for ``node``."""
    conn.execute(
        insert(OutboxItem).values(
            job_id=job_id,
            node=node,
            path=path,
            state="pending",
            next_attempt_at=utcnow(),
            created_at=utcnow(),
        )
    )


def due_exports(conn: Connection, now: datetime, limit: int = 100) -> list[Any]:
    """Pending exports whose next attempt is due."""
    return list(
        conn.execute(
            select(OutboxItem)
            .where(OutboxItem.state == "pending", OutboxItem.next_attempt_at <= now)
            .order_by(OutboxItem.id)
            .limit(limit)
        ).all()
    )


def export_sent(conn: Connection, item_ids: Sequence[int]) -> None:
    """Mark exports delivered."""
    if item_ids:
        conn.execute(
            update(OutboxItem)
            .where(OutboxItem.id.in_(item_ids))
            .values(state="sent", sent_at=utcnow(), attempts=OutboxItem.attempts + 1)
        )


def export_failed(conn: Connection, item_id: int, error: str, retry_at: datetime) -> None:
    """Count a failed delivery and schedule the next."""
    conn.execute(
        update(OutboxItem)
        .where(OutboxItem.id == item_id)
        .values(attempts=OutboxItem.attempts + 1, last_error=error, next_attempt_at=retry_at)
    )


def outbox(conn: Connection) -> list[Any]:
    """Every outbox item, newest first."""
    return list(conn.execute(select(OutboxItem).order_by(OutboxItem.id.desc())).all())


# -- project rules ------------------------------------------------------------------------------------------


def project_id(conn: Connection, label: str) -> int:
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


def add_rule(conn: Connection, project_id: int, report_type: str, match: dict[str, str]) -> int:
    """Add a project rule; returns its id."""
    return int(
        conn.execute(
            insert(ProjectRule)
            .values(
                project_id=project_id, report_type=report_type, match=json.dumps(match), created_at=utcnow()
            )
            .returning(ProjectRule.id)
        ).scalar_one()
    )


def delete_rule(conn: Connection, rule_id: int) -> None:
    """Remove a project rule."""
    if conn.execute(delete(ProjectRule).where(ProjectRule.id == rule_id)).rowcount == 0:
        raise NotFound(f"no project rule with id {rule_id}")


def rules(conn: Connection, project_id: int | None = None) -> list[RuleInfo]:
    """Project rules, of one project or all."""
    query = (
        select(*ProjectRule.__table__.c, Project.label)
        .join(Project, Project.id == ProjectRule.project_id)
        .order_by(ProjectRule.id)
    )
    if project_id is not None:
        query = query.where(ProjectRule.project_id == project_id)
    return [RuleInfo(r.id, r.label, r.report_type, json.loads(r.match)) for r in conn.execute(query).all()]


# -- study listing ------------------------------------------------------------------------------------------


def _study_query() -> Any:
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
    stage: str | None = None,
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
        query = query.where(Study.stage == stage)
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


def _study_info(conn: Connection, row: Any, detail: bool) -> StudyInfo:
    study = row
    info = StudyInfo(
        id=study.id,
        study_instance_uid=row.study_instance_uid,
        version=study.version,
        project=row.project_label,
        group=row.group_id,
        subject=row.subject_label,
        session=row.session_label,
        stage=study.stage,
        reason=study.reason,
        report_types=json.loads(study.report_types),
        upload_id=study.upload_id,
        created_at=_utc(study.created_at) or utcnow(),
        updated_at=_utc(study.updated_at) or utcnow(),
    )
    if not detail:
        return info
    info.history.extend(
        StageEntry(_utc(h.at) or utcnow(), h.stage, h.actor, h.reason)
        for h in conn.execute(
            select(StageChange).where(StageChange.study_id == study.id).order_by(StageChange.id)
        )
    )
    info.findings.extend(
        FindingInfo(f.report_type, f.code, f.severity, f.message, f.series_instance_uid)
        for f in conn.execute(
            select(FindingRow).where(FindingRow.study_id == study.id).order_by(FindingRow.id)
        )
    )
    jobs = conn.execute(
        select(*Job.__table__.c, Session.study_instance_uid)
        .join(Study, Study.id == Job.study_id)
        .join(Session, Session.id == Study.session_id)
        .where(Job.study_id == study.id)
        .order_by(Job.id)
    ).all()
    info.jobs.extend(_job_info(j) for j in jobs)
    return info


def study_of_job(conn: Connection, job_id: int) -> StudyInfo:
    """The study version a job belongs to (without details)."""
    study_id = conn.scalar(select(Job.study_id).where(Job.id == job_id))
    if study_id is None:
        raise NotFound(f"no job with id {job_id}")
    row = conn.execute(_study_query().where(Study.id == study_id)).one()
    return _study_info(conn, row, detail=False)


def project_ref(conn: Connection, project_id: int) -> tuple[str, str]:
    """The (group id, label) of a project."""
    row = conn.execute(select(Project.group_id, Project.label).where(Project.id == project_id)).one()
    return str(row.group_id), str(row.label)


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


def stale_running(conn: Connection, before: datetime) -> list[int]:
    """Ids of running jobs without a heartbeat since ``before`` (for reports)."""
    return list(
        conn.scalars(select(Job.id).where(Job.state == JobState.RUNNING.value, Job.heartbeat_at < before))
    )


def backoff(attempt: int, base: float, cap: float) -> timedelta:
    """Exponential back-off after the ``attempt``-th failure."""
    return timedelta(seconds=min(cap, base * 2 ** max(0, attempt - 1)))
