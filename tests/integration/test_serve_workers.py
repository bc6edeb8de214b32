"""The worker bodies of ``dicomflow serve``, forked as the supervisor forks them, on a loopback socket."""

from __future__ import annotations

import multiprocessing
import os
import signal
import socket
import time
from pathlib import Path

import httpx
import pytest

from dicomflow.config import Settings
from dicomflow.runtime import Application, open_application
from dicomflow.serve._http import run_http_worker


@pytest.mark.parametrize("fast_paths", [True, False])
def test_an_http_worker_stopped_by_sigterm_closes_its_application_and_exits_0(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fast_paths: bool
) -> None:
    """uvicorn raises the SIGTERM it caught again once it has stopped: the worker must still close its
    application (the upload ingest syncs what is pending) and exit 0, which the supervisor reads as a stop."""
    values = {
        "data_dir": tmp_path / "data",
        "index": {"url": ""},
        "storage": {"root": None, "fsync": False},
        "performance": {"fast_paths": fast_paths},
    }
    settings = Settings.model_validate(values)
    open_application(settings).close()  # migrated, as the supervisor leaves it
    closed = tmp_path / "closed"
    close = Application.close

    def recording_close(application: Application) -> None:
        close(application)
        closed.touch()

    monkeypatch.setattr(Application, "close", recording_close)  # inherited by the forked worker
    listening = socket.create_server(("127.0.0.1", 0))
    listening.setblocking(False)
    port = listening.getsockname()[1]
    worker = multiprocessing.get_context("fork").Process(target=run_http_worker, args=(settings, listening))
    previous = signal.signal(signal.SIGTERM, signal.SIG_DFL)  # as the supervisor forks it
    try:
        worker.start()
    finally:
        signal.signal(signal.SIGTERM, previous)
    try:
        deadline = time.monotonic() + 30
        while not _healthy(port):
            assert time.monotonic() < deadline and worker.is_alive()
            time.sleep(0.05)
        assert worker.pid is not None
        os.kill(worker.pid, signal.SIGTERM)
        worker.join(20)
    finally:
        if worker.is_alive():
            worker.kill()
        listening.close()

    assert worker.exitcode == 0
    assert closed.exists()


def _healthy(port: int) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/health", timeout=2, trust_env=False).is_success
    except httpx.HTTPError:
        return False
