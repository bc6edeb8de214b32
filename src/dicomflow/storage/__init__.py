"""Blob storage: the filesystem store and the S3 store behind one interface, staging on the node."""

from dicomflow.storage._filesystem import FileSystemBlobStore
from dicomflow.storage._interface import BlobStore
from dicomflow.storage._keys import is_shared_key, log_key, result_key, upload_prefix
from dicomflow.storage._locks import DataDirLock
from dicomflow.storage._open import open_blob_store
from dicomflow.storage._s3 import S3BlobStore
from dicomflow.storage._staged import RecoveryReport
from dicomflow.storage._staging import StagedBlob, StagingArea

__all__ = [
    "BlobStore",
    "DataDirLock",
    "FileSystemBlobStore",
    "RecoveryReport",
    "S3BlobStore",
    "StagedBlob",
    "StagingArea",
    "is_shared_key",
    "log_key",
    "open_blob_store",
    "result_key",
    "upload_prefix",
]
