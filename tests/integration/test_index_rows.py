"""The ingest's per-instance statements store on SQLite exactly what SQLAlchemy stores."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import insert, select

from dicomflow.index import Event, create_index_engine, insert_event, migrate


def test_event_row_is_stored_as_sqlalchemy_stores_it(tmp_path: Path) -> None:
    path = tmp_path / "index.sqlite3"
    engine = create_index_engine(f"sqlite:///{path}")
    migrate(engine)
    row = {
        "at": datetime(2026, 1, 2, 3, 4, 5, 60, tzinfo=UTC),
        "kind": "received",
        "actor": "SCU@127.0.0.1",
        "object_uid": "1.2.3",
        "outcome": "ok",
        "reason": "stored via dimse",
    }
    with engine.begin() as conn:
        conn.execute(insert(Event), row)
    with engine.connect() as conn:
        insert_event(conn, row)  # begins the transaction itself
        conn.commit()
    with engine.connect() as conn:
        read_back = conn.execute(select(Event.at, Event.kind).order_by(Event.id)).all()
    engine.dispose()

    with sqlite3.connect(path) as raw:
        query = "SELECT at, kind, actor, object_uid, outcome, reason FROM events ORDER BY id"
        stored = raw.execute(query).fetchall()
    assert len(stored) == 2
    assert stored[0] == stored[1]
    assert read_back[0] == read_back[1]
