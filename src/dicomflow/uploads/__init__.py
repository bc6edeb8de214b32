"""HTTP upload sessions and safe archive extraction; imports go through the one ingest."""

from dicomflow.uploads._archive import ArchiveRefused, Extracted, ZipLimits, extract, is_zip
from dicomflow.uploads._names import sanitize, stored_name
from dicomflow.uploads._service import FileError, UploadInfo, Uploads, UploadState

__all__ = [
    "ArchiveRefused",
    "Extracted",
    "FileError",
    "UploadInfo",
    "UploadState",
    "Uploads",
    "ZipLimits",
    "extract",
    "is_zip",
    "sanitize",
    "stored_name",
]
