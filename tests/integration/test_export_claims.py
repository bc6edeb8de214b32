"""Exports are claimed in the index before they are sent, so each is sent once even when two senders (two
nodes, as during a lease handover) race over the same due exports; a dead sender's claim ends and its
exports are sent again (issue 11, item 4). The peer is a real C-STORE SCP (pynetdicom) on loopback."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from pynetdicom import AE, AllStoragePresentationContexts, evt

from dicomflow.config import Settings
from dicomflow.index import create_index_engine, migrate, reading, utcnow, writing
from dicomflow.index.outbox import ExportState, claim_exports, enqueue_export, list_outbox
from dicomflow.jobs import Outbox
from factories import make_instance

pytestmark = pytest.mark.usefixtures("index_url")  # each test on SQLite and on PostgreSQL (tests/pg.py)


class Peer:
    """A C-STORE SCP counting what it receives, by SOP Instance UID."""

    def __init__(self, port: int) -> None:
        self.received: Counter[str] = Counter()
        self._lock = threading.Lock()
        self.ae = AE(ae_title="ARCHIVE")
        self.ae.supported_contexts = AllStoragePresentationContexts
        server = self.ae.start_server(
            ("127.0.0.1", port), block=False, evt_handlers=[(evt.EVT_C_STORE, self._stored)]
        )
        assert server is not None  # not blocking: the server is returned
        self.server = server
        self.port = port

    def _stored(self, event: Any) -> int:
        with self._lock:
            self.received[str(event.request.AffectedSOPInstanceUID)] += 1
        return 0x0000

    def close(self) -> None:
        self.server.shutdown()


@pytest.fixture
def peer(free_port: Callable[[], int]) -> Iterator[Peer]:
    running = Peer(free_port())
    yield running
    running.close()


def sender_settings(tmp_path: Path, node_id: str, peer_port: int) -> Settings:
    return Settings().with_overrides(  # type: ignore[call-arg]  # data_dir comes from with_overrides
        data_dir=tmp_path,
        **{
            "index.url": f"sqlite:///{tmp_path / 'index.sqlite3'}",
            "cluster.node_id": node_id,
            "processing.nodes": {"archive": {"host": "127.0.0.1", "port": peer_port, "ae_title": "ARCHIVE"}},
        },
    )


def enqueue(tmp_path: Path, count: int) -> list[str]:
    """``count`` exports of fresh instances to ``archive``; their SOP Instance UIDs."""
    engine = create_index_engine(f"sqlite:///{tmp_path / 'index.sqlite3'}")
    migrate(engine)
    uids = []
    (tmp_path / "out").mkdir()
    with writing(engine) as conn:
        for i in range(count):
            ds = make_instance()
            path = tmp_path / "out" / f"{i}.dcm"
            ds.save_as(path, enforce_file_format=True)
            enqueue_export(conn, None, "archive", str(path.relative_to(tmp_path)))
            uids.append(str(ds.SOPInstanceUID))
    engine.dispose()
    return uids


def test_two_senders_racing_over_the_same_due_exports_send_each_once(tmp_path: Path, peer: Peer) -> None:
    uids = enqueue(tmp_path, 30)
    port = peer.port
    senders = [Outbox(sender_settings(tmp_path, node, port), _engine(tmp_path)) for node in ("a", "b")]
    start = threading.Barrier(len(senders))
    delivered: list[int] = []

    def send(outbox: Outbox) -> None:
        start.wait()
        delivered.append(outbox.dispatch())

    threads = [threading.Thread(target=send, args=(outbox,)) for outbox in senders]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)

    assert peer.received == Counter(dict.fromkeys(uids, 1))
    assert sum(delivered) == 30
    with reading(senders[0].engine) as conn:
        assert {item.state for item in list_outbox(conn)} == {ExportState.SENT}
    for outbox in senders:
        outbox.engine.dispose()


def test_the_exports_of_a_sender_that_died_mid_send_are_sent_again_once_its_claim_ends(
    tmp_path: Path, peer: Peer
) -> None:
    uids = enqueue(tmp_path, 3)
    outbox = Outbox(sender_settings(tmp_path, "b", peer.port), _engine(tmp_path))
    with writing(outbox.engine) as conn:  # node a claimed them, then was killed
        assert len(claim_exports(conn, "a:1:dead", utcnow(), utcnow() + timedelta(seconds=1))) == 3

    assert outbox.dispatch() == 0  # still a's
    time.sleep(1.1)
    assert outbox.dispatch() == 3
    assert peer.received == Counter(dict.fromkeys(uids, 1))
    outbox.engine.dispose()


def _engine(tmp_path: Path) -> Any:
    return create_index_engine(f"sqlite:///{tmp_path / 'index.sqlite3'}")
