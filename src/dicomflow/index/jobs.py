"""Repository of jobs: the durable queue of report types to run on study versions.

Each function runs inside the caller's connection (``reading`` / ``writing``) and returns frozen
dataclasses. Times are UTC.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Row, Select, delete, func, insert, or_, select, update

from dicomflow.errors import NotFound
from dicomflow.flow import JobState, Stage
from dicomflow.index._db import as_utc
from dicomflow.index._models import Job, ResultRow, Session, StageChange, Study, utcnow

_ACTIVE = (JobState.QUEUED.value, JobState.RETRYING.value)


@dataclass(frozen=True)
class JobRecord:
    """A job as stored: what a worker needs to run it and the flow to judge it."""

    id: int
    study_id: int
    report_type: str
    report_version: str
    requires_qc: bool
    state: JobState
    attempts: int
    max_attempts: int
    timeout: float
    next_attempt_at: datetime | None
    started_at: datetime | None
    finished_at: datetime | None
    heartbeat_at: datetime | None
    worker: str
    error: str
    created_at: datetime


@dataclass(frozen=True)
class JobInfo:
    """A job as listed by ``dicomflow jobs`` and the API."""

    id: int
    study_id: int
    study_instance_uid: str
    report_type: str
    report_version: str
    state: JobState
    attempts: int
    max_attempts: int
    requires_qc: bool
    error: str
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    next_attempt_at: datetime | None


def _maybe_utc(value: datetime | None) -> datetime | None:
    return None if value is None else as_utc(value)


def _record(row: Row[Any]) -> JobRecord:
    return JobRecord(
        id=row.id,
        study_id=row.study_id,
        report_type=row.report_type,
        report_version=row.report_version,
        requires_qc=bool(row.requires_qc),
        state=JobState(row.state),
        attempts=row.attempts,
        max_attempts=row.max_attempts,
        timeout=float(row.timeout),
        next_attempt_at=_maybe_utc(row.next_attempt_at),
        started_at=_maybe_utc(row.started_at),
        finished_at=_maybe_utc(row.finished_at),
        heartbeat_at=_maybe_utc(row.heartbeat_at),
        worker=row.worker,
        error=row.error,
        created_at=as_utc(row.created_at),
    )


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


def claim_job(conn: Connection, worker: str, now: datetime, job_id: int | None = None) -> JobRecord | None:
    """Take the oldest due queued or retrying job (or job ``job_id``, if it is due) for ``worker``; None when
    nothing is due (or that job is running, ended or not due yet: someone else claimed it)."""
    query = select(Job.id).where(Job.state.in_(_ACTIVE), Job.next_attempt_at <= now)
    if job_id is not None:
        query = query.where(Job.id == job_id)
    due = conn.execute(query.order_by(Job.next_attempt_at, Job.id).limit(1)).first()
    if due is None:
        return None
    claimed = conn.execute(
        update(Job)
        .where(Job.id == due.id, Job.state.in_(_ACTIVE), Job.next_attempt_at <= now)
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
    return _record(conn.execute(select(Job).where(Job.id == due.id)).one())


def due_jobs(conn: Connection, now: datetime, limit: int = 1000) -> list[tuple[int, int]]:
    """The queued or retrying jobs due at ``now``, oldest first: (id, attempts so far)."""
    rows = conn.execute(
        select(Job.id, Job.attempts)
        .where(Job.state.in_(_ACTIVE), Job.next_attempt_at <= now)
        .order_by(Job.next_attempt_at, Job.id)
        .limit(limit)
    ).all()
    return [(row.id, row.attempts) for row in rows]


def release_job(conn: Connection, job_id: int, worker: str, attempt: int, error: str) -> bool:
    """Put a job ``worker`` runs (its attempt ``attempt``) back in the queue, due now; False when the job is
    no longer that worker's attempt."""
    return bool(
        conn.execute(
            update(Job)
            .where(
                Job.id == job_id,
                Job.state == JobState.RUNNING.value,
                Job.worker == worker[:128],
                Job.attempts == attempt,
            )
            .values(state=JobState.QUEUED.value, next_attempt_at=utcnow(), heartbeat_at=None, error=error)
        ).rowcount
    )


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


