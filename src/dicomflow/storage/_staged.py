"""What every blob store shares: the ingest's staging protocol over a node-local staging area.

Write protocol (crash-safe without scanning the store):

1. the bytes go to the node's staging area and are fsynced (``stage``), see ``_staging``;
2. ``publish`` makes them readable under their key (a hard link in ``objects/``, a PUT to S3);
3. the caller commits the index row;
4. ``release`` hands the staged name to a background syncer, which makes a batch of index rows durable
   (``before_release``: the index log sync), makes the batch's published blobs durable where that takes a
   step (the filesystem fsyncs their ``objects/`` directories, once per batch; a PUT is durable when it
   returns), and only then removes the staged names.

Until step 4 is done the staged name is the durable copy, so a crash at any point leaves only staged files
behind, and recovery looks at those alone (``dicomflow.ingest.recover_store`` ingests again a staged
instance whose row was lost; ``recover`` then restores lost blobs and removes what no row needs).
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import tempfile
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TypeVar

from dicomflow.errors import StorageError
from dicomflow.storage._staging import StagedBlob, StagingArea

T = TypeVar("T")
_SYNC_INTERVAL = 0.2  # seconds between syncs of released blobs
_SYNC_BATCH = 512  # or sooner, when this many are waiting
LOGGER = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class RecoveryReport:
    """What ``recover`` found after an unclean stop."""

    kept: int
    removed: int


def check_key(key: str) -> str:
    """``key`` if it is a relative key (no leading slash, no ``..``); ``ValueError`` otherwise."""
    if not key or key.startswith("/") or ".." in key.split("/") or "\x00" in key:
        raise ValueError(f"blob key {key!r} is not a relative key")
    return key


class StagedStore(ABC):
    """A blob store whose writes go through a node-local :class:`StagingArea` (see the module docstring).

    Subclasses say how a staged file is published, how blobs are read, written and listed.
    """

    def __init__(self, staging: StagingArea, *, defer_release: bool) -> None:
        self.staging_area = staging
        self._defer_release = defer_release
        self._pending: list[tuple[Path, str]] = []  # (staged name, key published from it)
        self._pending_lock = threading.Lock()
        self._wake = threading.Event()
        self._closed = False
        self._syncer: threading.Thread | None = None
        self._syncer_pid = 0
        self._retired: list[str] = []
        self.before_release: Callable[[], None] | None = None

    # -- the ingest's staging protocol --------------------------------------------------------------------

    def new_staging_path(self, origin: str = "") -> Path:
        """A fresh name in this process's staging folder, naming ``origin`` (see :meth:`origin_of`)."""
        return self.staging_area.new_path(origin)

    def stage(self, chunks: list[bytes | memoryview], origin: str = "") -> StagedBlob:
        """Write ``chunks`` to a new staged file and fsync it; return its size and SHA-256.

        ``origin`` (one line of text; e.g. who sent the bytes) is kept with the staged file for recovery.
        """
        return self.staging_area.stage_while(chunks, lambda: None, origin)[0]

    def stage_while(
        self, chunks: list[bytes | memoryview], work: Callable[[], T], origin: str = ""
    ) -> tuple[StagedBlob, T]:
        """:meth:`stage`, running ``work`` (e.g. parsing the header) while the disk works."""
        return self.staging_area.stage_while(chunks, work, origin)

    @abstractmethod
    def publish(self, staged: StagedBlob, key: str) -> bool:
        """Make the staged bytes readable under ``key`` (durable through the staged name until ``release``).

        Returns ``False`` when a blob exists under ``key`` already: keys name their content (they carry a
        content hash), so that blob holds these very bytes and nothing is written.
        """

    def hold(self, key: str) -> StagedBlob:
        """A staged copy of a published blob about to be deleted, so that recovery sees it if we die."""
        path = self.staging_area.new_path(suffix=".dcm")
        size = self._hold_into(key, path)
        return StagedBlob(path, size, "")

    def release(self, staged: StagedBlob, published_as: str | None = None) -> None:
        """Forget the staged name: at once, or (``published_as``) once the index rows and that blob are
        durable."""
        if published_as is None or not self._defer_release:
            staged.path.unlink(missing_ok=True)
            return
        self._queue(staged.path, published_as)

    def retire(self, key: str, hold: StagedBlob) -> None:
        """Delete a replaced blob once the index change that replaced it is durable (see ``hold``)."""
        self._queue(hold.path, key, retired=key)

    def flush(self) -> None:
        """Make the released blobs' index rows and blobs durable, then remove their staged names."""
        with self._pending_lock:
            batch, self._pending = self._pending, []
            retired, self._retired = self._retired, []
        if (batch or retired) and self.before_release is not None:
            self.before_release()  # e.g. sync the index's log: the staged name is the copy until then
        for key in retired:
            self.delete(key)
        if batch:
            self._make_durable({key for _, key in batch})
        for path, _ in batch:
            path.unlink(missing_ok=True)

    def close(self) -> None:
        """Finish pending syncs, stop the background syncer, and release the staging area."""
        self._closed = True
        self._wake.set()
        if self._syncer is not None and self._syncer_pid == os.getpid():
            self._syncer.join()
        self.flush()
        self.staging_area.close()

    def staged_leftovers(self) -> list[Path]:
        """Staged files this node's stopped processes left behind (never those of a live process)."""
        return self.staging_area.leftovers()

    def origin_of(self, path: Path) -> str:
        """The origin a staged file was written with (``""`` if none or unknown)."""
        return self.staging_area.origin_of(path)

    def recover(
        self, key_of: Callable[[Path], str | None], is_indexed: Callable[[str], bool]
    ) -> RecoveryReport:
        """Clean up after an unclean stop, looking only at this node's staged leftovers.

        Parameters
        ----------
        key_of
            Maps a staged file to the key it would have been published under (``None`` if unreadable).
        is_indexed
            Whether the index holds a row for a key.
        """
        kept = removed = 0
        for path in self.staged_leftovers():
            key = key_of(path)
            if key is not None and is_indexed(key):
                if not self.exists(key):  # the row became durable, the blob did not
                    self.publish(StagedBlob(path, path.stat().st_size, ""), key)
                    self._make_durable({key})
                kept += 1
            else:
                if key is not None and self._published_from(path, key):
                    self.delete(key)
                removed += 1
            path.unlink(missing_ok=True)
        self.staging_area.release_claims()
        return RecoveryReport(kept=kept, removed=removed)

    # -- reading and writing blobs ------------------------------------------------------------------------

    @abstractmethod
    def put(self, key: str, data: bytes | IO[bytes]) -> None:
        """Store ``data`` (bytes or a binary file read to its end) under ``key``, durably, replacing."""

    @abstractmethod
    def get(self, key: str) -> bytes:
        """The bytes of a blob."""

    @abstractmethod
    def open(self, key: str) -> IO[bytes]:
        """A binary stream over a blob (read it to the end or close it)."""

    @abstractmethod
    def read_range(self, key: str, start: int, length: int) -> bytes:
        """Up to ``length`` bytes of a blob from offset ``start``."""

    @abstractmethod
    def size(self, key: str) -> int:
        """The size of a blob in bytes."""

    @abstractmethod
    def exists(self, key: str) -> bool:
        """Whether a blob is stored under ``key``."""

    @abstractmethod
    def delete(self, key: str) -> None:
        """Remove a blob (missing is fine)."""

    @abstractmethod
    def list_keys(self, prefix: str = "") -> list[str]:
        """The keys starting with ``prefix``, sorted."""

    @abstractmethod
    def check(self) -> None:
        """Raise :class:`StorageError` unless the store answers (for a readiness probe)."""

    @abstractmethod
    def fetch(self, key: str, target: Path) -> None:
        """Copy a blob to the local file ``target`` (replaced)."""

    @contextlib.contextmanager
    def local_files(self, keys: Sequence[str], scratch: Path) -> Iterator[list[Path]]:
        """Local, read-only files holding the blobs of ``keys`` (in order), for readers that need a path:
        fetched into a fresh folder under the node-local ``scratch`` directory, removed afterwards."""
        try:
            scratch.mkdir(parents=True, exist_ok=True)
            folder = Path(tempfile.mkdtemp(prefix="fetch-", dir=scratch))
        except OSError as exc:
            raise StorageError(f"cannot make a scratch folder in {scratch}: {exc}") from exc
        try:
            paths = []
            for number, key in enumerate(keys):
                path = folder / f"{number:06d}-{Path(key).name}"
                self.fetch(key, path)
                paths.append(path)
            yield paths
        finally:
            shutil.rmtree(folder, ignore_errors=True)

    # -- what back ends differ in -------------------------------------------------------------------------

    @abstractmethod
    def _hold_into(self, key: str, path: Path) -> int:
        """Give the blob of ``key`` the staged name ``path`` (durably); return its size."""

    def _make_durable(self, keys: set[str]) -> None:  # noqa: B027 - most back ends have nothing to do
        """Make published blobs durable (nothing to do where publishing is durable already)."""

    def _published_from(self, path: Path, key: str) -> bool:
        """Whether the blob under ``key`` is the publication of the staged ``path`` (not another write's
        that a row may need); back ends that cannot tell say no, leaving at worst an unreferenced blob."""
        return False

    # -- background syncer --------------------------------------------------------------------------------

    def _queue(self, staged: Path, key: str, retired: str | None = None) -> None:
        with self._pending_lock:
            self._pending.append((staged, key))
            if retired is not None:
                self._retired.append(retired)
            if self._syncer is None or self._syncer_pid != os.getpid():
                self._syncer = threading.Thread(target=self._sync_loop, name="blob-sync", daemon=True)
                self._syncer_pid = os.getpid()
                self._syncer.start()
            if len(self._pending) >= _SYNC_BATCH:
                self._wake.set()

    def _sync_loop(self) -> None:
        while not self._closed:
            self._wake.wait(_SYNC_INTERVAL)
            self._wake.clear()
            try:
                self.flush()
            except (OSError, StorageError):  # staged names stay: recovery restores what a failed sync lost
                LOGGER.exception("syncing released blobs failed")
