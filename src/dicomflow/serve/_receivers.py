"""The DICOM receiving processes of ``dicomflow serve``: one :class:`~dicomflow.dimse.Receiver` each.

Connections are balanced over the processes by the receiver's own accepting server (see
``dimse/_receiver.py``: a busy process waits a little before accepting), which needs its admission counts.
"""

from __future__ import annotations

import os
import signal
import socket
import time

from dicomflow import dimse
from dicomflow.config import Settings
from dicomflow.runtime import open_application
from dicomflow.serve._signals import StopSignals
from dicomflow.serve._supervisor import DRAIN_SECONDS, die_with_parent


def receiver_count(settings: Settings) -> int:
    """How many receiving processes to run (setting 0 = two per core, at least 2)."""
    if settings.dimse.workers > 0:
        return settings.dimse.workers
    return max(2, 2 * (os.cpu_count() or 1))


def run_receiver(settings: Settings, listening: socket.socket) -> None:
    """Body of one receiving process: its application and receiver, serving until SIGTERM, then drained."""
    die_with_parent()
    stop = StopSignals(signal.SIGTERM)  # from now on: one during start-up stops the process once it runs
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the supervisor decides when to stop
    dimse.configure(settings)  # pynetdicom is imported here, after the fork: HTTP workers never load it
    application = open_application(
        settings, migrate_index=False
    )  # migrated already; never loads report types
    workers = receiver_count(settings)
    receiver = dimse.Receiver(
        application,
        max_associations=-(-settings.dimse.max_associations // workers),  # ceil: the bound holds overall
        max_pending_connections=-(-settings.dimse.max_pending_connections // workers),
    )
    server = receiver.serve(listening)
    stop.wait()
    server.shutdown()
    deadline = time.monotonic() + DRAIN_SECONDS
    while server.active_associations and time.monotonic() < deadline:
        time.sleep(0.05)
    application.close()
