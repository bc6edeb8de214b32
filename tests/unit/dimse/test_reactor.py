"""The reactor clock: idle polls of registered pynetdicom threads become event waits; the rest passes."""

from __future__ import annotations

import threading
import time

from dicomflow.dimse._reactor import ReactorClock


def test_unregistered_sleeps_pass_through() -> None:
    clock = ReactorClock()
    start = time.monotonic()
    clock.sleep(0.02)
    assert time.monotonic() - start >= 0.02
    assert clock.monotonic() > 0  # the rest of the time module is there too


def test_registered_idle_poll_calls_the_wait() -> None:
    clock = ReactorClock()
    calls: list[float] = []
    clock.register(threading.current_thread(), calls.append)
    clock.sleep(0.001)  # pynetdicom's idle poll
    clock.sleep(0.01)  # any other sleep is a real sleep
    assert calls == [0.001]
