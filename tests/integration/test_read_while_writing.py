"""Readers of the index never queue behind a writer (SQLite WAL snapshots); how long such a read takes:
``bench/timings.py read``."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import text

from dicomflow.index import catalog, create_index_engine, migrate, reading


def test_a_read_does_not_wait_for_a_writer_holding_the_lock(tmp_path: Path) -> None:
    engine = create_index_engine(f"sqlite:///{tmp_path / 'index.sqlite3'}")
    migrate(engine)
    with engine.connect() as writer:
        writer.execute(text("INSERT INTO groups (id, label, created_at) VALUES ('g', 'G', '2026-01-01')"))
        with reading(engine) as conn:  # a read that waited for the writer would fail: locked
            assert catalog.list_projects(conn) == []
        writer.rollback()
    engine.dispose()
