"""``dicomflow serve``: the receiver processes and the HTTP API, on one machine."""

from __future__ import annotations

import logging
import signal
import threading
from types import FrameType
from typing import Annotated

import typer

from dicomflow.cli._options import DataDir, load_settings


def serve(
    data_dir: DataDir = None,
    dimse_port: Annotated[int | None, typer.Option(help="DICOM receiver port (default 11112).")] = None,
    http_port: Annotated[int | None, typer.Option(help="HTTP API port (default 8080).")] = None,
    ae_title: Annotated[
        str | None, typer.Option(help="AE title of the receiver (default DICOMFLOW).")
    ] = None,
    workers: Annotated[int | None, typer.Option(help="Receiving processes (default: 2 per core).")] = None,
) -> None:
    """Run the DICOM receiver and the HTTP API until interrupted."""
    from dicomflow.api._server import http_worker_count, listen_http, run_http_worker, run_upload_janitor
    from dicomflow.dimse import ReceiverPool, listen, worker_count
    from dicomflow.index import create_index_engine, migrate
    from dicomflow.ingest import open_ingestor, recover_store
    from dicomflow.jobs import ProcessingEngine
    from dicomflow.uploads import Uploads

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
    settings.data_dir.mkdir(parents=True, exist_ok=True)
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
    pool = ReceiverPool(settings, listen(settings))
    http = ReceiverPool(
        settings,
        listen_http(settings),
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
