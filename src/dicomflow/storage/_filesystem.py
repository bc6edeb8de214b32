"""Blob store on a local filesystem: bytes exactly as received, durable before anyone is told so.

Write protocol (crash-safe without scanning the store):

1. the bytes go to ``staging/<random>.part`` and are fsynced (``stage``); fsync of a new file also makes its
   name durable on the journaling file systems we run on (ext4, XFS);
2. ``publish`` hard-links the staged file to ``objects/<key>`` (key built from validated UIDs only);
3. the caller commits the index row;
4. ``release`` hands the staged name to a background syncer, which makes a batch of index rows durable
   (``before_release``: the index log sync) and fsyncs the batch's ``objects/`` directories, once per batch,
   and only then removes the staged names.

Until step 4 is done the staged name is the durable copy, so a crash at any point leaves only staged files
behind, and recovery looks at those alone (``dicomflow.ingest.recover_store`` ingests again a staged
instance whose row was lost; ``recover`` then restores lost links and removes what no row needs). One
log sync and one directory fsync per batch instead of per instance matters: each is a journal commit.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import secrets
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TypeVar

from dicomflow.errors import StorageError

T = TypeVar("T")
_SYNC_INTERVAL = 0.2  # seconds between directory syncs of released blobs
_SYNC_BATCH = 512  # or sooner, when this many are waiting
LOGGER = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class StagedBlob:
    """Bytes written and fsynced under a temporary name, not yet visible under a key."""

    path: Path
    size: int
    sha256: str


@dataclass(frozen=True, slots=True)
class RecoveryReport:
    """What ``recover`` found after an unclean stop."""

    kept: int
    removed: int


class FileSystemBlobStore:
    """A blob store in a directory: ``objects/`` for published blobs, ``staging/`` for writes in flight.

    Parameters
    ----------
    root
        Directory of the store (created).
    fsync
        Whether to fsync files and directories (only tests turn this off).
    """

    def __init__(self, root: Path, *, fsync: bool = True) -> None:
        self.root = Path(root)
        self.objects = self.root / "objects"
        self.staging = self.root / "staging"
        self._fsync = fsync
        self._known_dirs: set[Path] = set()
        self._pending: list[tuple[Path, Path]] = []  # (staged name, objects dir to fsync before removing it)
        self._pending_lock = threading.Lock()
        self._wake = threading.Event()
        self._closed = False
        self._syncer: threading.Thread | None = None
        self._fsyncs: ThreadPoolExecutor | None = None
        self._retired: list[str] = []
        self.before_release: Callable[[], None] | None = None
        try:
            self.objects.mkdir(parents=True, exist_ok=True)
            self.staging.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StorageError(f"cannot create blob store in {self.root}: {exc}") from exc

    def new_staging_path(self) -> Path:
        """A fresh name under ``staging/`` for a writer that fills the file itself."""
        return self.staging / f"{secrets.token_hex(12)}.part"

    def stage(self, chunks: list[bytes | memoryview]) -> StagedBlob:
        """Write ``chunks`` to a new staged file and fsync it; return its size and SHA-256."""
        return self.stage_while(chunks, lambda: None)[0]

    def stage_while(self, chunks: list[bytes | memoryview], work: Callable[[], T]) -> tuple[StagedBlob, T]:
        """:meth:`stage`, running ``work`` (e.g. parsing the header) while the disk works.

        The fsync waits in a thread of its own, the hash and ``work`` run in the caller's. If ``work``
        raises, the staged file is removed and the exception propagates.
        """
        path = self.new_staging_path()
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except OSError as exc:
            raise StorageError(f"cannot write {path}: {exc}") from exc
        synced: Future[None] | None = None
        try:
            size = _write_all(fd, chunks)
            synced = self._sync_pool().submit(os.fsync, fd) if self._fsync else None
            digest = hashlib.sha256()
            for chunk in chunks:  # hashing releases the GIL: the fsync thread starts at once
                digest.update(chunk)
            result = work()
            if synced is not None:
                synced.result()
        except BaseException as exc:
            _close_quietly(fd, synced)
            path.unlink(missing_ok=True)
            if isinstance(exc, OSError):
                raise StorageError(f"cannot write {path}: {exc}") from exc
            raise
        os.close(fd)
        return StagedBlob(path, size, digest.hexdigest()), result

    def _sync_pool(self) -> ThreadPoolExecutor:
        with self._pending_lock:
            if self._fsyncs is None:
                self._fsyncs = ThreadPoolExecutor(max_workers=8, thread_name_prefix="blob-fsync")
            return self._fsyncs

    def publish(self, staged: StagedBlob, key: str) -> bool:
        """Make the staged bytes visible under ``key`` (durable through the staged name until ``release``).

        Returns ``False`` when a blob exists under ``key`` already: keys name their content (they carry a
        content hash), so that blob holds these very bytes and nothing is written.
        """
        target = self.path_of(key)
        try:
            self._ensure_dir(target.parent)
            os.link(staged.path, target)
        except FileExistsError:
            return False
        except OSError as exc:
            raise StorageError(f"cannot publish blob {key!r}: {exc}") from exc
        return True

    def hold(self, key: str) -> StagedBlob:
        """A staged name for a published blob about to be deleted, so that recovery sees it if we die."""
        path = self.staging / f"{secrets.token_hex(12)}.dcm"
        try:
            os.link(self.path_of(key), path)
        except OSError as exc:
            raise StorageError(f"cannot hold blob {key!r}: {exc}") from exc
        return StagedBlob(path, path.stat().st_size, "")

    def release(self, staged: StagedBlob, published_as: str | None = None) -> None:
        """Forget the staged name: at once, or (``published_as``) once that blob's directory is synced."""
        if published_as is None or not self._fsync:
            staged.path.unlink(missing_ok=True)
            return
        self._queue(staged.path, self.path_of(published_as).parent)

    def _queue(self, staged: Path, directory: Path, retired: str | None = None) -> None:
        with self._pending_lock:
            self._pending.append((staged, directory))
            if retired is not None:
                self._retired.append(retired)
            if self._syncer is None:
                self._syncer = threading.Thread(target=self._sync_loop, name="blob-dir-sync", daemon=True)
                self._syncer.start()
            if len(self._pending) >= _SYNC_BATCH:
                self._wake.set()

    def retire(self, key: str, hold: StagedBlob) -> None:
        """Delete a replaced blob once the index change that replaced it is durable (see ``hold``)."""
        self._queue(hold.path, self.path_of(key).parent, retired=key)

    def flush(self) -> None:
        """Make the released blobs' index rows and directories durable, then remove their staged names."""
        with self._pending_lock:
            batch, self._pending = self._pending, []
            retired, self._retired = self._retired, []
        if (batch or retired) and self.before_release is not None:
            self.before_release()  # e.g. sync the index's log: the staged name is the copy until then
        for key in retired:
            self.delete(key)
        for directory in {d for _, d in batch}:
            _fsync_dir(directory)
        for path, _ in batch:
            path.unlink(missing_ok=True)

    def close(self) -> None:
        """Finish pending directory syncs and stop the background syncer."""
        self._closed = True
        self._wake.set()
        if self._syncer is not None:
            self._syncer.join()
        if self._fsyncs is not None:
            self._fsyncs.shutdown()
        self.flush()

    def _sync_loop(self) -> None:
        while not self._closed:
            self._wake.wait(_SYNC_INTERVAL)
            self._wake.clear()
            try:
                self.flush()
            except OSError:  # staged names stay: recovery restores what a failed sync might have lost
                LOGGER.exception("syncing blob directories failed")

    def delete(self, key: str) -> None:
        """Remove a published blob (missing is fine)."""
        try:
            self.path_of(key).unlink(missing_ok=True)
        except OSError as exc:
            raise StorageError(f"cannot delete blob {key!r}: {exc}") from exc

    def open(self, key: str) -> IO[bytes]:
        """Open a published blob for reading."""
        try:
            return open(self.path_of(key), "rb")
        except OSError as exc:
            raise StorageError(f"cannot read blob {key!r}: {exc}") from exc

    def path_of(self, key: str) -> Path:
        """The file of ``key``; keys are relative, made of UID characters, dots, dashes and slashes."""
        if not key or key.startswith("/") or ".." in key.split("/"):
            raise ValueError(f"blob key {key!r} is not a relative key")
        return self.objects / key

    def staged_leftovers(self) -> list[Path]:
        """Staged files left by a process that stopped before finishing them."""
        return sorted(self.staging.glob("*.part")) + sorted(self.staging.glob("*.dcm"))

    def recover(
        self, key_of: Callable[[Path], str | None], is_indexed: Callable[[str], bool]
    ) -> RecoveryReport:
        """Clean up after an unclean stop, looking only at staged leftovers.

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
                if not self.path_of(key).exists():  # the row became durable, the link did not
                    self.publish(StagedBlob(path, path.stat().st_size, ""), key)
                    _fsync_dir(self.path_of(key).parent)
                kept += 1
            else:
                if key is not None and self._same_file(path, key):
                    self.delete(key)
                removed += 1
            path.unlink(missing_ok=True)
        return RecoveryReport(kept=kept, removed=removed)

    def _same_file(self, path: Path, key: str) -> bool:
        try:
            return os.path.samefile(path, self.path_of(key))
        except OSError:
            return False

    def _ensure_dir(self, directory: Path) -> None:
        if directory in self._known_dirs:
            return
        directory.mkdir(parents=True, exist_ok=True)
        if self._fsync:
            _fsync_dir(directory.parent)
        if len(self._known_dirs) > 4096:
            self._known_dirs.clear()
        self._known_dirs.add(directory)


def _write_all(fd: int, chunks: list[bytes | memoryview]) -> int:
    total = sum(len(c) for c in chunks)
    written = os.writev(fd, chunks)
    while written < total:  # short write: finish the rest chunk by chunk
        rest = b"".join(bytes(c) for c in chunks)[written:]
        written += os.write(fd, rest)
    return total


def _close_quietly(fd: int, synced: Future[None] | None) -> None:
    if synced is not None:
        with contextlib.suppress(Exception):
            synced.result()
    os.close(fd)


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
