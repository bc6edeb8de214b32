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


def test_a_primitive_for_the_association_wakes_its_reactor() -> None:
    """A release request from the peer is seen at once, not after the idle wait bound."""
    import queue
    from types import SimpleNamespace

    from dicomflow.dimse._reactor import make_event_driven, release

    clock = ReactorClock()
    dul = threading.Thread()
    assoc = threading.Thread()
    assoc.dul = dul  # type: ignore[attr-defined]
    assoc.dimse = SimpleNamespace(msg_queue=queue.Queue())  # type: ignore[attr-defined]
    dul.socket = None  # type: ignore[attr-defined]
    make_event_driven(clock, assoc)
    idle_wait = clock._waits[assoc]  # what the association's reactor runs instead of sleep(0.001)
    waits: list[float] = []

    def reactor() -> None:
        start = time.monotonic()
        idle_wait(0.001)
        waits.append(time.monotonic() - start)

    waiter = threading.Thread(target=reactor)
    waiter.start()
    time.sleep(0.005)
    dul.to_user_queue.put("A-RELEASE")  # type: ignore[attr-defined]
    waiter.join()
    release(assoc)

    assert waits and waits[0] < 0.015
