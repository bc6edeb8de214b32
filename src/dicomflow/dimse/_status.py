"""DIMSE status codes we send, by name, and the mapping from dicomflow errors to them (PS3.4 B.2.3)."""

from __future__ import annotations

from pydicom.dataset import Dataset

from dicomflow.errors import (
    DicomflowError,
    DuplicateConflict,
    IndexUnavailable,
    InvalidInstance,
    StorageError,
    StudyInAnotherProject,
    UnknownProject,
)

SUCCESS = 0x0000
DUPLICATE_SOP_INSTANCE = 0x0111
SOP_CLASS_NOT_SUPPORTED = 0x0122
NOT_AUTHORIZED = 0x0124
OUT_OF_RESOURCES = 0xA700
DATASET_DOES_NOT_MATCH_SOP_CLASS = 0xA900
# PS3.4 lists 0xB007 as a warning ("data set does not match SOP class", the object kept), but DicomNode and
# our node mode answer it for an instance they did not keep: a sender counts it as refused.
REFUSED_AS_WARNING = 0xB007
CANNOT_UNDERSTAND = 0xC000
PROCESSING_FAILURE = 0x0110

_BY_ERROR: list[tuple[type[DicomflowError], int]] = [
    (InvalidInstance, CANNOT_UNDERSTAND),
    (DuplicateConflict, DUPLICATE_SOP_INSTANCE),
    (UnknownProject, NOT_AUTHORIZED),
    (StudyInAnotherProject, NOT_AUTHORIZED),
    (StorageError, OUT_OF_RESOURCES),
    (IndexUnavailable, OUT_OF_RESOURCES),
]

# A-ASSOCIATE-RJ: result, source, reason (PS3.8 9.3.4)
REJECTED_PERMANENT = 0x01
REJECTED_TRANSIENT = 0x02
SOURCE_SERVICE_USER = 0x01
SOURCE_PROVIDER_PRESENTATION = 0x03
REASON_CALLING_AE_NOT_RECOGNISED = 0x03
REASON_CALLED_AE_NOT_RECOGNISED = 0x07
REASON_LOCAL_LIMIT_EXCEEDED = 0x02


def status_for(error: DicomflowError) -> int:
    """The C-STORE failure status for an error (processing failure when nothing more specific fits)."""
    for cls, status in _BY_ERROR:
        if isinstance(error, cls):
            return status
    return PROCESSING_FAILURE


def status_dataset(status: int, comment: str) -> Dataset:
    """A status with an ErrorComment (at most 64 characters, as the VR LO allows)."""
    ds = Dataset()
    ds.Status = status
    ds.ErrorComment = comment.replace("\\", "/")[:64]
    return ds
