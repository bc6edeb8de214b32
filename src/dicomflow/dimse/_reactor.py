"""Event-driven waits for pynetdicom's reactors.

pynetdicom serves each association with two threads that poll: the socket reactor (DUL) and the DIMSE
reactor, each sleeping a fixed 1 ms whenever a pass found nothing to do. On a busy receiver that costs
twice: up to a millisecond of latency at each hand-over (a C-STORE crosses two), and thousands of
wake-ups per second per association that burn the CPU other associations need.

Here those idle sleeps become waits for the very event the thread is polling for:

- the DUL thread waits in ``select`` on its socket and on a wake-up socket that is written whenever a
  primitive is queued for it to send;
- the association's reactor waits on the condition of its DIMSE message queue, notified when a message is
  complete and when the DUL hands it a primitive (a release or abort request from the peer).

A wait lasts at most ``_IDLE_WAIT`` (20 ms): what no event announces (pynetdicom's kill flags, the ARTIM
and idle timers, whose timeouts are seconds) is seen that late at worst. With C-STOREs received in the DUL
thread (``_pdata.py``) the association's reactor has nothing to do while a sender streams, and waking it
every millisecond cost each association about a thousand wake-ups per second.

Only the 1 ms idle sleep of these two threads is replaced; every other sleep passes through.
"""

from __future__ import annotations

import contextlib
import queue
import select
import socket
import threading
import time
import weakref
from collections.abc import Callable
from typing import Any

_IDLE_POLL = 0.001  # the sleep pynetdicom's reactors take when idle
_IDLE_WAIT = 0.02  # the longest an idle reactor waits for its event (see the module docstring)


class ReactorClock:
    """Stands in for the ``time`` module inside ``pynetdicom.dul`` and ``pynetdicom.association``."""

    def __init__(self) -> None:
        self._waits: weakref.WeakKeyDictionary[threading.Thread, Callable[[float], None]] = (
            weakref.WeakKeyDictionary()
        )

    def register(self, thread: threading.Thread, wait: Callable[[float], None]) -> None:
        """Make ``thread``'s idle sleeps call ``wait(timeout)`` instead."""
        self._waits[thread] = wait

    def sleep(self, seconds: float) -> None:
        """``time.sleep``, except for a registered reactor's idle poll."""
        if seconds == _IDLE_POLL:
            wait = self._waits.get(threading.current_thread())
            if wait is not None:
                wait(seconds)
                return
        time.sleep(seconds)

    def __getattr__(self, name: str) -> Any:
        return getattr(time, name)


class _WakingQueue(queue.Queue[Any]):
    """The DUL's outgoing queue: every ``put`` also wakes the DUL thread."""

    def __init__(self, wake: socket.socket) -> None:
        super().__init__()
        self._wake = wake

    def put(self, item: Any, block: bool = True, timeout: float | None = None) -> None:
        super().put(item, block, timeout)
        # full: a wake-up is pending anyway; closed: the association is over
        with contextlib.suppress(OSError):
            self._wake.send(b"\x00")


class _NotifyingQueue(queue.Queue[Any]):
    """The DUL's queue to the association: every ``put`` also wakes the association's reactor."""

    def __init__(self, messages: queue.Queue[Any]) -> None:
        super().__init__()
        self._messages = messages

    def put(self, item: Any, block: bool = True, timeout: float | None = None) -> None:
        super().put(item, block, timeout)
        with self._messages.not_empty:
            self._messages.not_empty.notify_all()


def make_event_driven(clock: ReactorClock, assoc: Any) -> None:
    """Register event-driven waits for the two reactor threads of ``assoc`` (call on EVT_CONN_OPEN)."""
    dul = assoc.dul
    messages = assoc.dimse.msg_queue
    dul.to_user_queue = _NotifyingQueue(messages)
    wake_r, wake_w = socket.socketpair()
    wake_r.setblocking(False)
    wake_w.setblocking(False)
    dul.to_provider_queue = _WakingQueue(wake_w)
    assoc._dicomflow_wakeup = (wake_r, wake_w)

    def dul_wait(_timeout: float) -> None:
        transport = dul.socket
        watched = [wake_r] if transport is None or transport.socket is None else [transport.socket, wake_r]
        try:
            ready, _, _ = select.select(watched, [], [], _IDLE_WAIT)
        except (OSError, ValueError):  # the socket closed under us: plain sleep, pynetdicom notices
            time.sleep(_IDLE_POLL)
            return
        if wake_r in ready:
            with contextlib.suppress(OSError):
                wake_r.recv(4096)

    def dimse_wait(_timeout: float) -> None:
        with messages.not_empty:
            if not messages.queue and not dul.to_user_queue.queue:
                messages.not_empty.wait(_IDLE_WAIT)

    clock.register(dul, dul_wait)
    clock.register(assoc, dimse_wait)


def release(assoc: Any) -> None:
    """Close the wake-up sockets of ``assoc`` (call on EVT_CONN_CLOSE)."""
    for sock in getattr(assoc, "_dicomflow_wakeup", ()):
        sock.close()
