"""The reactor clock: idle polls of registered pynetdicom threads become event waits; the rest passes."""

from __future__ import annotations

import threading
import time

import pytest

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


def test_a_primitive_for_the_association_wakes_its_reactor(monkeypatch: pytest.MonkeyPatch) -> None:
    """A release request from the peer is seen at once, not after the idle wait bound (made a minute here,
    so that only the request can end the wait; how soon: ``bench/timings.py reactor``)."""
    import queue
    from types import SimpleNamespace

    from dicomflow.dimse import _reactor
    from dicomflow.dimse._reactor import make_event_driven, release

    monkeypatch.setattr(_reactor, "_IDLE_WAIT", 60.0)
    clock = ReactorClock()
    dul = threading.Thread()
    assoc = threading.Thread()
    assoc.dul = dul  # type: ignore[attr-defined]  # a fake association, attributes set by hand
    assoc.dimse = SimpleNamespace(msg_queue=queue.Queue())  # type: ignore[attr-defined]  # a fake association, attributes set by hand
    dul.socket = None  # type: ignore[attr-defined]  # a fake association, attributes set by hand
    make_event_driven(clock, assoc)
    idle_wait = clock._waits[assoc]  # what the association's reactor runs instead of sleep(0.001)

    waiter = threading.Thread(target=idle_wait, args=(0.001,), daemon=True)
    waiter.start()
    time.sleep(0.005)
    dul.to_user_queue.put("A-RELEASE")  # type: ignore[attr-defined]  # a fake association, attributes set by hand
    waiter.join(timeout=10)

    assert not waiter.is_alive(), "the reactor slept through the release request"
    release(assoc)
