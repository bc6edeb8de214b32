"""Receive one instance: what the C-STORE handler, the node receiver, ``dicomflow import`` and recovery call.

Each use case takes the process's :class:`~dicomflow.runtime.Application`; instances go through its
``ingestor`` (opened on first use, with its own index engine whose commits are made durable in batches with
its blob store's), so these use cases add no query and no round trip to the ingest of one instance.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from dicomflow.errors import DicomflowError
from dicomflow.index import reading
from dicomflow.index.placement import find_project
from dicomflow.index.studies import session_of_acquisition
from dicomflow.ingest import IngestResult, Outcome, Source, recover_store
from dicomflow.storage import RecoveryReport

if TYPE_CHECKING:
    from dicomflow.runtime import Application

__all__ = [
    "IngestResult",
    "Outcome",
    "Source",
    "project_exists",
    "receive_bytes",
    "receive_file",
    "recover",
    "refuse",
    "sessions_of",
]


def receive_bytes(
    app: Application,
    chunks: list[bytes | memoryview],
    source: Source,
    *,
    expected_sop_instance_uid: str | None = None,
) -> IngestResult:
    """Accept one instance given as its Part 10 bytes (file meta included), possibly in pieces.

    Success is returned only once the bytes are durable and the index row is committed.

    Parameters
    ----------
    app
        The process's application (its ``ingestor``).
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
        The instance is refused (and the refusal logged in the event log): ``InvalidInstance``,
        ``DuplicateConflict``, ``StorageError``, ``IndexUnavailable``...
    """
    return app.ingestor.ingest_bytes(chunks, source, expected_sop_instance_uid=expected_sop_instance_uid)


def receive_file(app: Application, path: Path, source: Source) -> IngestResult:
    """Accept one instance from a file (copied, never moved or changed); raises as :func:`receive_bytes`."""
    return app.ingestor.ingest_file(path, source)


def refuse(app: Application, source: Source, object_uid: str, error: DicomflowError) -> None:
    """Log a refused instance or association in the event log (never raises)."""
    app.ingestor.record_rejection(source, object_uid, error)


def project_exists(app: Application, label: str) -> bool:
    """Whether exactly one project is called ``label`` (what a ``kp-`` called AE title may name)."""
    with reading(app.engine) as conn:
        return find_project(conn, label) is not None


def sessions_of(app: Application, acquisition_ids: Iterable[int]) -> list[int]:
    """The sessions (studies in their projects) the acquisitions of received instances belong to, sorted."""
    with reading(app.engine) as conn:
        return sorted({session_of_acquisition(conn, acquisition) for acquisition in acquisition_ids})


def recover(app: Application) -> RecoveryReport:
    """Finish or undo the writes that were in flight when processes that ended stopped."""
    return recover_store(app.ingestor)
