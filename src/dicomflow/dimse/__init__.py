"""DICOM network adapters: the receiver (C-ECHO, C-STORE SCP) and the sender (C-STORE SCU).

Only the process start-up (:mod:`~dicomflow.dimse._workers`) is imported with the package; the receiver,
the sender and :func:`configure` import pynetdicom and are imported on first use of their names, so that
a process which never speaks DICOM (an HTTP process) does not load it.
"""

import importlib
from typing import TYPE_CHECKING, Any

from dicomflow.dimse._workers import ReceiverPool, listen, worker_count

if TYPE_CHECKING:
    from dicomflow.dimse._receiver import TRANSFER_SYNTAXES, Receiver
    from dicomflow.dimse._scu import Outgoing, SendReport, describe, send
    from dicomflow.dimse._setup import configure

_ON_FIRST_USE = {
    "TRANSFER_SYNTAXES": "._receiver",
    "Receiver": "._receiver",
    "Outgoing": "._scu",
    "SendReport": "._scu",
    "describe": "._scu",
    "send": "._scu",
    "configure": "._setup",
}

__all__ = [
    "TRANSFER_SYNTAXES",
    "Outgoing",
    "Receiver",
    "ReceiverPool",
    "SendReport",
    "configure",
    "describe",
    "listen",
    "send",
    "worker_count",
]


def __getattr__(name: str) -> Any:
    if name not in _ON_FIRST_USE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(_ON_FIRST_USE[name], __name__), name)
