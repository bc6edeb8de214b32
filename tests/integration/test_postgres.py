"""PostgreSQL-only behaviour of the index: concurrent migrations, arrivals in commit order."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from pydicom.uid import generate_uid
from sqlalchemy import Engine, insert, select, text

from dicomflow.config import Settings
from dicomflow.index import Acquisition, Instance, arrivals, create_index_engine, migrate, writing
from dicomflow.index._db import NEWEST_REVISION, schema_revisions
from dicomflow.ingest import Source, open_ingestor
from factories import make_instance, to_bytes

_MIGRATE = """
import sys, time
from dicomflow.index import create_index_engine, migrate
engine = create_index_engine(sys.argv[1])
time.sleep(max(0.0, float(sys.argv[2]) - time.time()))  # all processes start migrating at the same instant
migrate(engine)
"""


def test_servers_starting_at_once_on_an_empty_database_all_migrate_it(pg_url: str) -> None:
    start_at = time.time() + 3  # after every process has imported SQLAlchemy and connected
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", _MIGRATE, pg_url, str(start_at)],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for _ in range(4)
    ]
    outputs = [process.communicate(timeout=120)[0] for process in processes]
    assert [process.returncode for process in processes] == [0] * 4, "\n".join(outputs)
    engine = create_index_engine(pg_url)
    try:
        assert schema_revisions(engine) == [NEWEST_REVISION]
        with engine.connect() as conn:
            assert conn.scalar(text("SELECT count(*) FROM alembic_version")) == 1
        migrate(engine)  # and again, at head
    finally:
        engine.dispose()


def _two_sessions(tmp_path: Path, url: str) -> tuple[Engine, list[dict[str, Any]]]:
    """An index on ``url`` holding one instance in each of two sessions; those rows."""
    settings = Settings().with_overrides(data_dir=tmp_path, **{"index.url": url, "storage.fsync": False})  # type: ignore[call-arg]  # data_dir comes from with_overrides
    ingestor = open_ingestor(settings)
    try:
        migrate(ingestor.engine)
        for _ in range(2):
            ingestor.ingest_bytes([to_bytes(make_instance())], Source("dimse", "test"))
    finally:
        ingestor.close()
    engine = create_index_engine(url)
    with engine.connect() as conn:
        rows = [dict(row._mapping) for row in conn.execute(select(Instance).order_by(Instance.id))]
    return engine, rows


def _copy(row: dict[str, Any]) -> dict[str, Any]:
    return {**{k: v for k, v in row.items() if k != "id"}, "sop_instance_uid": generate_uid()}


def test_an_instance_committed_after_a_later_id_is_still_tracked(tmp_path: Path, pg_url: str) -> None:
    """Ids are handed out at INSERT, rows seen at COMMIT: a row with a smaller id may commit after the
    tracker has read a larger one. Each session must still be found."""
    engine, (first, second) = _two_sessions(tmp_path, pg_url)
    sessions_of = {first["acquisition_id"]: "A", second["acquisition_id"]: "B"}
    try:
        with writing(engine) as conn:
            _, position = arrivals.arrivals_since(conn, arrivals.cursor(conn, "test"))
            arrivals.move_cursor(conn, "test", position)
        found: list[int] = []

        def track() -> None:
            with writing(engine) as conn:
                new, position = arrivals.arrivals_since(conn, arrivals.cursor(conn, "test"))
                arrivals.move_cursor(conn, "test", position)
            found.extend(arrival.session_id for arrival in new)

        with engine.connect() as conn_a, engine.connect() as conn_b:
            transaction_a = conn_a.begin()
            conn_a.execute(insert(Instance), _copy(first))  # the smaller id, still uncommitted
            with conn_b.begin():
                conn_b.execute(insert(Instance), _copy(second))
            track()
            transaction_a.commit()
        track()
        session_of = {}
        with engine.connect() as conn:
            for acquisition_id in sessions_of:
                session_of[acquisition_id] = conn.scalar(
                    select(Acquisition.session_id).where(Acquisition.id == acquisition_id)
                )
        assert sorted(found) == sorted(session_of.values())
    finally:
        engine.dispose()
