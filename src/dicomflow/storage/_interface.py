"""What the ingest, the jobs and the API need of a blob store; the filesystem and S3 stores implement it.

No local path of a published blob leaves the store: callers read bytes or a stream, or ask for local
copies in a node-local scratch directory (``local_files``). Staged files are local by design: they are
the node's own durable copies until the index commit is durable.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from pathlib import Path
from typing import IO, Protocol

from dicomflow.storage._staged import RecoveryReport, T
from dicomflow.storage._staging import StagedBlob


class BlobStore(Protocol):
    """Durable storage of bytes under relative keys (instances: built from validated UIDs and a content
    hash; results, logs, uploads: under their own prefixes)."""

    before_release: Callable[[], None] | None  # makes index rows durable before staged names go

    # -- the ingest's staging protocol --------------------------------------------------------------------

    def stage(self, chunks: list[bytes | memoryview], origin: str = "") -> StagedBlob:
        """Write bytes durably under a temporary name (with ``origin``); return their size and SHA-256."""

    def stage_while(
        self, chunks: list[bytes | memoryview], work: Callable[[], T], origin: str = ""
    ) -> tuple[StagedBlob, T]:
        """:meth:`stage`, running ``work`` meanwhile."""

    def publish(self, staged: StagedBlob, key: str) -> bool:
        """Make staged bytes readable under ``key``; ``False`` if ``key`` holds them already."""

    def hold(self, key: str) -> StagedBlob:
        """Give a published blob about to be deleted a staged name (seen by ``recover``)."""

    def release(self, staged: StagedBlob, published_as: str | None = None) -> None:
        """Drop the temporary name (once ``published_as`` is durable, if given)."""

    def retire(self, key: str, hold: StagedBlob) -> None:
        """Delete a replaced blob once the index change is durable."""

    def recover(
        self, key_of: Callable[[Path], str | None], is_indexed: Callable[[str], bool]
    ) -> RecoveryReport:
        """Finish or undo the writes this node's stopped processes left behind."""

    def staged_leftovers(self) -> list[Path]:
        """Staged files this node's stopped processes left behind (never those of a live process)."""

    def origin_of(self, path: Path) -> str:
        """The ``origin`` a staged leftover was staged with (``""`` if none)."""

    def flush(self) -> None:
        """Finish deferred work now."""

    def close(self) -> None:
        """Finish deferred work and release resources."""

    # -- blobs --------------------------------------------------------------------------------------------

    def put(self, key: str, data: bytes | IO[bytes]) -> None:
        """Store bytes (or a binary file read to its end) under ``key``, durably, replacing."""

    def get(self, key: str) -> bytes:
        """The bytes of a blob (:class:`~dicomflow.errors.StorageError` if missing)."""

    def open(self, key: str) -> IO[bytes]:
        """A binary stream over a blob."""

    def read_range(self, key: str, start: int, length: int) -> bytes:
        """Up to ``length`` bytes of a blob from offset ``start``."""

    def size(self, key: str) -> int:
        """The size of a blob in bytes."""

    def exists(self, key: str) -> bool:
        """Whether a blob is stored under ``key``."""

    def delete(self, key: str) -> None:
        """Remove a blob (missing is fine)."""

    def list_keys(self, prefix: str = "") -> list[str]:
        """The keys starting with ``prefix``, sorted."""

    def check(self) -> None:
        """Raise :class:`~dicomflow.errors.StorageError` unless the store answers (readiness)."""

    def fetch(self, key: str, target: Path) -> None:
        """Copy a blob to the local file ``target``."""

    def local_files(self, keys: Sequence[str], scratch: Path) -> AbstractContextManager[list[Path]]:
        """Local read-only files of the blobs of ``keys``, valid inside the ``with`` block; a store that
        needs copies makes them under the node-local ``scratch`` directory."""
