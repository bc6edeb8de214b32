"""PostgreSQL-only behaviour of the index: concurrent migrations, arrivals in commit order."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from pydicom.uid import generate_uid
from sqlalchemy import Engine, insert, select, text

from dicomflow.config import Settings
from dicomflow.index import (
    Acquisition,
    Instance,
    Session,
    StoredInstance,
    arrivals,
    create_index_engine,
    insert_instance,
    instances_with_uid,
    migrate,
    writing,
)
from dicomflow.index._db import NEWEST_REVISION, schema_revisions
from dicomflow.ingest import Source, open_ingestor
from factories import DataDir, DicomflowServer, make_instance, make_study, to_bytes, write_files
from waiting import wait_until

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
    acquisitions = [first["acquisition_id"], second["acquisition_id"]]
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
        with engine.connect() as conn:
            sessions = conn.scalars(
                select(Acquisition.session_id).where(Acquisition.id.in_(acquisitions))
            ).all()
        assert sorted(found) == sorted(
            sessions
        )  # each session once (failed: the one committed late was lost)
    finally:
        engine.dispose()


def test_a_server_on_postgresql_stores_what_two_senders_send_and_tracks_each_study(
    make_server: Callable[..., DicomflowServer], pg_url: str, tmp_path: Path
) -> None:
    """``dicomflow serve`` on an empty PostgreSQL database: it migrates it, two associations at once store
    every instance (its two receiving processes write concurrently), and each study is opened."""
    server = make_server(DICOMFLOW_INDEX__URL=pg_url)
    studies = [make_study(series=2, instances=3) for _ in range(2)]
    senders = [
        subprocess.Popen(
            ["storescu", "-aec", server.ae_title, "127.0.0.1", str(server.dimse_port)]
            + [str(path) for path in write_files(study, tmp_path / f"study{n}")],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        for n, study in enumerate(studies)
    ]
    for sender in senders:
        output = sender.communicate(timeout=60)[0]
        assert sender.returncode == 0, output
    assert server.instance_count() == 12
    assert not server.staged_files()
    wait_until(
        lambda: server.scalar("SELECT count(DISTINCT session_id) FROM studies") == 2,
        timeout=30,
        message="the tracker did not open both studies",
    )


def test_writers_of_one_sop_instance_uid_wait_for_each_other(tmp_path: Path, pg_url: str) -> None:
    """On SQLite one writer at a time (the write lock) makes "look up the UID, then insert" atomic; on
    PostgreSQL the receiving processes write at once, so a second writer of the same UID must wait for the
    first to commit and then see its row (else both insert: two copies, or a conflict let through)."""
    engine, (row, _) = _two_sessions(tmp_path, pg_url)
    uid = generate_uid()
    try:
        with engine.connect() as conn:
            project_id = conn.scalar(
                select(Session.project_id)
                .join(Acquisition, Acquisition.session_id == Session.id)
                .where(Acquisition.id == row["acquisition_id"])
            )
        assert project_id is not None
        with engine.connect() as first:
            first.begin()
            assert instances_with_uid(first, uid, project_id) == []
            insert_instance(first, {**_copy(row), "sop_instance_uid": uid})
            with ThreadPoolExecutor(1) as pool:
                second = pool.submit(_look_up, engine, uid, project_id)
                time.sleep(0.5)
                assert not second.done()  # failed before: it saw no row, and would have inserted its own
                first.commit()
                assert [found.sha256 for found in second.result(timeout=10)] == [row["sha256"]]
    finally:
        engine.dispose()


def _look_up(engine: Engine, uid: str, project_id: int) -> list[StoredInstance]:
    with engine.begin() as conn:
        return instances_with_uid(conn, uid, project_id)


def test_the_ingest_commits_asynchronously_and_flushes_once_per_batch(tmp_path: Path, pg_url: str) -> None:
    """As on SQLite (synchronous NORMAL), the ingest's commits do not wait for the disk; the WAL is flushed
    once per batch, before the staged copies go. If the server restarted meanwhile (commits acknowledged
    asynchronously may be lost), the staged copies stay, for recovery."""
    settings = Settings().with_overrides(data_dir=tmp_path, **{"index.url": pg_url})  # type: ignore[call-arg]  # data_dir comes from with_overrides
    ingestor = open_ingestor(settings)
    try:
        migrate(ingestor.engine)
        with ingestor.engine.connect() as conn:
            assert conn.exec_driver_sql("SHOW synchronous_commit").scalar_one() == "off"
        ingestor.ingest_bytes([to_bytes(make_instance())], Source("dimse", "test"))
        ingestor.store.flush()
        assert DataDir(tmp_path, pg_url).staged_now() == []
        lock = ingestor._write_lock  # the fault: a server start seen before this one
        assert lock._postgres is not None
        lock._postgres.started.add(datetime(2000, 1, 1, tzinfo=UTC))
        ingestor.ingest_bytes([to_bytes(make_instance())], Source("dimse", "test"))
        with pytest.raises(OSError, match="restarted"):
            ingestor.store.flush()
        assert len(DataDir(tmp_path, pg_url).staged_now()) == 1
    finally:
        ingestor.close()
