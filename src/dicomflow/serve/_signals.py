"""Waiting for the signal that stops a server."""

from __future__ import annotations

import signal
import threading
from types import FrameType


def wait_for_signal() -> int:
    """Block until SIGTERM or SIGINT arrives; return its number (a second one while stopping is ignored)."""
    received: list[int] = []
    stop = threading.Event()

    def _stop(signum: int, _frame: FrameType | None) -> None:
        received.append(signum)
        stop.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    stop.wait()
    return received[0]
