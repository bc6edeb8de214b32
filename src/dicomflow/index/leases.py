"""Repository of leases: which node runs a background duty (the arrival tracker, the outbox, ...) until when.

A lease is one row per duty. Taking or renewing it is one conditional ``UPDATE`` (the holder renews; anyone
takes an expired lease), else one ``INSERT`` that the primary key lets through only once; releasing is one
``DELETE`` of our own row. Each statement is atomic on SQLite and PostgreSQL alike, so two nodes asking at
once never both hold it. Times are the nodes' own clocks (UTC): they must agree within a small part of the
lease's length (NTP does). Like every repository, each function runs inside the caller's connection.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Connection, delete, insert, or_, select, update
from sqlalchemy.exc import IntegrityError

from dicomflow.index._db import as_utc
from dicomflow.index._models import Lease


@dataclass(frozen=True)
class HeldLease:
    """A lease as stored: the duty, the node holding it, and when it ends unless renewed."""

    name: str
    holder: str
    expires_at: datetime


def acquire_lease(conn: Connection, name: str, holder: str, now: datetime, seconds: float) -> bool:
    """Take lease ``name`` for ``holder`` until ``now + seconds``, or renew it; whether ``holder`` holds it.

    Parameters
    ----------
    conn
        A connection in a write transaction (committed by the caller).
    name
        The duty (``tracker``, ``outbox``, ...).
    holder
        The asking node's id.
    now
        The current time (UTC).
    seconds
        The lease's length from ``now``.
    """
    until = now + timedelta(seconds=seconds)
    renewed = conn.execute(
        update(Lease)
        .where(Lease.name == name, or_(Lease.holder == holder, Lease.expires_at < now))
        .values(holder=holder, expires_at=until)
    )
    if renewed.rowcount:
        return True
    try:
        with conn.begin_nested():  # a savepoint: PostgreSQL would abort the whole transaction otherwise
            conn.execute(insert(Lease).values(name=name, holder=holder, expires_at=until))
    except IntegrityError:  # the row exists and another node holds it, or took it just now
        return False
    return True


def release_lease(conn: Connection, name: str, holder: str) -> bool:
    """Give lease ``name`` up if ``holder`` holds it (another node may take it at once); whether it did."""
    return bool(conn.execute(delete(Lease).where(Lease.name == name, Lease.holder == holder)).rowcount)


def current_leases(conn: Connection, now: datetime) -> list[HeldLease]:
    """The leases held at ``now`` (not expired), by name."""
    rows = conn.execute(select(Lease).where(Lease.expires_at >= now).order_by(Lease.name)).all()
    return [HeldLease(row.name, row.holder, as_utc(row.expires_at)) for row in rows]
