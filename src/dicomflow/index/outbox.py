"""Repository of the outbox: files to deliver to DICOM nodes, retried until sent.

Each function runs inside the caller's connection (``reading`` / ``writing``) and returns frozen dataclasses.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import Connection, Row, insert, select, update

from dicomflow.index._db import as_utc
from dicomflow.index._models import OutboxItem, utcnow


class ExportState(StrEnum):
    """Where an outbox item is: waiting (retried until the node takes it) or delivered."""

    PENDING = "pending"
    SENT = "sent"


@dataclass(frozen=True)
class OutboxEntry:
    """One file waiting for (or delivered to) a node."""

    id: int
    job_id: int | None
    node: str
    path: str
    state: ExportState
    attempts: int
    next_attempt_at: datetime
    last_error: str
    created_at: datetime
    sent_at: datetime | None


def _entry(row: Row[Any]) -> OutboxEntry:
    return OutboxEntry(
        id=row.id,
        job_id=row.job_id,
        node=row.node,
        path=row.path,
        state=ExportState(row.state),
        attempts=row.attempts,
        next_attempt_at=as_utc(row.next_attempt_at),
        last_error=row.last_error,
        created_at=as_utc(row.created_at),
        sent_at=None if row.sent_at is None else as_utc(row.sent_at),
    )


def enqueue_export(conn: Connection, job_id: int | None, node: str, path: str) -> None:
    """Put one file in the outbox for ``node``."""
    conn.execute(
        insert(OutboxItem).values(
            job_id=job_id,
            node=node,
            path=path,
            state=ExportState.PENDING.value,
            next_attempt_at=utcnow(),
            created_at=utcnow(),
        )
    )


def due_exports(conn: Connection, now: datetime, limit: int = 100) -> list[OutboxEntry]:
    """Pending exports whose next attempt is due."""
    rows = conn.execute(
        select(OutboxItem)
        .where(OutboxItem.state == ExportState.PENDING.value, OutboxItem.next_attempt_at <= now)
        .order_by(OutboxItem.id)
        .limit(limit)
    ).all()
    return [_entry(row) for row in rows]


def export_sent(conn: Connection, item_ids: Sequence[int]) -> None:
    """Mark exports delivered."""
    if item_ids:
        conn.execute(
            update(OutboxItem)
            .where(OutboxItem.id.in_(item_ids))
            .values(state=ExportState.SENT.value, sent_at=utcnow(), attempts=OutboxItem.attempts + 1)
        )


def export_failed(conn: Connection, item_id: int, error: str, retry_at: datetime) -> None:
    """Count a failed delivery and schedule the next."""
    conn.execute(
        update(OutboxItem)
        .where(OutboxItem.id == item_id)
        .values(attempts=OutboxItem.attempts + 1, last_error=error, next_attempt_at=retry_at)
    )


def list_outbox(conn: Connection) -> list[OutboxEntry]:
    """Every outbox item, newest first."""
    return [_entry(row) for row in conn.execute(select(OutboxItem).order_by(OutboxItem.id.desc())).all()]
