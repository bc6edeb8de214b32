"""Process-wide set-up of pynetdicom and pydicom, and the ingest stack of one process."""

from __future__ import annotations

import logging

import pydicom.config
import pynetdicom.association
import pynetdicom.dul
from pynetdicom import _config as pynetdicom_config

from dicomflow.config import Settings
from dicomflow.dimse._reactor import ReactorClock
from dicomflow.index import create_index_engine
from dicomflow.ingest import Ingestor
from dicomflow.storage import FileSystemBlobStore


def reactor_clock() -> ReactorClock | None:
    """The clock ``configure`` installed in pynetdicom, if any."""
    clock = getattr(pynetdicom.dul, "time", None)
    return clock if isinstance(clock, ReactorClock) else None


def configure(settings: Settings) -> None:
    """Set pynetdicom's and pydicom's process-wide flags for a receiving process (the only place)."""
    pynetdicom_config.LOG_HANDLER_LEVEL = "none"
    clock = ReactorClock()  # one per process: reactors' idle polls become event waits (see _reactor.py)
    pynetdicom.association.time = clock  # type: ignore[assignment,attr-defined]  # module-like stand-in
    pynetdicom.dul.time = clock  # type: ignore[assignment,attr-defined]  # module-like stand-in
    # Headers are indexed as they are; bad values are reported by validity checks, not refused here.
    pydicom.config.settings.reading_validation_mode = pydicom.config.IGNORE
    pydicom.config.settings.writing_validation_mode = pydicom.config.IGNORE  # file meta of pynetdicom
    logging.getLogger("pynetdicom").setLevel(logging.WARNING)


def open_ingestor(settings: Settings) -> Ingestor:
    """Engine, blob store and ingestor of one process."""
    engine = create_index_engine(settings.index_url, sqlite_synchronous=settings.index.sqlite_synchronous)
    store = FileSystemBlobStore(settings.blob_root, fsync=settings.storage.fsync)
    return Ingestor(settings, engine, store)
