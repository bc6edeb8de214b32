"""Clean up after an unclean stop: staged files that never became an index row are removed."""

from __future__ import annotations

import hashlib
from pathlib import Path

from sqlalchemy import Engine, select

from dicomflow.dicom import read_header
from dicomflow.errors import DicomflowError
from dicomflow.index import Instance
from dicomflow.ingest._ingest import blob_key
from dicomflow.storage import BlobStore, RecoveryReport


def recover_store(engine: Engine, store: BlobStore) -> RecoveryReport:
    """Finish or undo the writes that were in flight when the last process stopped."""

    def key_of(path: Path) -> str | None:
        try:
            header = read_header(path)
            digest = hashlib.sha256(path.read_bytes()).hexdigest()
        except (DicomflowError, OSError):
            return None
        return blob_key(header, digest)

    def is_indexed(key: str) -> bool:
        with engine.connect() as conn:
            return conn.scalar(select(Instance.id).where(Instance.blob_key == key)) is not None

    return store.recover(key_of, is_indexed)
