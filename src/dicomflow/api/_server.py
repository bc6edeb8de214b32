"""The HTTP API in several processes on one listening socket, as the DICOM receiver runs (past the GIL).

Every process builds its own app (engine, blob store, upload service); what they share lives in the index
and on disk. Work that must happen once per installation (resuming interrupted upload imports, expiring
abandoned uploads) is left to the supervisor (:func:`run_upload_janitor`).
"""

from __future__ import annotations

import logging
import os
import socket
import threading

from dicomflow.config import Settings
from dicomflow.errors import ConfigError
from dicomflow.uploads import Uploads

LOGGER = logging.getLogger(__name__)


def http_worker_count(settings: Settings) -> int:
    """HTTP processes to run (setting 0 = one per core, at least 2)."""
    return settings.http.workers if settings.http.workers > 0 else max(2, os.cpu_count() or 1)


def listen_http(settings: Settings) -> socket.socket:
    """Bind and listen on the API's address (non-blocking, shared by the HTTP processes)."""
    try:
        sock = socket.create_server((settings.http.host, settings.http.port), backlog=256)
    except OSError as exc:
        raise ConfigError(
            f"cannot listen on {settings.http.host}:{settings.http.port} (DICOMFLOW_HTTP__PORT): {exc}"
        ) from exc
    sock.setblocking(False)
    return sock


def run_http_worker(settings: Settings, listening: socket.socket) -> None:
    """Body of one HTTP process: its own app, served by uvicorn on the shared socket until SIGTERM."""
    import uvicorn

    from dicomflow.api._app import create_app
    from dicomflow.dimse._workers import die_with_parent

    die_with_parent()
    app = create_app(settings, supervised=True)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    server.run(sockets=[listening])


def run_upload_janitor(uploads: Uploads, settings: Settings, stop: threading.Event) -> None:
    """Resume interrupted upload imports once, then expire abandoned uploads now and then, until ``stop``."""
    resumed = uploads.resume()
    if resumed:
        LOGGER.warning("resuming the import of %d upload(s)", resumed)
    while not stop.wait(settings.uploads.sweep_interval):
        try:
            uploads.expire()
        except Exception:
            LOGGER.exception("expiring abandoned uploads failed")
