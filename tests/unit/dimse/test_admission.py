"""Admission: pending connections bounded apart from associations, oldest hung up first, ACSE deadline."""

from __future__ import annotations

import queue
import socket
import time
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import pytest

from dicomflow.dimse._admission import Admission


class Connection:
    """What Admission reads of a pynetdicom association: its thread, socket and queue to the user."""

    def __init__(self) -> None:
        self.ours, self.peer = socket.socketpair()
        self.alive = True
        self.dul = SimpleNamespace(socket=SimpleNamespace(socket=self.ours), to_user_queue=queue.Queue())

    def is_alive(self) -> bool:
        return self.alive

    @property
    def hung_up(self) -> bool:
        """Whether our side was shut down (the peer reads the end) and the waiting thread woken."""
        self.peer.settimeout(1)
        return self.peer.recv(1) == b"" and self.dul.to_user_queue.get_nowait() is None

    def close(self) -> None:
        self.ours.close()
        self.peer.close()


@pytest.fixture
def connections() -> Iterator[list[Connection]]:
    made = [Connection() for _ in range(6)]
    yield made
    for connection in made:
        connection.close()


def test_a_full_pending_bound_hangs_up_the_oldest(connections: list[Any]) -> None:
    admission = Admission(max_associations=2, max_pending=2, acse_timeout=30)
    first, second, third = connections[:3]
    admission.connected(first)
    admission.connected(second)
    admission.connected(third)

    assert first.hung_up
    assert second.dul.to_user_queue.empty() and third.dul.to_user_queue.empty()
    assert admission.connections == 2


def test_only_requested_associations_count_against_their_bound(connections: list[Any]) -> None:
    admission = Admission(max_associations=2, max_pending=10, acse_timeout=30)
    for connection in connections:
        admission.connected(connection)

    assert [admission.requested(c) for c in connections[:3]] == [True, True, False]
    assert admission.associations == 2
    connections[0].alive = False  # its thread ended
    assert admission.requested(connections[3])
    admission.closed(connections[1])
    assert admission.associations == 1


def test_pending_connections_are_hung_up_after_the_acse_timeout(connections: list[Any]) -> None:
    admission = Admission(max_associations=2, max_pending=10, acse_timeout=0.05)
    old, requested = connections[:2]
    admission.connected(old)
    admission.connected(requested)
    admission.requested(requested)
    time.sleep(0.1)

    admission.reap()

    assert old.hung_up
    assert requested.dul.to_user_queue.empty()
    assert admission.connections == 1
