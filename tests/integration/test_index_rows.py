"""The ingest's per-instance statements store on SQLite exactly what SQLAlchemy stores; through the driver
directly only on an engine made for it (the ingest's, with ``performance.fast_paths`` on)."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event, insert, select

from dicomflow.index import Event, create_index_engine, insert_event, migrate


@pytest.mark.parametrize("direct_sqlite", [True, False], ids=["fast-paths", "stock"])
def test_event_row_is_stored_as_sqlalchemy_stores_it(tmp_path: Path, direct_sqlite: bool) -> None:
    path = tmp_path / "index.sqlite3"
    engine = create_index_engine(f"sqlite:///{path}", direct_sqlite=direct_sqlite)
    migrate(engine)
    statements: list[str] = []

    @event.listens_for(engine, "before_cursor_execute")
    def _seen(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        statements.append(statement)

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
        statements.clear()
        insert_event(conn, row)  # begins the transaction itself
        conn.commit()
        through_sqlalchemy = [s for s in statements if s.startswith("INSERT")]
    assert len(through_sqlalchemy) == (0 if direct_sqlite else 1)
    with engine.connect() as conn:
        read_back = conn.execute(select(Event.at, Event.kind).order_by(Event.id)).all()
    engine.dispose()

    with sqlite3.connect(path) as raw:
        query = "SELECT at, kind, actor, object_uid, outcome, reason FROM events ORDER BY id"
        stored = raw.execute(query).fetchall()
    assert len(stored) == 2
    assert stored[0] == stored[1]
    assert read_back[0] == read_back[1]
