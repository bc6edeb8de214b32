"""Receive one instance: what the C-STORE handler, the node receiver, ``dicomflow import`` and recovery call.

The first argument is the process's ingest stack (:class:`Ingestor`, opened with :func:`open_receiving`):
every receiving process opens its own, whose index commits are made durable in batches with its blob
store's, so these use cases add no query and no round trip to the ingest of one instance.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from dicomflow.config import Settings
from dicomflow.errors import DicomflowError
from dicomflow.index import migrate, reading
from dicomflow.index.placement import find_project
from dicomflow.index.studies import session_of_acquisition
from dicomflow.ingest import Ingestor, IngestResult, Outcome, Source, open_ingestor, recover_store
from dicomflow.storage import RecoveryReport

__all__ = [
    "IngestResult",
    "Ingestor",
    "Outcome",
    "Source",
    "open_receiving",
    "project_exists",
    "receive_bytes",
    "receive_file",
    "recover",
    "refuse",
    "sessions_of",
]


def open_receiving(settings: Settings, *, migrate_index: bool = False) -> Ingestor:
    """The ingest stack of one process: its own index engine (the ingest's synchronous setting) and store.

    Parameters
    ----------
    settings
        The installation's settings.
    migrate_index
        Bring the index to the newest schema first (a command that may be the first to open it).
    """
    ingestor = open_ingestor(settings)
    if migrate_index:
        migrate(ingestor.engine)
    return ingestor


def receive_bytes(
    ingestor: Ingestor,
    chunks: list[bytes | memoryview],
    source: Source,
    *,
    expected_sop_instance_uid: str | None = None,
) -> IngestResult:
    """Accept one instance given as its Part 10 bytes (file meta included), possibly in pieces.

    Success is returned only once the bytes are durable and the index row is committed.

    Parameters
    ----------
    ingestor
        The process's ingest stack.
    chunks
        The Part 10 bytes.
    source
        Who sends it, and the project or dataset it names.
    expected_sop_instance_uid
        The UID the sender announced (C-STORE's Affected SOP Instance UID): a data set naming another is
        refused, and refusals are logged under it.

    Raises
    ------
    DicomflowError
        The instance is refused (logged in the event log): ``InvalidInstance``, ``DuplicateConflict``,
        ``StorageError``, ``IndexUnavailable``...
    """
    return ingestor.ingest_bytes(chunks, source, expected_sop_instance_uid=expected_sop_instance_uid)


def receive_file(ingestor: Ingestor, path: Path, source: Source) -> IngestResult:
    """Accept one instance from a file (copied, never moved or changed); raises as :func:`receive_bytes`."""
    return ingestor.ingest_file(path, source)


def refuse(ingestor: Ingestor, source: Source, object_uid: str, error: DicomflowError) -> None:
    """Log a refused instance or association in the event log (never raises)."""
    ingestor.record_rejection(source, object_uid, error)


def project_exists(ingestor: Ingestor, label: str) -> bool:
    """Whether exactly one project is called ``label`` (what a ``kp-`` called AE title may name)."""
    with reading(ingestor.engine) as conn:
        return find_project(conn, label) is not None


def sessions_of(ingestor: Ingestor, acquisition_ids: Iterable[int]) -> list[int]:
    """The sessions (studies in their projects) the acquisitions of received instances belong to, sorted."""
    with reading(ingestor.engine) as conn:
        return sorted({session_of_acquisition(conn, acquisition) for acquisition in acquisition_ids})


def recover(ingestor: Ingestor) -> RecoveryReport:
    """Finish or undo the writes that were in flight when processes that ended stopped."""
    return recover_store(ingestor)
