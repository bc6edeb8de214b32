"""Upload sessions as indexed: one row per upload, its state, and what its import found.

Every function takes the caller's connection first (see :func:`~dicomflow.index.reading` and
:func:`~dicomflow.index.writing`) and returns frozen dataclasses, never rows. The files of an open upload
live in its folder (see :mod:`dicomflow.usecases.uploads`); the row is written when it starts, when its
state changes and when its import ends, never per file.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Row, insert, select, update

from dicomflow.index._db import as_utc
from dicomflow.index._models import Project, Upload, utcnow
from dicomflow.schemas import UploadState

__all__ = [
    "UploadDestination",
    "UploadRecord",
    "create",
    "destination",
    "fail",
    "find",
    "finish",
    "ids_in_state",
    "list_uploads",
    "move_state",
    "state_of",
]


@dataclass(frozen=True, slots=True)
class UploadRecord:
    """The row of an upload, with its project's label; ``errors`` are ``{file, code, message}`` mappings."""

    id: str
    project: str
    report_type: str | None
    force_reprocessing: bool
    state: UploadState
    created_by: str
    created_at: datetime
    updated_at: datetime
    expires_at: datetime
    files_received: int
    instances_imported: int
    errors: tuple[dict[str, str], ...]
    summary_errors: tuple[str, ...]
    study_ids: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class UploadDestination:
    """Where an upload goes and who started it (it never changes)."""

    project_id: int
    group: str
    project: str
    created_by: str


def create(
    conn: Connection,
    upload_id: str,
    project_id: int,
    *,
    report_type: str | None,
    force_reprocessing: bool,
    created_by: str,
    created_at: datetime,
    expires_at: datetime,
) -> None:
    """Add an open upload (state ``uploading``)."""
    conn.execute(
        insert(Upload).values(
            id=upload_id,
            project_id=project_id,
            report_type=report_type,
            force_reprocessing=force_reprocessing,
            state=UploadState.UPLOADING.value,
            created_by=created_by,
            created_at=created_at,
            updated_at=created_at,
            expires_at=expires_at,
        )
    )


def find(conn: Connection, upload_id: str) -> UploadRecord | None:
    """One upload, or ``None`` for an unknown id."""
    found = _records(conn, Upload.id == upload_id)
    return found[0] if found else None


def list_uploads(conn: Connection, project_ids: Sequence[int] | None = None) -> list[UploadRecord]:
    """Uploads, newest first (of some projects only, when given)."""
    return _records(conn, Upload.project_id.in_(project_ids) if project_ids is not None else None)


def destination(conn: Connection, upload_id: str) -> UploadDestination | None:
    """The project an upload goes to and its creator, or ``None`` for an unknown id."""
    row = conn.execute(
        select(Project.id, Project.group_id, Project.label, Upload.created_by)
        .join(Upload, Upload.project_id == Project.id)
        .where(Upload.id == upload_id)
    ).first()
    if row is None:
        return None
    return UploadDestination(int(row.id), str(row.group_id), str(row.label), str(row.created_by))


def state_of(conn: Connection, upload_id: str) -> UploadState | None:
    """The state of an upload, or ``None`` for an unknown id."""
    state = conn.scalar(select(Upload.state).where(Upload.id == upload_id))
    return None if state is None else UploadState(state)


def ids_in_state(conn: Connection, state: UploadState) -> list[str]:
    """The ids of the uploads in ``state``."""
    return list(conn.scalars(select(Upload.id).where(Upload.state == state.value)))


def move_state(conn: Connection, upload_id: str, current: UploadState, new: UploadState) -> bool:
    """Move the upload from ``current`` to ``new``; False if it was not in ``current`` (or is unknown)."""
    changed = conn.execute(
        update(Upload)
        .where(Upload.id == upload_id, Upload.state == current.value)
        .values(state=new.value, updated_at=utcnow())
    ).rowcount
    return bool(changed)


def fail(conn: Connection, upload_id: str, summary_errors: Sequence[str]) -> None:
    """Mark the upload failed, whatever its state, with why."""
    conn.execute(
        update(Upload)
        .where(Upload.id == upload_id)
        .values(
            state=UploadState.FAILED.value,
            summary_errors=json.dumps(list(summary_errors)),
            updated_at=utcnow(),
        )
    )


def finish(
    conn: Connection,
    upload_id: str,
    *,
    state: UploadState,
    files_received: int,
    instances_imported: int,
    errors: Sequence[dict[str, str]],
    summary_errors: Sequence[str],
    study_ids: Sequence[int],
) -> None:
    """Record what the upload's import found, and its final state."""
    conn.execute(
        update(Upload)
        .where(Upload.id == upload_id)
        .values(
            state=state.value,
            files_received=files_received,
            instances_imported=instances_imported,
            errors=json.dumps(list(errors)),
            summary_errors=json.dumps(list(summary_errors)),
            study_ids=json.dumps(list(study_ids)),
            updated_at=utcnow(),
        )
    )


def _records(conn: Connection, where: Any) -> list[UploadRecord]:
    query = select(Upload, Project.label).join(Project, Project.id == Upload.project_id)
    if where is not None:
        query = query.where(where)
    return [_record(row) for row in conn.execute(query.order_by(Upload.created_at.desc())).all()]


def _record(row: Row[Upload, str]) -> UploadRecord:
    # Core flattens the Upload's columns into the row, followed by the project's label
    return UploadRecord(
        id=row.id,
        project=row.label,
        report_type=row.report_type,
        force_reprocessing=bool(row.force_reprocessing),
        state=UploadState(row.state),
        created_by=row.created_by,
        created_at=as_utc(row.created_at),
        updated_at=as_utc(row.updated_at),
        expires_at=as_utc(row.expires_at),
        files_received=row.files_received,
        instances_imported=row.instances_imported,
        errors=tuple(json.loads(row.errors)),
        summary_errors=tuple(json.loads(row.summary_errors)),
        study_ids=tuple(json.loads(row.study_ids)),
    )
