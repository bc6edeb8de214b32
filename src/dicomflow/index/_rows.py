"""The ingest's per-instance statements: through the SQLite driver directly on the ingest's engine.

Each SQLAlchemy ``execute`` costs ~70 µs of Python before SQLite sees the statement (execution context,
compiled-cache lookup, parameter processing, result wrapping); the receiver runs three per instance. On an
engine made with ``create_index_engine(..., direct_sqlite=True)`` (the ingest's, with
``performance.fast_paths`` on) these go straight to the ``sqlite3`` cursor of the same connection, inside
the transaction SQLAlchemy began (``BEGIN IMMEDIATE``), committed by the caller as before. Values are
stored exactly as SQLAlchemy stores them (timestamps in its SQLite text format, tested). Any other engine
or database uses SQLAlchemy Core.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, NamedTuple

from sqlalchemy import Connection, bindparam, insert, select, text

from dicomflow.index._db import DIRECT_SQLITE
from dicomflow.index._models import Acquisition, Event, Instance, Session

_INSTANCE_COLUMNS = (
    "acquisition_id",
    "sop_instance_uid",
    "sop_class_uid",
    "transfer_syntax_uid",
    "study_instance_uid",
    "series_instance_uid",
    "instance_number",
    "slice_position",
    "size",
    "sha256",
    "blob_key",
    "source",
    "received_at",
)
_EVENT_COLUMNS = ("at", "kind", "actor", "object_uid", "outcome", "reason")
_SQLITE_PREVIOUS = (
    "SELECT i.id, i.sha256, i.blob_key, i.acquisition_id FROM instances i "
    "JOIN acquisitions a ON a.id = i.acquisition_id JOIN sessions s ON s.id = a.session_id "
    "WHERE i.sop_instance_uid = ? AND s.project_id = ?"
)


def _sqlite_insert(table: str, columns: tuple[str, ...]) -> str:
    return f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})"


_SQLITE_INSERT_INSTANCE = _sqlite_insert("instances", _INSTANCE_COLUMNS)
_SQLITE_INSERT_EVENT = _sqlite_insert("events", _EVENT_COLUMNS)
_SELECT_PREVIOUS = (
    select(Instance.id, Instance.sha256, Instance.blob_key, Instance.acquisition_id)
    .join(Acquisition, Acquisition.id == Instance.acquisition_id)
    .join(Session, Session.id == Acquisition.session_id)
    .where(Instance.sop_instance_uid == bindparam("uid"), Session.project_id == bindparam("project_id"))
)
# PostgreSQL: the receiving processes write at once (on SQLite the write lock and BEGIN IMMEDIATE serialise
# them), so "look up the UID, then insert" would let two writers of one UID both insert. Each takes a lock
# on the UID for the rest of its transaction first; the second then sees the first's committed row.
_LOCK_UID = text("SELECT pg_advisory_xact_lock(hashtextextended(:uid, 0))")
_INSERT_INSTANCE = insert(Instance)
_INSERT_EVENT = insert(Event)


class StoredInstance(NamedTuple):
    """An instance row already in the index under a SOP Instance UID."""

    id: int
    sha256: str
    blob_key: str
    acquisition_id: int


def instances_with_uid(conn: Connection, uid: str, project_id: int) -> list[StoredInstance]:
    """The rows stored under ``uid`` in one project (in the caller's transaction); the same instance may
    be kept in several projects, each copy its own. On PostgreSQL the UID stays locked until the caller's
    transaction ends, so that its writers follow each other."""
    cursor = _sqlite_cursor(conn)
    if cursor is None:
        params = {"uid": uid, "project_id": project_id}
        if conn.dialect.name == "postgresql":
            conn.execute(_LOCK_UID, params)
        return [StoredInstance(*row) for row in conn.execute(_SELECT_PREVIOUS, params)]
    return [StoredInstance(*row) for row in cursor.execute(_SQLITE_PREVIOUS, (uid, project_id))]


def insert_instance(conn: Connection, row: dict[str, Any]) -> None:
    """Insert one ``instances`` row (keys: the column names)."""
    cursor = _sqlite_cursor(conn)
    if cursor is None:
        conn.execute(_INSERT_INSTANCE, row)
        return
    cursor.execute(_SQLITE_INSERT_INSTANCE, [_sqlite_value(row[column]) for column in _INSTANCE_COLUMNS])


def insert_event(conn: Connection, row: dict[str, Any]) -> None:
    """Insert one ``events`` row (keys: the column names)."""
    cursor = _sqlite_cursor(conn)
    if cursor is None:
        conn.execute(_INSERT_EVENT, row)
        return
    cursor.execute(_SQLITE_INSERT_EVENT, [_sqlite_value(row[column]) for column in _EVENT_COLUMNS])


def _sqlite_cursor(conn: Connection) -> Any:
    """A cursor of the connection's own sqlite3 connection, in a begun transaction, if its engine allows
    it (``DIRECT_SQLITE``); else ``None``."""
    if not conn.get_execution_options().get(DIRECT_SQLITE) or conn.dialect.name != "sqlite":
        return None
    if not conn.in_transaction():
        conn.begin()  # runs the engine's "begin" hook: BEGIN IMMEDIATE for writers
    return conn.connection.driver_connection.cursor()  # type: ignore[union-attr]  # open while in use


def _sqlite_value(value: Any) -> Any:
    if isinstance(value, datetime):  # SQLAlchemy's SQLite DATETIME storage format (it drops the zone)
        return value.strftime("%Y-%m-%d %H:%M:%S.%f")
    return value
