"""Blob store in an S3 bucket (AWS, MinIO, Ceph RGW: any endpoint URL), through boto3.

The ingest's protocol is kept (see ``_staged``): bytes are staged and fsynced in the node-local staging
area before anything else; ``publish`` PUTs the staged file to its key (nothing when the key exists: keys
carry a content hash); ``release`` drops the staged file once the index rows are durable; recovery replays
staged files this node left behind. A PUT is durable when S3 answers, so no batch sync is needed.

Credentials come from wherever boto3 finds them (``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY``,
``AWS_PROFILE``, ``~/.aws``, an instance role); boto3 is imported when the first store is made.
"""

from __future__ import annotations

import contextlib
import os
import threading
from pathlib import Path
from typing import IO, Any

from dicomflow.errors import StorageError
from dicomflow.storage._staged import StagedStore, check_key
from dicomflow.storage._staging import StagedBlob, StagingArea

_MISSING = {"404", "NoSuchKey", "NotFound"}
_PUBLISHED = 0o400  # the mode of a staged file once PUT by this store (staged files are 0o644)


class S3BlobStore(StagedStore):
    """A blob store in ``bucket`` under ``prefix``, staging in a node-local directory.

    Parameters
    ----------
    bucket
        The bucket (must exist).
    staging
        Node-local directory of the staging areas (``<staging>/<node_id>/`` is this node's).
    prefix
        Prepended to every key (e.g. ``"dicomflow/"``).
    endpoint_url
        The S3 endpoint (``None``: AWS's).
    region
        The region (``None``: boto3's configuration).
    fsync
        Whether to fsync staged files (only tests turn this off).
    node_id
        The node this process belongs to; recovery looks at its staging only.
    """

    def __init__(
        self,
        bucket: str,
        staging: Path,
        *,
        prefix: str = "",
        endpoint_url: str | None = None,
        region: str | None = None,
        fsync: bool = True,
        node_id: str = "local",
    ) -> None:
        if not bucket:
            raise ValueError("an S3 blob store needs a bucket")
        self.bucket = bucket
        self.prefix = prefix
        self._options: dict[str, Any] = {"endpoint_url": endpoint_url, "region_name": region}
        self._client_pid = 0
        self._client_value: Any = None
        self._client_lock = threading.Lock()
        self._conditional = True  # PUT with If-None-Match until the endpoint refuses it
        super().__init__(StagingArea(staging, node_id, fsync=fsync), defer_release=True)

    def __repr__(self) -> str:
        return f"S3BlobStore(s3://{self.bucket}/{self.prefix})"

    # -- staging protocol ---------------------------------------------------------------------------------

    def publish(self, staged: StagedBlob, key: str) -> bool:
        """PUT the staged file to ``key`` unless an object is there already (``False``: keys carry a
        content hash, so it holds these bytes).

        One conditional request (``If-None-Match: *``: AWS, MinIO, Ceph RGW); an endpoint that does not
        know the condition gets a HEAD (same size: skipped) before a plain PUT from then on.
        """
        name = self._key(key)
        if not self._conditional:
            with contextlib.suppress(StorageError):
                if self.size(key) == staged.size:
                    return False
        try:
            with open(staged.path, "rb") as body:
                if self._conditional:
                    self._client().put_object(Bucket=self.bucket, Key=name, Body=body, IfNoneMatch="*")
                else:
                    self._client().put_object(Bucket=self.bucket, Key=name, Body=body)
            os.chmod(staged.path, _PUBLISHED)  # tells recovery this staged file made the object
        except Exception as exc:
            code = _code(exc)
            if code in ("PreconditionFailed", "ConditionalRequestConflict"):
                return False
            if self._conditional and code in ("NotImplemented", "InvalidArgument"):
                self._conditional = False  # an endpoint without conditional writes
                return self.publish(staged, key)
            raise _error(f"cannot publish blob {key!r}", exc) from exc
        return True

    def _hold_into(self, key: str, path: Path) -> int:
        name = self._key(key)
        try:
            with open(path, "xb") as out:
                self._client().download_fileobj(self.bucket, name, out)
                out.flush()
                if self.staging_area.fsync:
                    os.fsync(out.fileno())
                return out.tell()
        except Exception as exc:
            path.unlink(missing_ok=True)
            raise _error(f"cannot hold blob {key!r}", exc) from exc

    def _published_from(self, path: Path, key: str) -> bool:
        try:
            return path.stat().st_mode & 0o777 == _PUBLISHED
        except OSError:
            return False

    # -- reading and writing ------------------------------------------------------------------------------

    def put(self, key: str, data: bytes | IO[bytes]) -> None:
        """PUT ``data`` under ``key`` (replacing)."""
        name = self._key(key)
        try:
            if isinstance(data, bytes | bytearray | memoryview):
                self._client().put_object(Bucket=self.bucket, Key=name, Body=bytes(data))
            else:
                self._client().upload_fileobj(data, self.bucket, name)
        except Exception as exc:
            raise _error(f"cannot write blob {key!r}", exc) from exc

    def get(self, key: str) -> bytes:
        """The bytes of a blob."""
        with self.open(key) as body:
            try:
                return body.read()
            except Exception as exc:
                raise _error(f"cannot read blob {key!r}", exc) from exc

    def open(self, key: str) -> IO[bytes]:
        """A stream over the object's body."""
        name = self._key(key)
        try:
            answer = self._client().get_object(Bucket=self.bucket, Key=name)
        except Exception as exc:
            raise _error(f"cannot read blob {key!r}", exc) from exc
        body: IO[bytes] = answer["Body"]  # botocore's StreamingBody, an io.IOBase
        return body

    def read_range(self, key: str, start: int, length: int) -> bytes:
        """Up to ``length`` bytes from offset ``start`` (an HTTP range request)."""
        name = self._key(key)
        if start < 0 or length < 0:
            raise ValueError(f"invalid range {start}+{length}")
        if length == 0:
            return b""
        try:
            answer = self._client().get_object(
                Bucket=self.bucket, Key=name, Range=f"bytes={start}-{start + length - 1}"
            )
            data: bytes = answer["Body"].read()
        except Exception as exc:
            if _code(exc) == "InvalidRange":  # from at or past the end
                return b""
            raise _error(f"cannot read blob {key!r}", exc) from exc
        return data

    def size(self, key: str) -> int:
        """The size of a blob in bytes."""
        name = self._key(key)
        try:
            answer = self._client().head_object(Bucket=self.bucket, Key=name)
        except Exception as exc:
            raise _error(f"cannot read blob {key!r}", exc) from exc
        return int(answer["ContentLength"])

    def exists(self, key: str) -> bool:
        """Whether an object is stored under ``key``."""
        name = self._key(key)
        try:
            self._client().head_object(Bucket=self.bucket, Key=name)
        except Exception as exc:
            if _code(exc) in _MISSING:
                return False
            raise _error(f"cannot read blob {key!r}", exc) from exc
        return True

    def delete(self, key: str) -> None:
        """Remove a blob (missing is fine)."""
        name = self._key(key)
        try:
            self._client().delete_object(Bucket=self.bucket, Key=name)
        except Exception as exc:
            raise _error(f"cannot delete blob {key!r}", exc) from exc

    def list_keys(self, prefix: str = "") -> list[str]:
        """The keys starting with ``prefix``, sorted."""
        if prefix:
            check_key(prefix)
        try:
            pages = (
                self._client()
                .get_paginator("list_objects_v2")
                .paginate(Bucket=self.bucket, Prefix=self.prefix + prefix)
            )
            keys = [item["Key"] for page in pages for item in page.get("Contents", [])]
        except Exception as exc:
            raise _error(f"cannot list blobs under {prefix!r}", exc) from exc
        return sorted(key[len(self.prefix) :] for key in keys)

    def fetch(self, key: str, target: Path) -> None:
        """Download a blob to ``target``."""
        name = self._key(key)
        try:
            with open(target, "wb") as out:
                self._client().download_fileobj(self.bucket, name, out)
        except Exception as exc:
            raise _error(f"cannot read blob {key!r}", exc) from exc

    def check(self) -> None:
        """Raise :class:`StorageError` unless the bucket answers."""
        try:  # a client of its own: one attempt, short timeouts (a probe must answer quickly)
            _make_client(self._options, attempts=1, timeout=3).head_bucket(Bucket=self.bucket)
        except Exception as exc:
            raise _error(f"the bucket {self.bucket!r} cannot be reached", exc) from exc

    # -- boto3 --------------------------------------------------------------------------------------------

    def _key(self, key: str) -> str:
        return self.prefix + check_key(key)

    def _client(self) -> Any:
        """One boto3 client per process (thread-safe; a forked child makes its own connections)."""
        if self._client_value is not None and self._client_pid == os.getpid():
            return self._client_value
        with self._client_lock:
            if self._client_value is None or self._client_pid != os.getpid():
                self._client_value = _make_client(self._options)
                self._client_pid = os.getpid()
            return self._client_value


def _make_client(options: dict[str, Any], *, attempts: int = 5, timeout: float = 10) -> Any:
    try:
        import boto3
        from botocore.config import Config
    except ImportError as exc:  # pragma: no cover - boto3 is a dependency
        raise StorageError("the S3 blob store needs boto3 (pip install 'dicomflow[s3]')") from exc
    config = Config(
        retries={"max_attempts": attempts, "mode": "standard"},
        connect_timeout=timeout,
        read_timeout=60 if attempts > 1 else timeout,
        max_pool_connections=32,
    )
    return boto3.session.Session().client("s3", config=config, **options)


def _code(exc: BaseException) -> str:
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        return str(response.get("Error", {}).get("Code", ""))
    return ""


def _error(message: str, exc: BaseException) -> StorageError:
    """A :class:`StorageError` for a boto3, botocore or socket failure."""
    if isinstance(exc, StorageError):
        return exc
    return StorageError(f"{message}: {exc}")
