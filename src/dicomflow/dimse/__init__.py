"""DICOM network adapters: the receiver (C-ECHO, C-STORE SCP) and the sender (C-STORE SCU)."""

from dicomflow.dimse._receiver import TRANSFER_SYNTAXES, Receiver
from dicomflow.dimse._scu import Outgoing, SendReport, describe, send
from dicomflow.dimse._setup import configure
from dicomflow.dimse._workers import ReceiverPool, listen, worker_count

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
