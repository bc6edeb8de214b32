"""The PDU bound of pynetdicom's own reading (``dimse/_framing.py``), over a real socket pair."""

from __future__ import annotations

import logging
import queue
import socket
import struct
from collections.abc import Iterator
from types import SimpleNamespace

import pytest
from pynetdicom.transport import AssociationSocket

from dicomflow.dimse._framing import BoundedSocket, PduBound

KIB = 1 << 10
MIB = 1 << 20
A_ABORT = bytes.fromhex("07000000000400000200")  # service provider, reason not specified


def pdu(pdu_type: int, body: bytes) -> bytes:
    return struct.pack(">BBL", pdu_type, 0, len(body)) + body


def header(pdu_type: int, length: int) -> bytes:
    return struct.pack(">BBL", pdu_type, 0, length)


@pytest.mark.parametrize(
    ("max_pdu_size", "pdu_type", "length", "refused"),
    [
        (64 * KIB, 0x04, 64 * KIB, None),
        (64 * KIB, 0x04, 64 * KIB + 1, "P-DATA-TF PDU of 65537 bytes, more than the 65536 accepted"),
        (64 * KIB, 0x01, MIB, None),  # other PDUs: at most 1 MiB even with a smaller bound
        (64 * KIB, 0x01, MIB + 1, "PDU 0x01 of 1048577 bytes, more than the 1048576"),
        (4 * MIB, 0x05, 4 * MIB, None),  # ... or the bound if larger
        (4 * MIB, 0x07, 4 * MIB + 1, "PDU 0x07 of 4194305 bytes, more than the 4194304"),
        (0, 0x04, 0xFFFFFFFF, None),  # 0: P-DATA-TF unbounded
        (0, 0x02, MIB + 1, "PDU 0x02 of 1048577 bytes, more than the 1048576"),
        (MIB, 0x00, 4, "unknown PDU type 0x00"),
        (MIB, 0x09, 4, "unknown PDU type 0x09"),
    ],
)
def test_pdu_bound(max_pdu_size: int, pdu_type: int, length: int, refused: str | None) -> None:
    assert PduBound(max_pdu_size).refusal(pdu_type, length) == refused


@pytest.fixture
def pair() -> Iterator[tuple[BoundedSocket, socket.socket]]:
    """The receiver's end (bounded at 64 KiB) and the peer's end of a connection."""
    ours, peer = socket.socketpair()
    bounded = BoundedSocket.wrap(ours, PduBound(64 * KIB), "peer.example")
    bounded.settimeout(5)
    peer.settimeout(5)
    with bounded, peer:
        yield bounded, peer


def receive(sock: socket.socket, size: int, step: int) -> bytes:
    """``size`` bytes read ``step`` at a time (fewer at the end or if the connection ends)."""
    data = b""
    while len(data) < size:
        chunk = sock.recv(min(step, size - len(data)))
        if not chunk:
            break
        data += chunk
    return data


@pytest.mark.parametrize("step", [1, 5, 6, 4096, 1 << 17])
def test_pdus_within_the_bound_pass_unchanged_however_they_are_read(
    pair: tuple[BoundedSocket, socket.socket], step: int
) -> None:
    ours, peer = pair
    stream = pdu(0x01, bytes(300)) + pdu(0x04, bytes(range(256)) * 256) + pdu(0x05, bytes(4)) + pdu(0x04, b"")
    peer.sendall(stream)
    assert receive(ours, len(stream), step) == stream


def test_recv_into_is_bounded_too(pair: tuple[BoundedSocket, socket.socket]) -> None:
    ours, peer = pair
    first = pdu(0x04, bytes(100))
    peer.sendall(first + header(0x04, 64 * KIB + 1))
    buffer = bytearray(len(first) + 6)
    assert ours.recv_into(buffer) == len(first)
    assert buffer[: len(first)] == first
    assert ours.recv_into(buffer) == 0


@pytest.mark.parametrize("split", [0, 1, 5])
def test_a_header_over_the_bound_is_answered_with_an_a_abort_and_ends_the_stream(
    pair: tuple[BoundedSocket, socket.socket], caplog: pytest.LogCaptureFixture, split: int
) -> None:
    """Whether the header comes in one read or several: the reader gets no byte of it, the peer an
    A-ABORT, and the reader an end of stream from then on."""
    ours, peer = pair
    before = pdu(0x04, bytes(10))
    refused = header(0x04, 0xFFFFFFFF) + bytes(1000)
    peer.sendall(before + refused[:split])
    with caplog.at_level(logging.ERROR, logger="dicomflow.dimse._framing"):
        assert receive(ours, len(before), 4096) == before
        if split:
            assert ours.recv(6) == refused[:split]  # the start of a header, not yet known to be too large
        peer.sendall(refused[split:])
        assert ours.recv(6 - split) == b""
    assert peer.recv(100) == A_ABORT
    assert ours.recv(4096) == b""  # what follows is never read as PDUs
    assert [r.getMessage() for r in caplog.records] == [
        "invalid PDU from peer.example: P-DATA-TF PDU of 4294967295 bytes, more than the 65536 accepted; "
        "aborting"
    ]


def test_an_unknown_pdu_type_is_refused(pair: tuple[BoundedSocket, socket.socket]) -> None:
    ours, peer = pair
    peer.sendall(pdu(0x09, bytes(4)))
    assert ours.recv(6) == b""
    assert peer.recv(100) == A_ABORT


def test_pynetdicom_reads_through_the_bound(pair: tuple[BoundedSocket, socket.socket]) -> None:
    """pynetdicom's ``AssociationSocket`` over the bounded socket: a PDU within the bound is read whole, the
    header of one over it comes short (what the DUL takes for a closed connection, Evt17)."""
    ours, peer = pair
    dul = SimpleNamespace(event_queue=queue.Queue())
    transport = AssociationSocket(SimpleNamespace(dul=dul), client_socket=ours)  # type: ignore[arg-type]  # a stand-in association: the transport only uses its DUL's event queue
    body = bytes(range(256)) * 200
    peer.sendall(pdu(0x04, body) + header(0x04, 64 * KIB + 1) + bytes(100))
    assert transport.recv(6) == header(0x04, len(body))
    assert transport.recv(len(body)) == body
    assert transport.recv(6) == b""
    assert peer.recv(100) == A_ABORT
