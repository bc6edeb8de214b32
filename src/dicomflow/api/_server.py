"""The HTTP API in several processes on one listening socket, as the DICOM receiver runs (past the GIL).

Every process builds its own app (engine, blob store, upload service); what they share lives in the index
and on disk. Work that must happen once per installation (resuming interrupted upload imports, expiring
abandoned uploads) is left to the supervisor (:func:`run_upload_janitor`).

Connections are spread over the processes: left to the event loop, the first process to wake accepts every
connection pending (a client opening ten keep-alive connections at once gets one process, one core). Each
process therefore accepts in a thread of its own, one connection at a time, and waits a little longer the
more connections it serves already, so that its idler siblings take new ones first (as the receiver does).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import select
import socket
import threading
import time
from typing import Any

import uvicorn

from dicomflow.config import Settings
from dicomflow.errors import ConfigError
from dicomflow.usecases.uploads import Uploads

LOGGER = logging.getLogger(__name__)


def http_worker_count(settings: Settings) -> int:
    """HTTP processes to run (setting 0 = one per core, at least 2)."""
    return settings.http.workers if settings.http.workers > 0 else max(2, os.cpu_count() or 1)


def listen_http(settings: Settings) -> socket.socket:
    """Bind and listen on the API's address (non-blocking, shared by the HTTP processes)."""
    from dicomflow.dimse._workers import cannot_listen

    address = (settings.http.host, settings.http.port)
    try:
        sock = socket.create_server(address, backlog=256)
    except OSError as exc:
        raise ConfigError(cannot_listen("HTTP", address, exc, "--http-port or DICOMFLOW_HTTP__PORT")) from exc
    sock.setblocking(False)
    return sock


def run_http_worker(settings: Settings, listening: socket.socket) -> None:
    """Body of one HTTP process: its own app, served by uvicorn on the shared socket until SIGTERM."""
    from dicomflow.api._app import create_app
    from dicomflow.dimse._workers import die_with_parent

    die_with_parent()
    app = create_app(settings, supervised=True)
    config = uvicorn.Config(app, log_level="warning", lifespan="on", loop="uvloop", http="httptools")
    _BalancedServer(config, listening).run()


class _BalancedServer(uvicorn.Server):
    """uvicorn, fed the connections that this process's acceptor thread takes from the shared socket."""

    def __init__(self, config: uvicorn.Config, listening: socket.socket) -> None:
        super().__init__(config)
        self.listening = listening
        self._handing = 0  # accepted here, not yet among uvicorn's connections
        self._handing_lock = threading.Lock()

    def _busy(self) -> int:
        with self._handing_lock:
            return len(self.server_state.connections) + self._handing

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=[])  # the app's lifespan; no listener of uvicorn's own
        loop = asyncio.get_running_loop()
        protocol_class: Any = self.config.http_protocol_class  # typed as asyncio.Protocol, takes these
        protocol = functools.partial(
            protocol_class,
            config=self.config,
            server_state=self.server_state,
            app_state=self.lifespan.state,
        )
        threading.Thread(
            target=self._accept, args=(loop, protocol), name="http-acceptor", daemon=True
        ).start()

    def _accept(self, loop: asyncio.AbstractEventLoop, protocol: Any) -> None:
        while not self.should_exit:
            if not select.select([self.listening], [], [], 0.5)[0]:
                continue
            busy = self._busy()
            if busy:
                time.sleep(min(0.002 * busy, 0.05))  # idler siblings first
            try:
                conn, _ = self.listening.accept()
            except (BlockingIOError, InterruptedError, ConnectionAbortedError):
                continue  # a sibling took it
            except OSError:
                if not self.should_exit:
                    LOGGER.exception("accepting an HTTP connection failed")
                    time.sleep(0.1)
                continue
            conn.setblocking(False)
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with self._handing_lock:
                self._handing += 1
            asyncio.run_coroutine_threadsafe(self._hand_over(loop, protocol, conn), loop)

    async def _hand_over(self, loop: asyncio.AbstractEventLoop, protocol: Any, conn: socket.socket) -> None:
        try:
            await loop.connect_accepted_socket(protocol, conn)  # now among uvicorn's connections
        except OSError:
            conn.close()  # the peer went away before we got to it
        finally:
            with self._handing_lock:
                self._handing -= 1


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
