"""Finish after an unclean stop, looking only at the staged files the stopped processes left behind.

A staged ``.part`` file is a complete, fsynced instance once its writer got past ``stage``; the index row
is made durable in batches, so after a power loss a staged instance may lack its row: it is ingested
again (a sender may have been told it was stored). A staged file that is unreadable or truncated was
never acknowledged and is removed; a ``.dcm`` hold of a replaced blob is removed when no row needs it.
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

from dicomflow.dicom import read_header
from dicomflow.errors import DicomflowError
from dicomflow.index import instances, reading
from dicomflow.ingest._ingest import Ingestor, Source, blob_key, source_from_origin
from dicomflow.storage import RecoveryReport

LOGGER = logging.getLogger(__name__)
_SOURCE = Source("recovery", "dicomflow")


def recover_store(ingestor: Ingestor) -> RecoveryReport:
    """Finish or undo the writes that were in flight when processes that ended stopped.

    Only the staging of processes that have ended is looked at (see ``dicomflow.storage``); a staged
    instance is ingested again for the source it was staged for, so it is placed as it would have been.
    """

    def key_of(path: Path) -> str | None:
        try:
            header = read_header(path)
            digest = hashlib.sha256(path.read_bytes()).hexdigest()
        except (DicomflowError, OSError):
            return None
        return blob_key(header, digest)

    def is_indexed(key: str) -> bool:
        with reading(ingestor.engine) as conn:
            return instances.is_indexed(conn, key)

    for path in ingestor.store.staged_leftovers():
        key = key_of(path) if path.suffix == ".part" else None
        if key is None:
            continue
        source = source_from_origin(ingestor.store.origin_of(path)) or _SOURCE
        if not _is_indexed_for(ingestor, key, source):
            _ingest_again(ingestor, path, source)
    ingestor.store.flush()
    return ingestor.store.recover(key_of, is_indexed)


def _is_indexed_for(ingestor: Ingestor, key: str, source: Source) -> bool:
    """Whether the instance under ``key`` has its row in the project ``source`` names (any, if none).

    Identical bytes sent into two projects share one blob key, each with its own row: a row of another
    project does not make this staged copy's row.
    """
    named = ingestor.project_named_by(source)
    with reading(ingestor.engine) as conn:
        projects = instances.projects_holding(conn, key)
    if named is None:
        return bool(projects)
    return any(named in ((group, label), label) for group, label in projects)


def _ingest_again(ingestor: Ingestor, path: Path, source: Source) -> None:
    try:
        result = ingestor.ingest_file(path, source)
        LOGGER.warning("recovered %s (%s) from an unfinished write", result.sop_instance_uid, result.outcome)
    except DicomflowError as exc:
        LOGGER.warning("dropped an unfinished write %s: %s", path.name, exc.message)
