"""The use case "accept one instance", shared by the DICOM receiver, uploads and folder import."""

from dicomflow.ingest._ingest import Ingestor, IngestResult, Outcome, Source, blob_key, slice_position
from dicomflow.ingest._open import open_ingestor
from dicomflow.ingest._recovery import recover_store

__all__ = [
    "IngestResult",
    "Ingestor",
    "Outcome",
    "Source",
    "blob_key",
    "open_ingestor",
    "recover_store",
    "slice_position",
]
