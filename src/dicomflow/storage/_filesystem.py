"""Blob store on a local filesystem: bytes exactly as received, durable before anyone is told so.

Write protocol (crash-safe without scanning the store):

1. the bytes go to ``staging/<process>/<random>[.<origin>].part`` and are fsynced (``stage``); fsync of a new
   file also makes its name durable on the journaling file systems we run on (ext4, XFS);
2. ``publish`` hard-links the staged file to ``objects/<key>`` (key built from validated UIDs only);
3. the caller commits the index row;
4. ``release`` hands the staged name to a background syncer, which makes a batch of index rows durable
   (``before_release``: the index log sync) and fsyncs the batch's ``objects/`` directories, once per batch,
   and only then removes the staged names.

Until step 4 is done the staged name is the durable copy, so a crash at any point leaves only staged files
behind, and recovery looks at those alone (``dicomflow.ingest.recover_store`` ingests again a staged
instance whose row was lost; ``recover`` then restores lost links and removes what no row needs). One
log sync and one directory fsync per batch instead of per instance matters: each is a journal commit.

Each process stages in a folder of its own, ``staging/<pid>-<random>/``, whose ``.lock`` file it holds locked
(``flock``) while it lives; the lock dies with the process. Recovery takes only folders whose lock it can
take, so it never touches the writes of a process still running (a server, an import, an upload worker).
A staged file may name its origin (who sent it, for which project: whatever the caller needs to ingest it
again as it would have been): the folder's ``origins`` journal holds each distinct origin once, written and
fsynced before the first file naming it, and the file name carries its number.
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
from dicomflow.storage._locks import try_lock

T = TypeVar("T")
_SYNC_INTERVAL = 0.2  # seconds between directory syncs of released blobs
_SYNC_BATCH = 512  # or sooner, when this many are waiting
_LOCK = ".lock"  # in each process's staging folder, locked by that process while it lives
_ORIGINS = "origins"  # in each process's staging folder: "<number> <origin>" lines
_NEW = ".new-"  # a staging folder being made (its lock is taken before it gets its name)
LOGGER = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class StagedBlob:
    """Bytes written and fsynced under a temporary name, not yet visible under a key."""

    path: Path
    size: int
    sha256: str


@dataclass(slots=True)
class _OwnStaging:
    """The staging folder of this process, the descriptor holding its lock, and its origins by number."""

    directory: Path
    lock_fd: int
    origins: dict[str, int]


@dataclass(frozen=True, slots=True)
class RecoveryReport:
    """What ``recover`` found after an unclean stop."""

    kept: int
    removed: int


class FileSystemBlobStore:
    """A blob store in a directory: ``objects/`` for published blobs, ``staging/`` for writes in flight
    (a folder per process, made at its first write).

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
        self._own: _OwnStaging | None = None
        self._own_pid = 0
        self._origins_lock = threading.Lock()
        self._claimed: list[tuple[Path, int]] | None = None  # dead processes' folders, during recovery
        self._journals: dict[Path, dict[str, str]] = {}
        try:
            self.objects.mkdir(parents=True, exist_ok=True)
            self.staging.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StorageError(f"cannot create blob store in {self.root}: {exc}") from exc

    def new_staging_path(self, origin: str = "") -> Path:
        """A fresh name in this process's staging folder, naming ``origin`` (see :meth:`origin_of`)."""
        own = self._own_staging()
        if not origin:
            return own.directory / f"{secrets.token_hex(12)}.part"
        number = own.origins.get(origin)
        if number is None:
            number = self._record_origin(own, origin)
        return own.directory / f"{secrets.token_hex(12)}.{number}.part"

    def stage(self, chunks: list[bytes | memoryview], origin: str = "") -> StagedBlob:
        """Write ``chunks`` to a new staged file and fsync it; return its size and SHA-256.

        ``origin`` (one line of text; e.g. who sent the bytes) is kept with the staged file for recovery.
        """
        return self.stage_while(chunks, lambda: None, origin)[0]

    def stage_while(
        self, chunks: list[bytes | memoryview], work: Callable[[], T], origin: str = ""
    ) -> tuple[StagedBlob, T]:
        """:meth:`stage`, running ``work`` (e.g. parsing the header) while the disk works.

        The fsync waits in a thread of its own, the hash and ``work`` run in the caller's. If ``work``
        raises, the staged file is removed and the exception propagates.
        """
        path = self.new_staging_path(origin)
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
        path = self._own_staging().directory / f"{secrets.token_hex(12)}.dcm"
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
        self._release_claims()
        own, self._own = self._own, None
        if own is not None and self._own_pid == os.getpid():
            if not _staged_in(own.directory):  # a clean stop leaves no folder behind
                _remove_staging_folder(own.directory)
            os.close(own.lock_fd)

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
        """Staged files left by processes that stopped before finishing them.

        Their folders stay locked by this process (so that no other recovery takes them) until
        :meth:`recover` or :meth:`close`; the folders of live processes, ours included, are left alone.
        """
        if self._claimed is None:
            self._claimed = self._claim_dead()
        # staged directly under staging/: left by a version before per-process folders
        found = [self.staging, *(directory for directory, _fd in self._claimed)]
        return [p for d in found for p in sorted(d.glob("*.part"))] + [
            p for d in found for p in sorted(d.glob("*.dcm"))
        ]

    def origin_of(self, path: Path) -> str:
        """The origin a staged file was written with (``""`` if none or unknown)."""
        parts = path.name.split(".")
        if len(parts) != 3:
            return ""
        journal = self._journals.get(path.parent)
        if journal is None:
            journal = self._journals[path.parent] = _read_origins(path.parent / _ORIGINS)
        return journal.get(parts[1], "")

    def _own_staging(self) -> _OwnStaging:
        own = self._own
        if own is not None and self._own_pid == os.getpid():
            return own
        with self._origins_lock:
            if self._own is None or self._own_pid != os.getpid():
                if self._own is not None:  # forked: the parent's folder, lock and threads stay the parent's
                    with contextlib.suppress(OSError):
                        os.close(self._own.lock_fd)
                if self._own_pid:
                    self._fsyncs = self._syncer = None
                self._own = self._make_own_staging()
                self._own_pid = os.getpid()
            return self._own

    def _make_own_staging(self) -> _OwnStaging:
        """A new folder, locked before it gets its final name, so that recovery never sees it unlocked."""
        for _attempt in range(8):
            name = f"{os.getpid()}-{secrets.token_hex(6)}"
            making, directory = self.staging / f"{_NEW}{name}", self.staging / name
            try:
                making.mkdir()
                fd = try_lock(making / _LOCK)
            except FileNotFoundError as exc:  # a recovery took the new folder for a dead one's: again
                if not self.staging.is_dir():
                    raise StorageError(f"cannot make a staging folder in {self.staging}: {exc}") from exc
                continue
            except OSError as exc:
                raise StorageError(f"cannot make a staging folder in {self.staging}: {exc}") from exc
            if fd is None:  # as above
                continue
            try:
                os.rename(making, directory)
                if os.stat(directory / _LOCK).st_ino == os.fstat(fd).st_ino:
                    if self._fsync:
                        _fsync_dir(self.staging)
                    return _OwnStaging(directory, fd, {})
            except OSError:
                pass  # as above: a recovery removed it meanwhile
            os.close(fd)
        raise StorageError(f"cannot make a staging folder in {self.staging}: taken away repeatedly")

    def _record_origin(self, own: _OwnStaging, origin: str) -> int:
        if "\n" in origin:
            raise ValueError(f"an origin is one line of text, not {origin!r}")
        with self._origins_lock:
            number = own.origins.get(origin)
            if number is not None:
                return number
            number = len(own.origins)
            path = own.directory / _ORIGINS
            try:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
                try:
                    os.write(fd, f"{number} {origin}\n".encode())
                    if self._fsync:
                        os.fsync(fd)  # before any staged file names it
                finally:
                    os.close(fd)
            except OSError as exc:
                raise StorageError(f"cannot write {path}: {exc}") from exc
            own.origins[origin] = number
            return number

    def _claim_dead(self) -> list[tuple[Path, int]]:
        """Lock the staging folders of processes that ended (their lock is free)."""
        own = self._own.directory if self._own is not None and self._own_pid == os.getpid() else None
        claimed: list[tuple[Path, int]] = []
        try:
            folders = sorted(self.staging.iterdir())
        except FileNotFoundError:
            return claimed
        for directory in folders:
            if directory == own or not directory.is_dir():
                continue
            try:
                fd = try_lock(directory / _LOCK)
            except OSError:  # removed meanwhile by another recovery
                continue
            if fd is not None:
                claimed.append((directory, fd))
        return claimed

    def _release_claims(self) -> None:
        """Remove the claimed folders of ended processes (their staged files are dealt with) and unlock."""
        claimed, self._claimed = self._claimed or [], None
        for directory, fd in claimed:
            if not _staged_in(directory):
                _remove_staging_folder(directory)
            os.close(fd)
            self._journals.pop(directory, None)
        if claimed and self._fsync:
            _fsync_dir(self.staging)

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
        self._release_claims()
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


def _staged_in(directory: Path) -> bool:
    return any(directory.glob("*.part")) or any(directory.glob("*.dcm"))


def _remove_staging_folder(directory: Path) -> None:
    """Remove a staging folder with nothing staged in it: its journal, its lock file (last), itself."""
    with contextlib.suppress(OSError):
        for path in directory.iterdir():
            if path.name != _LOCK:
                path.unlink(missing_ok=True)
        (directory / _LOCK).unlink(missing_ok=True)
        directory.rmdir()


def _read_origins(path: Path) -> dict[str, str]:
    """The origins journal of a staging folder: origin by number (as text)."""
    try:
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return {}
    origins = {}
    for line in lines:
        number, _, origin = line.partition(" ")
        if origin:
            origins[number] = origin
    return origins


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
