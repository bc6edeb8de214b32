"""``dicomflow serve``: the receiver processes and the HTTP API, on one machine."""

from __future__ import annotations

import logging
import signal
import socket
import threading
from types import FrameType
from typing import TYPE_CHECKING, Annotated

import typer

from dicomflow.cli._options import DataDir, load_settings

if TYPE_CHECKING:
    from dicomflow.config import Settings


def serve(
    data_dir: DataDir = None,
    dimse_port: Annotated[int | None, typer.Option(help="DICOM receiver port (default 11112).")] = None,
    http_port: Annotated[int | None, typer.Option(help="HTTP API port (default 8080).")] = None,
    ae_title: Annotated[
        str | None, typer.Option(help="AE title of the receiver (default DICOMFLOW).")
    ] = None,
    workers: Annotated[
        int | None, typer.Option(help="Receiving processes (default: 1 per core, at least 2).")
    ] = None,
) -> None:
    """Run the DICOM receiver and the HTTP API until interrupted.

    Start-up changes nothing until it knows it can run: it takes the data directory's lock (one server per
    data directory) and binds both ports first; only then does it migrate the index and recover unfinished
    writes. Either failure is one line on stderr and exit status 1.
    """
    from dicomflow.runtime import import_pydicom_without_pixel_libraries

    import_pydicom_without_pixel_libraries()  # first: every process forked from this one carries its imports
    from dicomflow.api._server import listen_http
    from dicomflow.dimse import listen
    from dicomflow.errors import ConfigError
    from dicomflow.storage import DataDirLock

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings = load_settings(
        data_dir,
        **{
            "dimse.port": dimse_port,
            "http.port": http_port,
            "dimse.ae_title": ae_title,
            "dimse.workers": workers,
        },
    )
    lock: DataDirLock | None = None
    try:
        if settings.data_dir.is_dir():  # else nobody holds it, and it is made only once the ports are ours
            lock = DataDirLock.acquire(settings.data_dir)
        sockets = listen(settings), listen_http(settings)
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        lock = lock or DataDirLock.acquire(settings.data_dir)
    except ConfigError as exc:
        typer.echo(f"dicomflow serve: {exc.message}", err=True)
        raise typer.Exit(1) from None
    lock.record_pid()
    try:
        _serve(settings, *sockets)
    finally:
        lock.release()


def _serve(settings: Settings, dimse_socket: socket.socket, http_socket: socket.socket) -> None:
    from dicomflow.api._server import http_worker_count, run_http_worker, run_upload_janitor
    from dicomflow.dimse import ReceiverPool, worker_count
    from dicomflow.index import create_index_engine, migrate
    from dicomflow.ingest import open_ingestor, recover_store
    from dicomflow.jobs import ProcessingEngine
    from dicomflow.uploads import Uploads

    engine = create_index_engine(settings.index_url)  # FULL: every commit durable (ingest syncs its own)
    migrate(engine)
    engine.dispose()
    ingestor = open_ingestor(settings)
    try:
        report = recover_store(ingestor)
    finally:
        ingestor.close()  # no thread of ours may be alive when the receivers are forked
    if report.kept or report.removed:
        logging.getLogger("dicomflow").warning(
            "recovered after an unclean stop: %d finished writes kept, %d unfinished removed",
            report.kept,
            report.removed,
        )
    pool = ReceiverPool(settings, dimse_socket)
    http = ReceiverPool(
        settings,
        http_socket,
        target=run_http_worker,
        count=http_worker_count(settings),
        name="http",
    )
    pool.start()  # fork before any thread of ours starts
    http.start()
    processing = ProcessingEngine(settings, create_index_engine(settings.index_url))
    processing.start()
    uploads = Uploads(settings, processing.engine, processing.flow)
    stop = threading.Event()
    janitor = threading.Thread(target=run_upload_janitor, args=(uploads, settings, stop), daemon=True)
    janitor.start()
    logging.getLogger("dicomflow").info(
        "DICOM receiver %s on %s:%d (%d processes), HTTP API on http://%s:%d (%d processes), data in %s",
        settings.dimse.ae_title,
        settings.dimse.host,
        settings.dimse.port,
        worker_count(settings),
        settings.http.host,
        settings.http.port,
        http_worker_count(settings),
        settings.data_dir.resolve(),
    )
    signal.signal(signal.SIGTERM, _exit_on_signal)
    signal.signal(signal.SIGINT, _exit_on_signal)
    try:
        while True:
            signal.pause()
    finally:
        stop.set()
        http.stop()
        processing.stop()
        uploads.close()
        pool.stop()


def _exit_on_signal(signum: int, _frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)
