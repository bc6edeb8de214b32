"""Blob storage for instance bytes: the filesystem store now, an S3 store behind the same interface later."""

from dicomflow.storage._filesystem import FileSystemBlobStore, RecoveryReport, StagedBlob
from dicomflow.storage._interface import BlobStore
from dicomflow.storage._locks import DataDirLock

__all__ = ["BlobStore", "DataDirLock", "FileSystemBlobStore", "RecoveryReport", "StagedBlob"]
