"""DICOM network adapters: the receiver (C-ECHO, C-STORE SCP) and the sender (C-STORE SCU)."""

from dicomflow.dimse._receiver import TRANSFER_SYNTAXES, Receiver
from dicomflow.dimse._setup import configure, open_ingestor
from dicomflow.dimse._workers import ReceiverPool, listen, worker_count

__all__ = [
    "TRANSFER_SYNTAXES",
    "Receiver",
    "ReceiverPool",
    "configure",
    "listen",
    "open_ingestor",
    "worker_count",
]
