"""Blob storage for instance bytes: the filesystem store now, an S3 store behind the same interface later."""

from dicomflow.storage._filesystem import FileSystemBlobStore, RecoveryReport, StagedBlob

__all__ = ["FileSystemBlobStore", "RecoveryReport", "StagedBlob"]
