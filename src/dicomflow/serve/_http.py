"""The HTTP API's processes of ``dicomflow serve``, on one listening socket as the receivers run.

With ``performance.fast_paths`` on, connections are spread over the processes: left to the event loop, the
first process to wake accepts every connection pending (a client opening ten keep-alive connections at once
gets one process, one core). Each process therefore accepts in a thread of its own, one connection at a
time, and waits a little longer the more connections it serves already, so that its idler siblings take new
ones first (as the receivers do). This reaches into uvicorn's internals (:class:`_BalancedServer`); with
fast paths off, stock uvicorn serves the shared socket.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import select
import signal
import socket
import threading
import time
from types import FrameType
from typing import Any

import uvicorn

from dicomflow import api
from dicomflow.config import Settings
from dicomflow.runtime import open_application
from dicomflow.serve._supervisor import die_with_parent

LOGGER = logging.getLogger(__name__)
UVICORN_PRIVATE = (
    "uvicorn.Server.startup",
    "uvicorn.Server.should_exit",
    "uvicorn.Server.server_state",
    "uvicorn.server.ServerState.connections",
    "uvicorn.Server.lifespan",
    "uvicorn.lifespan.on.LifespanOn.state",
    "uvicorn.Config.http_protocol_class",
    "uvicorn.protocols.http.httptools_impl.HttpToolsProtocol(config=, server_state=, app_state=)",
)
"""What :class:`_BalancedServer` uses of uvicorn beyond ``Config`` and ``Server.run`` (for the canary)."""


def run_http_worker(settings: Settings, listening: socket.socket) -> None:
    """Body of one HTTP process: its application and app, served by uvicorn on the shared socket until
    SIGTERM (uvicorn's own handler: it finishes the requests under way), then the application closed."""
    die_with_parent()
    # before uvicorn runs, and once it has stopped (it raises the SIGTERM it caught again)
    signal.signal(signal.SIGTERM, _exit)
    application = open_application(settings, migrate_index=False)  # migrated already
    try:
        config = uvicorn.Config(
            api.create_app(application), log_level="warning", lifespan="on", loop="uvloop", http="httptools"
        )
        if settings.performance.fast_paths:
            _BalancedServer(config, listening).run()
        else:
            uvicorn.Server(config).run(sockets=[listening])
    finally:
        application.close()


def _exit(_signum: int, _frame: FrameType | None) -> None:
    raise SystemExit(0)  # exit status 0: stopped on purpose (see WorkerPool), the application closed


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
