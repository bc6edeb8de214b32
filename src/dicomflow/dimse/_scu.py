"""C-STORE SCU: send files to any DICOM node over one or more associations, stored bytes unchanged."""

from __future__ import annotations

import socket
import threading
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydicom import dcmread
from pydicom.errors import InvalidDicomError
from pynetdicom import AE, evt
from pynetdicom import _config as pynetdicom_config
from pynetdicom.presentation import PresentationContext, build_context
from pynetdicom.status import code_to_category

from dicomflow.dimse._status import REFUSED_AS_WARNING

_MAX_CONTEXTS = 128


@dataclass(frozen=True, slots=True)
class Outgoing:
    """One file to send, with what the association must offer for it."""

    path: Path
    sop_class_uid: str
    transfer_syntax_uid: str


@dataclass
class SendReport:
    """What happened to every file: counts per status name, the failures and the warnings in detail.

    A file the peer answered with a warning status (PS3.4 B.2.3: 0xB000, 0xB006; PS3.7 C: 0x0001, 0x0107,
    0x0116) counts as ``warning``, not as a failure: the peer has taken it. 0xB007 is the exception: a
    warning in PS3.4, it is what DicomNode and ``dicomflow node`` answer for an instance they refused and did
    not keep, so it counts as a failure (nothing a sender believes sent may be silently dropped).
    """

    counts: Counter[str] = field(default_factory=Counter)
    failures: list[tuple[Path, str]] = field(default_factory=list)
    warnings: list[tuple[Path, str]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, path: Path, status: str, detail: str = "") -> None:
        """Record the outcome of one file (thread-safe)."""
        with self.lock:
            self.counts[status] += 1
            if status == "warning":
                self.warnings.append((path, detail))
            elif status != "success":
                self.failures.append((path, f"{status}: {detail}" if detail else status))

    @property
    def ok(self) -> bool:
        """Whether every file was stored."""
        return not self.failures


def describe(path: Path) -> Outgoing | None:
    """Read what is needed to send ``path`` (file meta and SOP Class); ``None`` if it is not DICOM."""
    try:
        ds = dcmread(path, stop_before_pixels=True, specific_tags=["SOPClassUID"])
    except (InvalidDicomError, OSError, ValueError, EOFError, KeyError):
        return None
    meta = ds.file_meta
    sop_class = str(ds.get("SOPClassUID") or meta.get("MediaStorageSOPClassUID") or "")
    syntax = str(meta.get("TransferSyntaxUID") or "")
    if not sop_class or not syntax:
        return None
    return Outgoing(path, sop_class, syntax)


