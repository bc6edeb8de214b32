"""Several nodes on one index: background singletons run under a lease on exactly one node at a time, and
another node takes over when the holder dies (issue 11, item 4). Two processing engines with different
node ids share one SQLite index and one blob store here; the SQL is the same on PostgreSQL."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from dicomflow.config import Settings
from dicomflow.index import migrate, reading, utcnow, writing
from dicomflow.index.leases import acquire_lease, current_leases, release_lease
from dicomflow.index.studies import list_studies
from dicomflow.ingest import Source, open_ingestor
from dicomflow.jobs import TRACKER, UPLOAD_EXPIRY, ProcessingEngine
from factories import create_project, make_study, to_bytes

pytestmark = pytest.mark.usefixtures("index_url")  # each test on SQLite and on PostgreSQL (tests/pg.py)

DIMSE = Source("dimse", "storescu@127.0.0.1", calling_ae="SCU", called_ae="kp-proj")
LEASE_SECONDS = 1.0


def node_settings(tmp_path: Path, node_id: str) -> Settings:
    """A node of the installation in ``tmp_path``: its own data dir, the shared index and blob store."""
    return Settings().with_overrides(  # type: ignore[call-arg]  # data_dir comes from with_overrides
        data_dir=tmp_path / node_id,
        **{
            "index.url": f"sqlite:///{tmp_path / 'shared' / 'index.sqlite3'}",
            "storage.root": str(tmp_path / "shared" / "blobs"),
            "storage.fsync": False,
            "processing.workers": 0,  # the executor is not what is tested here
            "processing.settle_time": 0.0,
            "processing.poll_interval": 0.02,
            "cluster.node_id": node_id,
            "cluster.lease_seconds": LEASE_SECONDS,
        },
    )


class Cluster:
    """Two nodes (``a``, ``b``) on one index: an ingestor and a processing engine each (loops not started:
    the tests step them)."""

    def __init__(self, tmp_path: Path) -> None:
        self.settings = {node: node_settings(tmp_path, node) for node in ("a", "b")}
        self.ingestor = open_ingestor(self.settings["a"])
        migrate(self.ingestor.engine)
        create_project(self.ingestor.engine, "proj")
        self.engines = {
            node: ProcessingEngine(settings, self.ingestor.engine) for node, settings in self.settings.items()
        }

    def receive(self, studies: int = 1, instances: int = 2) -> None:
        for _ in range(studies):
            for ds in make_study(series=1, instances=instances):
                self.ingestor.ingest_bytes([to_bytes(ds)], DIMSE)

    def studies(self) -> int:
        with reading(self.ingestor.engine) as conn:
            return len(list_studies(conn, latest_only=False))

    def holders(self) -> dict[str, str]:
        with reading(self.ingestor.engine) as conn:
            return {lease.name: lease.holder for lease in current_leases(conn, utcnow())}

    def close(self) -> None:
        for engine in self.engines.values():
            engine.stop()
        self.ingestor.close()


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    running = Cluster(tmp_path)
    yield running
    running.close()


def test_a_lease_goes_to_one_node_is_renewed_by_it_and_taken_over_once_expired(cluster: Cluster) -> None:
    now = utcnow()
    with writing(cluster.ingestor.engine) as conn:
        assert acquire_lease(conn, "poller", "a", now, 10)
        assert not acquire_lease(conn, "poller", "b", now, 10)
        assert acquire_lease(conn, "poller", "a", now + timedelta(seconds=5), 10)  # renewed to now + 15
        assert not acquire_lease(conn, "poller", "b", now + timedelta(seconds=12), 10)
        assert acquire_lease(conn, "poller", "b", now + timedelta(seconds=16), 10)  # a stopped renewing
        assert not release_lease(conn, "poller", "a")  # not a's any more
        assert [(h.name, h.holder) for h in current_leases(conn, now + timedelta(seconds=16))] == [
            ("poller", "b")
        ]
        assert release_lease(conn, "poller", "b")
        assert acquire_lease(conn, "poller", "a", now, 10)  # released: free at once


def test_tracking_runs_on_the_lease_holder_only_and_another_node_takes_over_when_it_dies(
    cluster: Cluster,
) -> None:
    a, b = cluster.engines["a"], cluster.engines["b"]
    a.step()  # a takes the tracker's lease (and the others)
    assert cluster.holders()[TRACKER] == "a"
    cluster.receive()

    b.step()  # b does not track while a holds the lease
    assert cluster.studies() == 0
    a.step()
    assert cluster.studies() == 1

    cluster.receive()  # a dies (kill -9: it neither steps nor releases); b takes over once the lease ends
    died = time.monotonic()
    while cluster.studies() < 2:
        assert time.monotonic() - died < 2.5 * LEASE_SECONDS, "b never took the tracker over"
        b.step()
        time.sleep(0.02)
    assert time.monotonic() - died >= LEASE_SECONDS * 0.5  # not before a's lease could have ended
    assert cluster.holders()[TRACKER] == "b"


def test_a_node_stopping_cleanly_hands_its_duties_over_at_once(cluster: Cluster) -> None:
    a, b = cluster.engines["a"], cluster.engines["b"]
    a.step()
    a.stop()  # releases its leases
    cluster.receive()
    b.step()
    assert cluster.studies() == 1
    assert set(cluster.holders().values()) == {"b"}


def test_two_nodes_stepping_at_once_promote_each_study_once_without_errors(
    cluster: Cluster, caplog: pytest.LogCaptureFixture
) -> None:
    """Before leases, both nodes tracked and promoted the same studies: duplicate transitions were logged
    ("a study cannot go from Finished to Finished") and versions were opened twice."""
    cluster.receive(studies=12, instances=2)
    stop = threading.Event()

    def loop(engine: ProcessingEngine) -> None:
        while not stop.is_set():
            engine.step()

    threads = [threading.Thread(target=loop, args=(engine,)) for engine in cluster.engines.values()]
    with caplog.at_level(logging.ERROR, logger="dicomflow"):
        for thread in threads:
            thread.start()
        deadline = time.monotonic() + 20
        while not _all_finished(cluster) and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.2)
        stop.set()
        for thread in threads:
            thread.join(10)
    assert _all_finished(cluster)
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert errors == []
    with reading(cluster.ingestor.engine) as conn:
        versions = [s.version for s in list_studies(conn, latest_only=False)]
    assert versions == [1] * 12


def _all_finished(cluster: Cluster) -> bool:
    with reading(cluster.ingestor.engine) as conn:
        studies = list_studies(conn, latest_only=False)
    return len(studies) == 12 and all(s.stage == "Finished" for s in studies)


def test_only_the_node_holding_the_upload_expiry_lease_expires_uploads(tmp_path: Path) -> None:
    from dicomflow.runtime import open_application
    from dicomflow.usecases import uploads

    def node(node_id: str) -> Settings:
        return Settings().with_overrides(  # type: ignore[call-arg]  # data_dir comes from with_overrides
            data_dir=tmp_path,
            **{
                "storage.fsync": False,
                "uploads.expire_after": 0.0,
                "uploads.sweep_interval": 0.05,
                "cluster.node_id": node_id,
                "cluster.lease_seconds": 30.0,
            },
        )

    a, b = open_application(node("a")), open_application(node("b"))
    try:
        create_project(a.engine, "proj")
        upload = uploads.start(a, None, "proj", None)
        with writing(a.engine) as conn:  # a holds it (and would expire uploads itself)
            acquire_lease(conn, UPLOAD_EXPIRY, "a", utcnow(), 30)
        _sweep(b, seconds=0.5)
        assert uploads.get(a, None, upload.id).state == "uploading"  # b left it to a

        with writing(a.engine) as conn:  # a stops cleanly
            release_lease(conn, UPLOAD_EXPIRY, "a")
        _sweep(b, seconds=0.5)
        assert uploads.get(a, None, upload.id).state == "expired"
    finally:
        b.close()
        a.close()


def _sweep(app: Any, seconds: float) -> None:
    stop = threading.Event()
    sweeper = threading.Thread(target=app.sweep_uploads, args=(stop,))
    sweeper.start()
    time.sleep(seconds)
    stop.set()
    sweeper.join(10)
