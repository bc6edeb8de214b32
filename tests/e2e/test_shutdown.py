"""Stopping ``dicomflow serve``: SIGTERM to the supervisor, or to the whole process group (what a terminal's
Ctrl-C, ``kill -TERM -<pgid>`` and systemd's default KillMode=control-group do), ends every process."""

from __future__ import annotations

import os
import signal
import socket
import time
from collections.abc import Callable

import pytest

from factories import DicomflowServer
from waiting import wait_until

pytestmark = pytest.mark.e2e

STOP_SECONDS = 20.0


def group_alive(server: DicomflowServer) -> bool:
    """Whether any process of the server's group is left (the supervisor is reaped first: a zombie counts)."""
    assert server.process is not None
    server.process.poll()
    try:
        os.killpg(server.process.pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_sigterm_to_the_supervisor_stops_every_process(make_server: Callable[..., DicomflowServer]) -> None:
    server = make_server()
    assert server.process is not None

    server.process.send_signal(signal.SIGTERM)

    wait_until(lambda: not group_alive(server), STOP_SECONDS, message="processes left after SIGTERM")
    assert "restarting" not in server.log()


def test_sigterm_to_the_process_group_restarts_no_receiver(
    make_server: Callable[..., DicomflowServer],
) -> None:
    """The receivers get the group's SIGTERM too and exit at once, while the HTTP server still finishes
    a request; the supervisor must not take their exit for a crash and fork new ones."""
    server = make_server()
    assert server.process is not None
    slow = socket.create_connection(("127.0.0.1", server.http_port))
    head = (
        "POST /api/v1/projects HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"Authorization: Bearer {server.token}\r\n"
        "Content-Type: application/json\r\nContent-Length: 40\r\n\r\n"
    )
    slow.sendall(head.encode() + b'{"label": ')  # the body never completes while we wait
    time.sleep(0.3)

    os.killpg(server.process.pid, signal.SIGTERM)
    time.sleep(2.5)  # longer than the supervisor's watch interval
    slow.close()

    wait_until(lambda: not group_alive(server), STOP_SECONDS, message="processes left after SIGTERM")
    assert "restarting" not in server.log(), "a receiver was restarted during shutdown"
