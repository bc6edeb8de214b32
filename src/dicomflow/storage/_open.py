"""The blob store the settings name."""

from __future__ import annotations

from dicomflow.config import Settings
from dicomflow.errors import ConfigError
from dicomflow.storage._filesystem import FileSystemBlobStore
from dicomflow.storage._interface import BlobStore
from dicomflow.storage._s3 import S3BlobStore


def open_blob_store(settings: Settings, *, fsync: bool | None = None) -> BlobStore:
    """The filesystem or S3 store of ``settings.storage``, staging as node ``settings.cluster.node_id``.

    ``fsync`` overrides ``storage.fsync`` (readers that never stage pass ``False``).
    """
    storage = settings.storage
    sync = storage.fsync if fsync is None else fsync
    node_id = settings.cluster.node_id
    if storage.backend == "filesystem":
        return FileSystemBlobStore(settings.blob_root, fsync=sync, node_id=node_id)
    if not storage.s3_bucket:
        raise ConfigError("DICOMFLOW_STORAGE__S3_BUCKET must be set when storage.backend is s3")
    return S3BlobStore(
        storage.s3_bucket,
        settings.staging_root,
        prefix=storage.s3_prefix,
        endpoint_url=storage.s3_endpoint_url or None,
        region=storage.s3_region or None,
        fsync=sync,
        node_id=node_id,
    )
