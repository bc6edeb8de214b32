"""What the benchmark scripts share: report lines on stdout and free loopback ports (run them as
``python bench/<script>.py``: this folder is then on ``sys.path``)."""

from __future__ import annotations

import socket
import sys


def out(text: str = "") -> None:
    """Write a line of the report to stdout, at once."""
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])
