"""The worker supervisor: processes forked onto one listening socket, restarted when they die.

``dicomflow serve`` runs two pools, the DICOM receivers and the HTTP API (past the GIL: parallel
associations and requests). Each worker builds its own :class:`~dicomflow.runtime.Application`; what they
share lives in the index and on disk.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import multiprocessing
import os
import signal
import socket
import threading
import time
from collections.abc import Callable
from multiprocessing.process import BaseProcess

LOGGER = logging.getLogger(__name__)
DRAIN_SECONDS = 10.0
"""How long a stopping worker may take to finish what it serves before it is killed (plus 5 s)."""
_PR_SET_PDEATHSIG = 1


class WorkerPool:
    """Runs and supervises ``count`` processes of ``target(listening)`` on a shared listening socket.

    Parameters
    ----------
    name
        What the workers are (``dimse``, ``http``): names the processes and the log lines.
    target
        Body of one worker, given the listening socket; it returns after SIGTERM, once drained.
    listening
        The bound, listening socket (see :func:`~dicomflow.serve.listen`); closed by :meth:`stop`.
    count
        How many workers.
    """

    def __init__(
        self, name: str, target: Callable[[socket.socket], None], listening: socket.socket, count: int
    ) -> None:
        self.name = name
        self.target = target
        self.listening = listening
        self.count = count
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
        """Ask every worker to finish what it serves and exit; kill those that do not in time."""
        self._stopping.set()
        for process in self._processes:
            if process.is_alive() and process.pid:
                os.kill(process.pid, signal.SIGTERM)
        deadline = time.monotonic() + DRAIN_SECONDS + 5
        for process in self._processes:
            process.join(max(0.1, deadline - time.monotonic()))
            if process.is_alive():
                process.kill()
                process.join(5)
        self.listening.close()

    def _spawn(self, index: int) -> BaseProcess:
        process = self._context.Process(
            target=self.target, args=(self.listening,), name=f"dicomflow-{self.name}-{index}", daemon=True
        )
        process.start()
        return process

    def _watch(self) -> None:
        while not self._stopping.wait(1.0):
            for i, process in enumerate(self._processes):
                # exit code 0 only follows a SIGTERM (a stop under way, e.g. to the whole process group)
                if not process.is_alive() and process.exitcode != 0 and not self._stopping.is_set():
                    LOGGER.error(
                        "%s process %s exited with %s; restarting", self.name, process.name, process.exitcode
                    )
                    self._processes[i] = self._spawn(i)


def die_with_parent() -> None:
    """Ask Linux to send us SIGTERM when the supervisor dies, even by SIGKILL (no orphan workers)."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):
        LOGGER.warning("cannot tie worker process to its supervisor (prctl unavailable)")
    if os.getppid() == 1:  # the supervisor died before prctl took effect
        os.kill(os.getpid(), signal.SIGTERM)
