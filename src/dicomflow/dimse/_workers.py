"""Several receiving processes on one listening socket: past the GIL for parallel associations.

The supervisor binds the socket once, forks ``workers`` processes that each run a :class:`Receiver` on it,
and restarts any that die. Each worker has its own index engine and ingestor.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import logging
import multiprocessing
import os
import signal
import socket
import threading
import time
from collections.abc import Callable
from multiprocessing.process import BaseProcess
from types import FrameType

from dicomflow.config import Settings
from dicomflow.errors import ConfigError

LOGGER = logging.getLogger(__name__)
_DRAIN_SECONDS = 10.0
_PR_SET_PDEATHSIG = 1


def worker_count(settings: Settings) -> int:
    """How many receiving processes to run (setting 0 = two per core, at least 2)."""
    if settings.dimse.workers > 0:
        return settings.dimse.workers
    return max(2, 2 * (os.cpu_count() or 1))


def listen(settings: Settings, option: str = "--dimse-port") -> socket.socket:
    """Bind and listen on the receiver's address; non-blocking so that sibling workers can share it.

    Raises
    ------
    ConfigError
        If the address cannot be bound (the message names ``option``, the flag that changes the port).
    """
    address = (settings.dimse.host, settings.dimse.port)
    try:
        sock = socket.create_server(address, backlog=128)
    except OSError as exc:
        raise ConfigError(cannot_listen("DICOM", address, exc, f"{option} or DICOMFLOW_DIMSE__PORT")) from exc
    sock.setblocking(False)
    return sock


def cannot_listen(what: str, address: tuple[str, int], exc: OSError, change: str) -> str:
    """One line saying why a port cannot be bound and what to change."""
    host, port = address
    if exc.errno == errno.EADDRINUSE:
        reason = "the port is in use (another program listens on it)"
    elif exc.errno == errno.EACCES:
        reason = "permission denied (ports below 1024 need privileges)"
    else:
        reason = exc.strerror or str(exc)
    return f"cannot listen for {what} on {host}:{port}: {reason}; choose another port with {change}"


class ReceiverPool:
    """Runs and supervises the receiving processes (or, with ``target``, any workers on a shared socket).

    Parameters
    ----------
    settings
        The installation's settings.
    listening
        The bound, listening socket (see :func:`listen`).
    """

    def __init__(
        self,
        settings: Settings,
        listening: socket.socket,
        *,
        target: Callable[[Settings, socket.socket], None] | None = None,
        count: int | None = None,
        name: str = "dimse",
    ) -> None:
        self.settings = settings
        self.listening = listening
        self.target = target or run_worker
        self.count = count or worker_count(settings)
        self.name = name
        self._context = multiprocessing.get_context("fork")
        self._processes: list[BaseProcess] = []
        self._stopping = threading.Event()
        self._monitor: threading.Thread | None = None

    def start(self) -> None:
        """Fork the workers (call before starting other threads) and watch them."""
        self._processes = [self._spawn(i) for i in range(self.count)]
        self._monitor = threading.Thread(target=self._watch, name=f"{self.name}-supervisor", daemon=True)
        self._monitor.start()

    def stop(self) -> None:
        """Ask every worker to finish its associations and exit; kill those that do not in time."""
        self._stopping.set()
        for process in self._processes:
            if process.is_alive() and process.pid:
                os.kill(process.pid, signal.SIGTERM)
        deadline = time.monotonic() + _DRAIN_SECONDS + 5
        for process in self._processes:
            process.join(max(0.1, deadline - time.monotonic()))
            if process.is_alive():
                process.kill()
                process.join(5)
        self.listening.close()

    def _spawn(self, index: int) -> BaseProcess:
        process = self._context.Process(
            target=self.target,
            args=(self.settings, self.listening),
            name=f"dicomflow-{self.name}-{index}",
            daemon=True,
        )
        process.start()
        return process

    def _watch(self) -> None:
        while not self._stopping.wait(1.0):
            for i, process in enumerate(self._processes):
                # exit code 0 only follows a SIGTERM (a stop under way, e.g. to the whole process group)
                if not process.is_alive() and process.exitcode != 0 and not self._stopping.is_set():
                    LOGGER.error(
                        "receiver process %s exited with %s; restarting", process.name, process.exitcode
                    )
                    self._processes[i] = self._spawn(i)


def die_with_parent() -> None:
    """Ask Linux to send us SIGTERM when the supervisor dies, even by SIGKILL (no orphan receivers)."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):
        LOGGER.warning("cannot tie receiver process to its supervisor (prctl unavailable)")
    if os.getppid() == 1:  # the supervisor died before prctl took effect
        os.kill(os.getpid(), signal.SIGTERM)


def run_worker(settings: Settings, listening: socket.socket) -> None:
    """Body of one receiving process: build its own engine and ingestor, serve until SIGTERM."""
    from dicomflow.dimse._receiver import Receiver
    from dicomflow.dimse._setup import configure
    from dicomflow.ingest import open_ingestor

    die_with_parent()
    stop = threading.Event()

    def _on_term(_signum: int, _frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, _on_term)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the supervisor decides when to stop
    configure(settings)
    ingestor = open_ingestor(settings)
    workers = worker_count(settings)
    receiver = Receiver(
        settings.dimse,
        ingestor,
        ingestor.engine,
        max_associations=-(-settings.dimse.max_associations // workers),  # ceil: the bound holds overall
        max_pending_connections=-(-settings.dimse.max_pending_connections // workers),
    )
    server = receiver.serve(listening)
    stop.wait()
    server.shutdown()
    deadline = time.monotonic() + _DRAIN_SECONDS
    while server.active_associations and time.monotonic() < deadline:
        time.sleep(0.05)
    ingestor.close()
