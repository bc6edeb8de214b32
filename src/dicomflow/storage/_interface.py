"""What the ingest and the API need of a blob store; the filesystem store implements it, S3 will too."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import IO, Protocol

from dicomflow.storage._filesystem import RecoveryReport, StagedBlob, T


class BlobStore(Protocol):
    """Durable storage of instance bytes under keys built from validated UIDs and a content hash."""

    before_release: Callable[[], None] | None  # makes index rows durable before staged names go

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

    def delete(self, key: str) -> None:
        """Remove a published blob."""

    def open(self, key: str) -> IO[bytes]:
        """Read a published blob."""

    def recover(
        self, key_of: Callable[[Path], str | None], is_indexed: Callable[[str], bool]
    ) -> RecoveryReport:
        """Finish or undo the writes a stopped process left behind."""

    def staged_leftovers(self) -> list[Path]:
        """Staged files stopped processes left behind (never those of a live process)."""

    def origin_of(self, path: Path) -> str:
        """The ``origin`` a staged leftover was staged with (``""`` if none)."""

    def flush(self) -> None:
        """Finish deferred work now."""

    def close(self) -> None:
        """Finish deferred work and release resources."""
