"""PostgreSQL-only behaviour of the index: concurrent migrations, arrivals in commit order."""

from __future__ import annotations

import subprocess
import sys
import time

from sqlalchemy import text

from dicomflow.index import create_index_engine, migrate
from dicomflow.index._db import NEWEST_REVISION, schema_revisions

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
