"""A C-STORE SCU for the end-to-end tests, built on pynetdicom, that sends a file's data set bytes unchanged.

pynetdicom's "chunked" mode reads only the file meta of a file (for the SOP Class, SOP Instance UID and
transfer syntax of the request) and streams the bytes after it as they are, so a test can send truncated,
garbled or otherwise invalid data sets and read the status the receiver answers with.
"""

from __future__ import annotations

import socket
import struct
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydicom.dataset import Dataset
from pynetdicom import AE, evt
from pynetdicom import _config as pynetdicom_config
from pynetdicom.association import Association
from pynetdicom.presentation import build_context

from dicomflow.dimse._scu import keep_responses_for_the_requester

CALLING_AE = "E2E-SCU"


@dataclass(frozen=True)
class Rejection:
    """An A-ASSOCIATE-RJ as received: result, source and reason (diagnostic)."""

    result: int
    source: int
    reason: int


NO_ANSWER = Rejection(0, 0, 0)
"""What :func:`try_associate` returns when the connection ended with neither A-ASSOCIATE-AC nor -RJ."""


@dataclass(frozen=True)
class StoreStatus:
    """A C-STORE response: the status and its ErrorComment ("" when none)."""

    status: int
    comment: str

    @classmethod
    def of(cls, response: Dataset) -> StoreStatus:
        if "Status" not in response:
            raise AssertionError("no C-STORE response (connection lost or timed out)")
        return cls(int(response.Status), str(response.get("ErrorComment", "")))


def part10(meta: Sequence[tuple[int, str]], dataset: bytes) -> bytes:
    """Part 10 bytes from file meta elements ``(element, UID)`` of group 0002 and raw data set bytes.

    Written by hand so that any value (an invalid UID too) can go into the file meta.
    """
    body = struct.pack("<HH", 2, 1) + b"OB\x00\x00" + struct.pack("<I", 2) + b"\x00\x01"
    for element, value in meta:
        raw = value.encode("ascii")
        raw += b"\x00" * (len(raw) % 2)
        body += struct.pack("<HH", 2, element) + b"UI" + struct.pack("<H", len(raw)) + raw
    group_length = struct.pack("<HH", 2, 0) + b"UL" + struct.pack("<HI", 4, len(body))
    return b"\x00" * 128 + b"DICM" + group_length + body + dataset


def crafted_file(
    folder: Path, name: str, sop_class: str, sop_instance: str, transfer_syntax: str, dataset: bytes
) -> Path:
    """A file whose meta names the given UIDs and whose data set is ``dataset``, byte for byte."""
    path = folder / name
    path.write_bytes(part10([(2, sop_class), (3, sop_instance), (0x10, transfer_syntax)], dataset))
    return path


@contextmanager
def chunked() -> Iterator[None]:
    """pynetdicom sends files given by path as their raw data set bytes (process-wide flag, restored)."""
    previous = pynetdicom_config.STORE_SEND_CHUNKED_DATASET
    pynetdicom_config.STORE_SEND_CHUNKED_DATASET = True
    try:
        yield
    finally:
        pynetdicom_config.STORE_SEND_CHUNKED_DATASET = previous


@contextmanager
def association(
    port: int,
    contexts: Sequence[tuple[str, str]],
    *,
    called_ae: str = "DICOMFLOW",
    calling_ae: str = CALLING_AE,
    timeout: float = 30,
) -> Iterator[Association]:
    """An established association proposing one context per ``(SOP Class, transfer syntax)``."""
    ae = AE(ae_title=calling_ae)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = timeout
    ae.requested_contexts = [
        build_context(sop_class, [syntax]) for sop_class, syntax in dict.fromkeys(contexts)
    ]
    assoc = ae.associate("127.0.0.1", port, ae_title=called_ae)
    if not assoc.is_established:
        raise AssertionError(f"association to {called_ae} not established (rejected: {assoc.is_rejected})")
    keep_responses_for_the_requester(
        assoc
    )  # or, loaded, a response is sometimes lost to pynetdicom's reactor
    # Without TCP_NODELAY each C-STORE waits ~40 ms for a delayed ACK (Nagle): pynetdicom writes a request
    # in several small pieces.
    transport = assoc.dul.socket
    assert transport is not None and transport.socket is not None
    raw = transport.socket
    raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        yield assoc
    finally:
        if assoc.is_established:
            assoc.release()
        ae.shutdown()
        raw.close()  # pynetdicom leaves it open when the peer vanished


def store_files(
    port: int,
    paths: Sequence[Path],
    contexts: Sequence[tuple[str, str]],
    *,
    called_ae: str = "DICOMFLOW",
    calling_ae: str = CALLING_AE,
) -> list[StoreStatus]:
    """Send the files over one association (their data sets unchanged) and return each response."""
    with chunked(), association(port, contexts, called_ae=called_ae, calling_ae=calling_ae) as assoc:
        return [StoreStatus.of(assoc.send_c_store(path)) for path in paths]


def store_file(port: int, path: Path, sop_class: str, transfer_syntax: str, **ae_titles: str) -> StoreStatus:
    """Send one file (see :func:`store_files`)."""
    return store_files(port, [path], [(sop_class, transfer_syntax)], **ae_titles)[0]


def try_associate(port: int, called_ae: str, calling_ae: str = CALLING_AE) -> Rejection | None:
    """Request an association (C-ECHO context): ``None`` if accepted, else the rejection received
    (:data:`NO_ANSWER` if the connection closed without any)."""
    received: list[Any] = []

    def on_acse_recv(event: Any) -> None:
        received.append(event.primitive)

    ae = AE(ae_title=calling_ae)
    ae.acse_timeout = ae.network_timeout = 30
    ae.add_requested_context("1.2.840.10008.1.1")
    assoc = ae.associate(
        "127.0.0.1", port, ae_title=called_ae, evt_handlers=[(evt.EVT_ACSE_RECV, on_acse_recv)]
    )
    try:
        if assoc.is_established:
            return None
        replies = [p for p in received if getattr(p, "result", None) in (1, 2)]
        if not assoc.is_rejected or not replies:
            return NO_ANSWER
        return Rejection(int(replies[0].result), int(replies[0].result_source), int(replies[0].diagnostic))
    finally:
        if assoc.is_established:
            assoc.release()
        ae.shutdown()
