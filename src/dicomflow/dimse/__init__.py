"""DICOM network adapters: the receiver (C-ECHO, C-STORE SCP) and the sender (C-STORE SCU).

The receiver, the sender and :func:`configure` import pynetdicom, so they are imported on first use of
their names: a process that never speaks DICOM (an HTTP process, the outbox before its first export) does
not load it.
"""

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from dicomflow.dimse._node import NodeReceiver
    from dicomflow.dimse._receiver import TRANSFER_SYNTAXES, Receiver
    from dicomflow.dimse._scu import Outgoing, SendReport, describe, probe, send
    from dicomflow.dimse._setup import configure

_ON_FIRST_USE = {
    "TRANSFER_SYNTAXES": "._receiver",
    "NodeReceiver": "._node",
    "Receiver": "._receiver",
    "Outgoing": "._scu",
    "SendReport": "._scu",
    "describe": "._scu",
    "probe": "._scu",
    "send": "._scu",
    "configure": "._setup",
}

__all__ = [
    "TRANSFER_SYNTAXES",
    "NodeReceiver",
    "Outgoing",
    "Receiver",
    "SendReport",
    "configure",
    "describe",
    "probe",
    "send",
]


def __getattr__(name: str) -> Any:
    if name not in _ON_FIRST_USE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(_ON_FIRST_USE[name], __name__), name)
