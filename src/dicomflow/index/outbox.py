"""Repository of the outbox: files to deliver to DICOM nodes, retried until sent.

Each function runs inside the caller's connection (``reading`` / ``writing``) and returns frozen dataclasses.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import ColumnElement, Connection, Row, and_, func, insert, or_, select, update

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


def _claimable(now: datetime) -> ColumnElement[bool]:
    return and_(
        OutboxItem.state == ExportState.PENDING.value,
        OutboxItem.next_attempt_at <= now,
        or_(OutboxItem.claimed_until.is_(None), OutboxItem.claimed_until < now),
    )


def has_claimable_exports(conn: Connection, now: datetime) -> bool:
    """Whether any export is due and unclaimed (a read, before claiming in a write transaction)."""
    return conn.execute(select(OutboxItem.id).where(_claimable(now)).limit(1)).first() is not None


def claim_exports(
    conn: Connection, claimer: str, now: datetime, until: datetime, limit: int = 100
) -> list[OutboxEntry]:
    """Claim the due exports nobody is sending (or whose sender's claim ended) for ``claimer``, until
    ``until``; returns them. One conditional ``UPDATE``: of two senders claiming at once, each export goes
    to one (PostgreSQL checks the condition again on a row another transaction changed meanwhile).

    Parameters
    ----------
    claimer
        Unique to this round of this sender (e.g. node, process and a random part).
    now
        The current time.
    until
        When the claim ends if the sender neither marks the exports sent nor failed (it crashed).
    limit
        Most exports claimed at once.
    """
    due = select(OutboxItem.id).where(_claimable(now)).order_by(OutboxItem.id).limit(limit)
    conn.execute(
        update(OutboxItem)
        .where(OutboxItem.id.in_(due.scalar_subquery()), _claimable(now))
        .values(claimed_by=claimer, claimed_until=until)
        .execution_options(synchronize_session=False)
    )
    rows = conn.execute(
        select(OutboxItem)
        .where(OutboxItem.claimed_by == claimer, OutboxItem.state == ExportState.PENDING.value)
        .order_by(OutboxItem.id)
    ).all()
    return [_entry(row) for row in rows]


def export_sent(conn: Connection, item_ids: Sequence[int]) -> None:
    """Mark exports delivered (and no longer claimed)."""
    if item_ids:
        conn.execute(
            update(OutboxItem)
            .where(OutboxItem.id.in_(item_ids))
            .values(
                state=ExportState.SENT.value,
                sent_at=utcnow(),
                attempts=OutboxItem.attempts + 1,
                claimed_by=None,
                claimed_until=None,
            )
        )


def export_failed(conn: Connection, item_id: int, error: str, retry_at: datetime) -> None:
    """Count a failed delivery, schedule the next and free the claim."""
    conn.execute(
        update(OutboxItem)
        .where(OutboxItem.id == item_id)
        .values(
            attempts=OutboxItem.attempts + 1,
            last_error=error,
            next_attempt_at=retry_at,
            claimed_by=None,
            claimed_until=None,
        )
    )


def export_backlog(conn: Connection) -> dict[str, int]:
    """Exports not yet delivered, by node."""
    rows = conn.execute(
        select(OutboxItem.node, func.count())
        .where(OutboxItem.state == ExportState.PENDING.value)
        .group_by(OutboxItem.node)
    ).all()
    return {row[0]: int(row[1]) for row in rows}


def list_outbox(conn: Connection) -> list[OutboxEntry]:
    """Every outbox item, newest first."""
    return [_entry(row) for row in conn.execute(select(OutboxItem).order_by(OutboxItem.id.desc())).all()]
