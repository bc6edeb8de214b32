"""Waiting for the signal that stops a server or one of its processes."""

from __future__ import annotations

import signal
import time
from types import FrameType


class StopSignals:
    """Record the signals that stop this process from now on; :meth:`wait` blocks until one came.

    The handler only records the signal: it takes no lock. A handler runs on the main thread between two
    bytecodes, so one that set a ``threading.Event`` (taking the event's lock) and was interrupted there by
    a second signal dead-locked the process: the second handler waited for the lock its own thread held.
    """

    POLL = 0.05
    """Seconds between two looks at what was received (a signal does not cut a sleep short)."""

    def __init__(self, *signums: signal.Signals) -> None:
        self.received: list[int] = []
        for signum in signums:
            signal.signal(signum, self._record)

    def _record(self, signum: int, _frame: FrameType | None) -> None:
        self.received.append(signum)

    def wait(self) -> int:
        """Block until a signal came; return the first one's number."""
        while not self.received:
            time.sleep(self.POLL)
        return self.received[0]


def wait_for_signal() -> int:
    """Block until SIGTERM or SIGINT arrives; return its number (a second one while stopping is ignored)."""
    return StopSignals(signal.SIGTERM, signal.SIGINT).wait()
