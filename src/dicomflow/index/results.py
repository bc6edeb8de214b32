"""Repository of results: the files the jobs of a study version made.

Each function runs inside the caller's connection (``reading`` / ``writing``) and returns frozen dataclasses.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Row, Select, insert, select

from dicomflow.errors import NotFound
from dicomflow.index._models import Job, ResultRow, utcnow


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


def _query() -> Select[Any]:
    return select(*ResultRow.__table__.c, Job.report_type).join(Job, Job.id == ResultRow.job_id)


def _info(r: Row[Any]) -> ResultInfo:
    return ResultInfo(r.id, r.job_id, r.report_type, r.name, r.kind, r.media_type, r.size, r.sha256, r.path)


def results_of_study(conn: Connection, study_id: int) -> list[ResultInfo]:
    """Result files of a study version."""
    rows = conn.execute(_query().where(ResultRow.study_id == study_id).order_by(ResultRow.id)).all()
    return [_info(r) for r in rows]


def result_row(conn: Connection, result_id: int) -> ResultInfo:
    """One result file by id."""
    row = conn.execute(_query().where(ResultRow.id == result_id)).first()
    if row is None:
        raise NotFound(f"no result with id {result_id}")
    return _info(row)
