"""Who may hold the receiver's threads: associations and not-yet-associated connections, bounded apart.

pynetdicom counts every open connection as an association, so connections that never send an
A-ASSOCIATE-RQ (a port scanner, a client that sends one byte and stalls) filled its bound and every real
association was rejected ("local limit exceeded"), while the ACSE timer could not fire in a thread blocked
in ``recv``. Here:

- a connection is *pending* from accept to its A-ASSOCIATE-RQ; pending connections have their own bound,
  and when it is full the oldest is hung up to make room (a real requestor sends its request within
  milliseconds, a stalled one is the oldest);
- a pending connection is hung up once the ACSE timeout has passed since it was accepted, whatever its
  thread is doing (the acceptor's loop checks every half second);
- only requested associations count against the association bound, checked on ``EVT_REQUESTED``.

Hanging up shuts the socket down, which wakes a thread blocked in ``recv`` on it, and wakes the
association's thread that waits for the request.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
import time
from typing import Any


class Admission:
    """The bounds of one receiving process.

    Parameters
    ----------
    max_associations
        Associations (requested, not yet ended) at once.
    max_pending
        Connections accepted but not yet requested an association.
    acse_timeout
        Seconds a connection may stay pending.
    """

    def __init__(self, max_associations: int, max_pending: int, acse_timeout: float) -> None:
        self.max_associations = max_associations
        self.max_pending = max_pending
        self.acse_timeout = acse_timeout
        self._lock = threading.Lock()
        self._pending: dict[Any, tuple[float, socket.socket | None]] = {}  # in order of arrival
        self._associated: set[Any] = set()

    @property
    def associations(self) -> int:
        """Associations that count against the bound now."""
        with self._lock:
            self._associated = {assoc for assoc in self._associated if assoc.is_alive()}
            return len(self._associated)

    @property
    def connections(self) -> int:
        """Connections held now, pending or associated (how busy this process is)."""
        with self._lock:
            return len(self._pending) + len(self._associated)

    def connected(self, assoc: Any) -> None:
        """A connection was accepted (``EVT_CONN_OPEN``); hang up the oldest pending ones if full."""
        transport = assoc.dul.socket
        with self._lock:
            evicted = []
            while len(self._pending) >= self.max_pending:
                oldest = next(iter(self._pending))
                evicted.append((oldest, self._pending.pop(oldest)[1]))
            self._pending[assoc] = (time.monotonic(), transport.socket if transport else None)
        for old, sock in evicted:
            _hang_up(old, sock)

    def requested(self, assoc: Any) -> bool:
        """An A-ASSOCIATE-RQ arrived (``EVT_REQUESTED``): whether it fits in the association bound."""
        with self._lock:
            self._pending.pop(assoc, None)
            self._associated = {other for other in self._associated if other.is_alive()}
            if len(self._associated) >= self.max_associations:
                return False
            self._associated.add(assoc)
            return True

    def closed(self, assoc: Any) -> None:
        """The connection closed (``EVT_CONN_CLOSE``)."""
        with self._lock:
            was_pending = self._pending.pop(assoc, None) is not None
            self._associated.discard(assoc)
        if was_pending:
            _wake(assoc)

    def reap(self) -> None:
        """Hang up the connections pending for longer than the ACSE timeout."""
        deadline = time.monotonic() - self.acse_timeout
        with self._lock:
            expired = [(assoc, sock) for assoc, (since, sock) in self._pending.items() if since < deadline]
            for assoc, _sock in expired:
                del self._pending[assoc]
        for assoc, sock in expired:
            _hang_up(assoc, sock)


def set_timeouts(sock: socket.socket, seconds: float) -> None:
    """Kernel timeouts on each ``recv`` and ``send`` of a blocking socket (no extra system call per read,
    unlike ``settimeout``); one that expires raises ``BlockingIOError``, an ``OSError``."""
    whole = int(seconds)
    value = struct.pack("ll", whole, int((seconds - whole) * 1_000_000))
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, value)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, value)


def _hang_up(assoc: Any, sock: socket.socket | None) -> None:
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)  # the DUL thread sees the end and closes the socket itself
    _wake(assoc)


def _wake(assoc: Any) -> None:
    """End the wait of the association's thread for an A-ASSOCIATE-RQ (``None`` = none came)."""
    assoc.dul.to_user_queue.put(None)
