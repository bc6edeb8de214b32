"""Repository of arrivals: instances received since a cursor, grouped by session.

Like every repository of the index, each function runs inside the caller's connection (``reading`` /
``writing``), so one use case can make several changes in one transaction; they return frozen dataclasses.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection, insert, select, update

from dicomflow.index._db import as_utc
from dicomflow.index._models import Acquisition, Cursor, Instance, utcnow

PIPELINE_SOURCE = "pipeline:"  # instances a job filed back; they never open a new study version
UPLOAD_SOURCE = "upload:"  # instances of an HTTP upload, handed to the flow when the upload is complete
IMPORT_FLOW_SOURCE = "import-flow:"  # of `dicomflow import --report-type`, handed over by the command itself


@dataclass(frozen=True)
class Arrival:
    """New instances of one session since the cursor."""

    session_id: int
    last_instance_id: int
    last_received_at: datetime
    blob_key: str  # of one new instance, to read tags for project rules


def cursor(conn: Connection, name: str) -> int:
    """The stored position of a cursor (0 when new)."""
    return int(conn.scalar(select(Cursor.position).where(Cursor.name == name)) or 0)


def move_cursor(conn: Connection, name: str, position: int) -> None:
    """Store a cursor position."""
    if conn.execute(update(Cursor).where(Cursor.name == name).values(position=position)).rowcount == 0:
        conn.execute(insert(Cursor).values(name=name, position=position))


def arrivals_since(conn: Connection, after_id: int, limit: int = 5000) -> tuple[list[Arrival], int]:
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
        received = as_utc(row.received_at) if row.received_at is not None else utcnow()
        by_session[row.session_id] = Arrival(row.session_id, row.id, received, row.blob_key)
    return list(by_session.values()), (rows[-1].id if rows else after_id)