def send(
    items: Sequence[Outgoing],
    host: str,
    port: int,
    *,
    calling_ae: str,
    called_ae: str,
    associations: int = 1,
    on_done: Callable[[Path, str], None] | None = None,
) -> SendReport:
    """Send ``items`` with C-STORE over ``associations`` parallel associations.

    Parameters
    ----------
    items
        The files, as described by :func:`describe`.
    host, port, calling_ae, called_ae
        The peer and the AE titles of the association.
    associations
        How many associations to open at once; files are spread round-robin.
    on_done
        Called after each file with its path and status name (from several threads).
    """
    pynetdicom_config.STORE_SEND_CHUNKED_DATASET = True  # send the file's bytes as they are, without decoding
    report = SendReport()
    unreachable = probe(host, port)
    if unreachable:
        for item in items:
            report.add(item.path, "not-sent", unreachable)
            if on_done:
                on_done(item.path, "not-sent")
        return report
    parts = [list(items[i :: max(1, associations)]) for i in range(max(1, associations))]
    threads = [
        threading.Thread(
            target=_send_part, args=(part, host, port, calling_ae, called_ae, report, on_done), daemon=True
        )
        for part in parts
        if part
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return report


def _contexts(items: Sequence[Outgoing]) -> list[PresentationContext]:
    """One context per (SOP Class, transfer syntax) found: chunked sending needs the file's own syntax."""
    pairs = sorted({(item.sop_class_uid, item.transfer_syntax_uid) for item in items})
    return [build_context(sop_class, [syntax]) for sop_class, syntax in pairs][:_MAX_CONTEXTS]


def _send_part(
    items: list[Outgoing],
    host: str,
    port: int,
    calling_ae: str,
    called_ae: str,
    report: SendReport,
    on_done: Callable[[Path, str], None] | None,
) -> None:
    ae = AE(ae_title=calling_ae)
    ae.maximum_pdu_size = 0
    ae.requested_contexts = _contexts(items)
    assoc = ae.associate(host, port, ae_title=called_ae, evt_handlers=[(evt.EVT_CONN_OPEN, _no_delay)])
    if not assoc.is_established:
        peer = f"{called_ae}@{host}:{port}"
        reason = f"association rejected by {peer}" if assoc.is_rejected else f"association with {peer} failed"
        for item in items:
            report.add(item.path, "not-sent", reason)
            if on_done:
                on_done(item.path, "not-sent")
        return
    keep_responses_for_the_requester(assoc)
    try:
        for item in items:
            status = _store_one(assoc, item, report)
            if on_done:
                on_done(item.path, status)
    finally:
        if assoc.is_established:
            assoc.release()


def keep_responses_for_the_requester(assoc: Any) -> None:
    """Make the association's reactor hand back a response it took instead of dropping it.

    pynetdicom 3.0's ``send_c_store`` pauses the association's reactor thread before it sends and then
    waits for the response; but the reactor can pass its pause point just before the pause is asked for
    and still be on its way to its own ``get_msg``. Loaded (several senders in one process, the GIL taken
    away between two lines), it sometimes takes the response off the queue, logs "Received unexpected
    C-STORE service message" and drops it, and the sender waits out its DIMSE timeout. A requester serves
    no requests of its own here, so a message that is not a request goes back on the queue, where the
    waiting sender finds it. (A patch of pynetdicom's private ``_serve_request``: see the canary test.)
    """
    serve = assoc._serve_request
    queue = assoc.dimse.msg_queue

    def serve_or_hand_back(msg: Any, context_id: int) -> None:
        if msg.is_valid_request:
            serve(msg, context_id)
        else:
            queue.put((context_id, msg))

    assoc._serve_request = serve_or_hand_back


def probe(host: str, port: int) -> str:
    """Why a TCP connection to the peer fails, or "" when it opens.

    pynetdicom leaves its socket unclosed when the connection is refused; probing first keeps that leak
    out of long-running senders (the export outbox retries a node that is down for hours).
    """
    try:
        with socket.create_connection((host, port), timeout=10):
            return ""
    except OSError as exc:
        return f"cannot connect to {host}:{port}: {exc.strerror or exc}"


def _no_delay(event: Any) -> None:
    """Nagle's algorithm would hold every small PDU ~40 ms on loopback."""
    event.assoc.dul.socket.socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def _store_one(assoc: object, item: Outgoing, report: SendReport) -> str:
    try:
        response = assoc.send_c_store(item.path)  # type: ignore[attr-defined]  # a pynetdicom Association (untyped)
    except (ValueError, RuntimeError, OSError) as exc:
        report.add(item.path, "not-sent", str(exc))
        return "not-sent"
    if not response:
        report.add(item.path, "no-response", "connection lost or timed out")
        return "no-response"
    code = int(response.Status)
    comment = str(response.get("ErrorComment", ""))
    category = code_to_category(code)
    if category == "Success":
        report.add(item.path, "success")
        return "success"
    if category == "Warning" and code != REFUSED_AS_WARNING:
        report.add(item.path, "warning", f"0x{code:04X}" + (f" {comment}" if comment else ""))
        return "warning"
    name = f"failure 0x{code:04X}"
    report.add(item.path, name, comment)
    return name
