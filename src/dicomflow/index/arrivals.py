"""Repository of arrivals: instances received since a cursor, grouped by session.

Like every repository of the index, each function runs inside the caller's connection (``reading`` /
``writing``), so one use case can make several changes in one transaction; they return frozen dataclasses.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection, insert, select, text, update

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


@dataclass(frozen=True, order=True)
class Position:
    """Where a reader of ``instances`` stopped: the last row read, as (transaction id, row id).

    On SQLite ``xid`` is always 1: writers are serialised (the write lock, ``BEGIN IMMEDIATE``), so ids are
    committed in order and the id alone is the position. On PostgreSQL it is the ``xid8`` of the transaction
    that wrote the row (``instances.xid``, migration 0007).
    """

    xid: int
    id: int


_START_XID = 1  # existing rows were given xid 1 by 0007, below every real transaction id
_XID_SUFFIX = "#xid"

# PostgreSQL: ids are taken at INSERT but rows become visible at COMMIT, so a transaction holding id 10 may
# commit after id 11 was read, and a cursor over ids would skip 10 for ever. Each row records the id of its
# writing transaction; a transaction id below the xmin of the current snapshot belongs to a transaction that
# has ended (committed or rolled back), and every transaction that has not ended, or that starts later, has
# an id at or above it. So the rows below xmin are final, and reading them in (xid, id) order with a cursor
# over (xid, id) sees each committed row exactly once. A long writing transaction delays (never loses) what
# other transactions wrote after it began.
_POSTGRES_SINCE = text(
    "SELECT i.id, i.received_at, i.source, i.blob_key, a.session_id,"
    " CAST(CAST(i.xid AS text) AS bigint) AS xid"
    " FROM instances i JOIN acquisitions a ON a.id = i.acquisition_id"
    " WHERE i.xid < pg_snapshot_xmin(pg_current_snapshot())"
    " AND (i.xid, i.id) > (CAST(CAST(:xid AS text) AS xid8), :id)"
    " ORDER BY i.xid, i.id LIMIT :limit"
)


def cursor(conn: Connection, name: str) -> Position:
    """The stored position of a cursor (the start when new)."""
    rows = conn.execute(
        select(Cursor.name, Cursor.position).where(Cursor.name.in_([name, name + _XID_SUFFIX]))
    )
    stored: dict[str, int] = {key: value for key, value in rows}  # noqa: C416  # Row -> (key, value)
    return Position(int(stored.get(name + _XID_SUFFIX, _START_XID)), int(stored.get(name, 0)))


def move_cursor(conn: Connection, name: str, position: Position) -> None:
    """Store a cursor position."""
    values = [(name, position.id)]
    if position.xid != _START_XID:
        values.append((name + _XID_SUFFIX, position.xid))
    for key, value in values:
        if conn.execute(update(Cursor).where(Cursor.name == key).values(position=value)).rowcount == 0:
            conn.execute(insert(Cursor).values(name=key, position=value))


def arrivals_since(conn: Connection, after: Position, limit: int = 5000) -> tuple[list[Arrival], Position]:
    """Sessions with instances committed after ``after`` (pipeline outputs excluded), and the new cursor."""
    if conn.dialect.name == "postgresql":
        rows = conn.execute(_POSTGRES_SINCE, {"xid": after.xid, "id": after.id, "limit": limit}).all()
        end = Position(rows[-1].xid, rows[-1].id) if rows else after
    else:
        rows = conn.execute(
            select(
                Instance.id, Instance.received_at, Instance.source, Instance.blob_key, Acquisition.session_id
            )
            .join(Acquisition, Acquisition.id == Instance.acquisition_id)
            .where(Instance.id > after.id)
            .order_by(Instance.id)
            .limit(limit)
        ).all()
        end = Position(after.xid, rows[-1].id) if rows else after
    by_session: dict[int, Arrival] = {}
    for row in rows:
        if row.source.startswith((PIPELINE_SOURCE, UPLOAD_SOURCE, IMPORT_FLOW_SOURCE)):
            continue  # a job's outputs never open a version; uploads and flow imports hand theirs over
        received = as_utc(row.received_at) if row.received_at is not None else utcnow()
        seen = by_session.get(row.session_id)
        last_id = row.id if seen is None else max(seen.last_instance_id, row.id)  # ids need not ascend
        by_session[row.session_id] = Arrival(row.session_id, last_id, received, row.blob_key)
    return list(by_session.values()), end
