"""Wall-clock figures that used to be asserts inside tests (where a loaded machine made them flaky).

Each test keeps its behavioural assertion; this script measures the time and prints it::

    .venv/bin/python bench/timings.py            # all four, ~30 s
    .venv/bin/python bench/timings.py send reactor

* ``read``: a read of the index while a writer holds the lock (SQLite WAL snapshot; test:
  ``tests/integration/test_read_while_writing.py``). Was ``< 1 s``.
* ``reactor``: how soon a release request from the peer wakes an idle association's reactor (test:
  ``tests/unit/dimse/test_reactor.py``). Was ``< 15 ms`` (the idle wait bound is 20 ms).
* ``timeout``: how soon a job over its 1 s timeout is stopped and the study failed (the toy job would sleep
  30 s; test: ``tests/integration/test_processing_flow.py``). Was ``< 20 s``.
* ``send``: ``dicomflow send`` per instance, 60 small instances over one association against a running
  server, less the cost of sending one (process start-up, association). Was ``< 25 ms`` (without
  TCP_NODELAY on the SCU's socket every C-STORE waits for a delayed ACK, ~40 ms).

Uses the tests' factories (``tests/``); needs the venv and DCMTK's ``echoscu``. Exit status 0.
"""

from __future__ import annotations

import argparse
import queue
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "tests"), str(ROOT / "tests" / "integration")]


def read_while_writing(tmp: Path) -> str:
    from sqlalchemy import text

    from dicomflow.index import catalog, create_index_engine, migrate, reading

    engine = create_index_engine(f"sqlite:///{tmp / 'index.sqlite3'}")
    migrate(engine)
    with engine.connect() as writer:
        writer.execute(text("INSERT INTO groups (id, label, created_at) VALUES ('g', 'G', '2026-01-01')"))
        start = time.perf_counter()
        with reading(engine) as conn:
            catalog.list_projects(conn)
        elapsed = time.perf_counter() - start
        writer.rollback()
    engine.dispose()
    return f"a read while a writer holds the lock: {elapsed * 1000:.1f} ms"


def reactor_wake(_tmp: Path) -> str:
    from dicomflow.dimse._reactor import _IDLE_WAIT, ReactorClock, make_event_driven, release

    clock, dul, assoc = ReactorClock(), threading.Thread(), threading.Thread()
    assoc.dul = dul  # type: ignore[attr-defined]  # a fake association, attributes set by hand
    assoc.dimse = SimpleNamespace(msg_queue=queue.Queue())  # type: ignore[attr-defined]  # a fake association
    dul.socket = None  # type: ignore[attr-defined]  # a fake association, attributes set by hand
    make_event_driven(clock, assoc)
    idle_wait, waits = clock._waits[assoc], []

    def reactor() -> None:
        start = time.perf_counter()
        idle_wait(0.001)
        waits.append(time.perf_counter() - start)

    waiter = threading.Thread(target=reactor)
    waiter.start()
    time.sleep(0.005)
    dul.to_user_queue.put("A-RELEASE")  # type: ignore[attr-defined]  # a fake association, attributes set by hand
    waiter.join()
    release(assoc)
    bound = _IDLE_WAIT * 1000
    woken = waits[0] * 1000
    return (
        f"an idle reactor woken {woken:.1f} ms after it began waiting (request at 5 ms, bound {bound:.0f} ms)"
    )


def job_timeout(tmp: Path) -> str:
    from test_processing_flow import Installation

    from factories import make_study

    options = {"toy_slow": {"started_marker": str(tmp / "started"), "seconds": 30}}
    install = Installation(tmp / "data", timeout=1.0, max_attempts=1, options=options)
    try:
        started = time.perf_counter()
        study = install.run(make_study(series=1, instances=2), "toy_slow")
        elapsed = time.perf_counter() - started
    finally:
        install.close()
    return f"a job over its 1 s timeout: study {study.stage} after {elapsed:.1f} s (the job would sleep 30 s)"


def send_per_instance(tmp: Path) -> str:
    from factories import DicomflowServer, dicomflow, make_instance, make_study, write_files

    def free_port() -> int:
        import socket

        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            return int(sock.getsockname()[1])

    server = DicomflowServer(tmp / "server" / "data", free_port(), free_port())
    (tmp / "server").mkdir()
    server.start()
    try:
        one = write_files([make_instance()], tmp / "one")
        write_files(make_study(series=1, instances=60), tmp / "many")

        def seconds(*paths: str | Path) -> float:
            started = time.perf_counter()
            done = dicomflow("send", *map(str, paths), "--port", str(server.dimse_port))
            assert done.returncode == 0, done.stdout + done.stderr
            return time.perf_counter() - started

        baseline = seconds(*one)
        per_instance = (seconds(tmp / "many") - baseline) / 60
    finally:
        server.stop()
    return f"dicomflow send: {per_instance * 1000:.1f} ms per instance (60 over one association)"


FIGURES: dict[str, Callable[[Path], str]] = {
    "read": read_while_writing,
    "reactor": reactor_wake,
    "timeout": job_timeout,
    "send": send_per_instance,
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("figures", nargs="*", choices=[[], *FIGURES], default=list(FIGURES))
    for name in parser.parse_args().figures or list(FIGURES):
        with tempfile.TemporaryDirectory(prefix=f"bench-{name}-") as tmp:
            sys.stdout.write(f"{name:8} {FIGURES[name](Path(tmp))}\n")
            sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
