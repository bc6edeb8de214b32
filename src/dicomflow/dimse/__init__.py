"""DICOM network adapters: the receiver (C-ECHO, C-STORE SCP) and the sender (C-STORE SCU)."""

from dicomflow.dimse._receiver import TRANSFER_SYNTAXES, Receiver
from dicomflow.dimse._scu import Outgoing, SendReport, describe, send
from dicomflow.dimse._setup import configure

__all__ = [
    "TRANSFER_SYNTAXES",
    "Outgoing",
    "Receiver",
    "SendReport",
    "configure",
    "describe",
    "send",
]
