"""``dicomflow serve``: the receiver processes, the HTTP processes and the janitors of one installation."""

from __future__ import annotations

import functools
import logging
import multiprocessing
import os
import socket
from collections.abc import Callable
from multiprocessing.connection import Connection

from dicomflow import metrics
from dicomflow.config import Settings
from dicomflow.errors import ConfigError
from dicomflow.runtime import import_pydicom_without_pixel_libraries
from dicomflow.serve._signals import wait_for_signal
from dicomflow.serve._sockets import listen, listen_http
from dicomflow.storage import DataDirLock

LOGGER = logging.getLogger("dicomflow")


def serve(settings: Settings) -> None:
    """Run the DICOM receiver and the HTTP API of ``settings`` until SIGTERM or SIGINT.

    Start-up changes nothing until it knows it can run: it takes the data directory's lock (one server per
    data directory) and binds both ports first; only then does it migrate the index and recover unfinished
    writes. Then it forks the receiver and HTTP processes, each building its own application, and runs the
    processing engine and the upload janitor itself.

    Raises
    ------
    ConfigError
        If a port cannot be bound or another server holds the data directory (nothing was changed).
    SystemExit
        With status 128 + the signal's number, once every process has stopped.
    """
    if settings.performance.fast_paths:  # relies on pydicom importing numpy and Pillow only if it can
        import_pydicom_without_pixel_libraries()  # first: every worker forked below carries what we import
    lock: DataDirLock | None = None
    sockets: list[socket.socket] = []
    try:
        if settings.data_dir.is_dir():  # else nobody holds it, and it is made only once the ports are ours
            lock = DataDirLock.acquire(settings.data_dir)
        sockets.append(listen(settings))
        sockets.append(listen_http(settings))
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        lock = lock or DataDirLock.acquire(settings.data_dir)
    except ConfigError:
        for sock in sockets:
            sock.close()
        if lock is not None:
            lock.release()
        raise
    lock.record_pid()
    # counters of every process forked below, summed by /metrics (before anything imports prometheus-client)
    metrics.share_between_processes(settings.data_dir / "metrics")
    try:
        signum = _run(settings, *sockets)
    finally:
        lock.release()
    raise SystemExit(128 + signum)


def _run(settings: Settings, dimse_socket: socket.socket, http_socket: socket.socket) -> int:
    from dicomflow.serve._receivers import receiver_count, run_receiver
    from dicomflow.serve._supervisor import WorkerPool

    _prepare(settings)
    receivers = WorkerPool(
        "dimse", functools.partial(run_receiver, settings), dimse_socket, receiver_count(settings)
    )
    http = WorkerPool(
        "http",
        functools.partial(_run_http_worker, settings),
        http_socket,
        http_worker_count(settings),
    )
    receivers.start()  # fork before any thread of ours starts
    http.start()
    from dicomflow.runtime import open_application  # the supervisor's own duties, after the fork
    from dicomflow.serve._janitors import Janitors

    application = open_application(settings, migrate_index=False)
    janitors = Janitors(application)
    janitors.start()
    LOGGER.info(
        "node %s: DICOM receiver %s on %s:%d (%d processes), HTTP API on http://%s:%d (%d processes), "
        "data in %s",
        settings.cluster.node_id,
        settings.dimse.ae_title,
        settings.dimse.host,
        settings.dimse.port,
        receiver_count(settings),
        settings.http.host,
        settings.http.port,
        http_worker_count(settings),
        settings.data_dir.resolve(),
    )
    try:
        return wait_for_signal()
    finally:
        http.stop()
        janitors.stop()
        application.close()
        receivers.stop()


def http_worker_count(settings: Settings) -> int:
    """HTTP processes to run (setting 0 = one per core, at least 2)."""
    return settings.http.workers if settings.http.workers > 0 else max(2, os.cpu_count() or 1)


def _run_http_worker(settings: Settings, listening: socket.socket) -> None:
    """Body of an HTTP process: uvicorn and FastAPI are imported after the fork, by HTTP processes only."""
    from dicomflow.serve._http import run_http_worker

    run_http_worker(settings, listening)


def _prepare(settings: Settings) -> None:
    """Migrate the index, check the report types and recover unfinished writes (once, before any worker
    exists). No thread of ours and no open connection may outlive it: workers are forked."""
    from dicomflow.ingest import open_ingestor, recover_store

    _in_child(_migrate, settings, "migrating the index")
    _in_child(_check_report_types, settings, "loading the report types")
    ingestor = open_ingestor(settings)
    try:
        report = recover_store(ingestor)
    finally:
        ingestor.close()  # no thread of ours may be alive when the workers are forked
    if report.kept or report.removed:
        LOGGER.warning(
            "recovered after an unclean stop: %d finished writes kept, %d unfinished removed",
            report.kept,
            report.removed,
        )


def _in_child(work: Callable[[Settings], None], settings: Settings, doing: str) -> None:
    """Run ``work`` in a short-lived forked process, so that what it imports (Alembic: about 12 MiB; the
    report types' pipelines: 3 MiB) is never carried by the supervisor, nor by any worker forked from it.

    Raises
    ------
    ConfigError
        ``work`` refused the configuration (its message); RuntimeError for any other failure.
    """
    context = multiprocessing.get_context("fork")
    receiving, sending = context.Pipe(duplex=False)
    child = context.Process(
        target=_report_to, args=(sending, work, settings), name=f"dicomflow-{work.__name__}"
    )
    child.start()
    sending.close()
    try:
        refused = receiving.recv()  # the child's answer; EOF when it failed before answering
    except EOFError:
        refused = None
    child.join()
    receiving.close()
    if isinstance(refused, str):
        raise ConfigError(refused)
    if child.exitcode != 0:
        raise RuntimeError(f"{doing} failed (exit status {child.exitcode}, traceback above)")


def _report_to(sending: Connection, work: Callable[[Settings], None], settings: Settings) -> None:
    try:
        work(settings)
    except ConfigError as exc:
        sending.send(exc.message)
    else:
        sending.send(None)
    finally:
        sending.close()


def _check_report_types(settings: Settings) -> None:
    from dicomflow.runtime import load_report_types_of

    load_report_types_of(settings)


def _migrate(settings: Settings) -> None:
    from dicomflow.index import create_index_engine, migrate
    from dicomflow.storage import open_blob_store

    engine = create_index_engine(settings.index_url)  # FULL: every commit durable (ingest syncs its own)
    try:
        migrate(engine, blob_read=open_blob_store(settings, fsync=False).get)  # 0006 reads series headers
    finally:
        engine.dispose()