def running_workers(conn: Connection) -> set[str]:
    """The workers (``host:pid``) with a job running."""
    return set(conn.scalars(select(Job.worker).where(Job.state == JobState.RUNNING.value)))


def job_row(conn: Connection, job_id: int) -> JobRecord:
    """A job by id."""
    row = conn.execute(select(Job).where(Job.id == job_id)).first()
    if row is None:
        raise NotFound(f"no job with id {job_id}")
    return _record(row)


def jobs_of_study(conn: Connection, study_id: int) -> list[JobRecord]:
    """Every job of a study version."""
    return [_record(r) for r in conn.execute(select(Job).where(Job.study_id == study_id).order_by(Job.id))]


def jobs_of_run(conn: Connection, study_id: int) -> list[JobRecord]:
    """The jobs of a study version's current run: those not ended before it last entered Processing.

    A job of an earlier run that this run did not queue again (a reprocessing that named other report
    types) ended before then and is left out, so the stage follows the new run alone.
    """
    since = _maybe_utc(
        conn.scalar(
            select(func.max(StageChange.at)).where(
                StageChange.study_id == study_id, StageChange.stage == Stage.PROCESSING.value
            )
        )
    )
    jobs = jobs_of_study(conn, study_id)
    if since is None:
        return jobs
    return [job for job in jobs if job.finished_at is None or job.finished_at >= since]


def _info_query() -> Select[Any]:
    """Jobs with their study's StudyInstanceUID, the rows :func:`_info` reads."""
    return (
        select(*Job.__table__.c, Session.study_instance_uid)
        .join(Study, Study.id == Job.study_id)
        .join(Session, Session.id == Study.session_id)
    )


def list_jobs(conn: Connection, *, state: JobState | str | None = None, limit: int = 200) -> list[JobInfo]:
    """Newest jobs first, optionally of one state."""
    query = _info_query().order_by(Job.id.desc()).limit(limit)
    if state:
        query = query.where(Job.state == str(state))  # an unknown state matches nothing
    return [_info(row) for row in conn.execute(query).all()]


def job_infos_of_study(conn: Connection, study_id: int) -> list[JobInfo]:
    """Every job of a study version, as listed, oldest first."""
    rows = conn.execute(_info_query().where(Job.study_id == study_id).order_by(Job.id)).all()
    return [_info(row) for row in rows]


def _info(row: Row[Any]) -> JobInfo:
    return JobInfo(
        id=row.id,
        study_id=row.study_id,
        study_instance_uid=row.study_instance_uid,
        report_type=row.report_type,
        report_version=row.report_version,
        state=JobState(row.state),
        attempts=row.attempts,
        max_attempts=row.max_attempts,
        requires_qc=bool(row.requires_qc),
        error=row.error,
        created_at=as_utc(row.created_at),
        started_at=_maybe_utc(row.started_at),
        finished_at=_maybe_utc(row.finished_at),
        next_attempt_at=_maybe_utc(row.next_attempt_at),
    )


def stale_running(conn: Connection, before: datetime) -> list[int]:
    """Ids of running jobs without a heartbeat since ``before`` (for reports)."""
    return list(
        conn.scalars(select(Job.id).where(Job.state == JobState.RUNNING.value, Job.heartbeat_at < before))
    )


def queue_depth(conn: Connection) -> dict[tuple[str, str], int]:
    """Jobs not ended, by ``(report type, state)`` (queued, retrying, running)."""
    waiting = (JobState.QUEUED.value, JobState.RETRYING.value, JobState.RUNNING.value)
    rows = conn.execute(
        select(Job.report_type, Job.state, func.count())
        .where(Job.state.in_(waiting))
        .group_by(Job.report_type, Job.state)
    ).all()
    return {(row[0], row[1]): int(row[2]) for row in rows}
