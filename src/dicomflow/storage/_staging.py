"""A node's staging area: where bytes are written and fsynced before anyone is told they are stored.

Layout: ``<staging>/<node_id>/<pid>-<random>/``, a folder per process, whose ``.lock`` file the process
holds locked (``flock``) while it lives; the lock dies with the process. Recovery takes only folders of its
own node whose lock it can take, so it never touches the writes of a process still running on this node,
nor anything of another node (whose locks it cannot see: ``flock`` does not cross hosts). A staged file may
name its origin (who sent it, for which project): the folder's ``origins`` journal holds each distinct
origin once, written and fsynced before the first file naming it, and the file name carries its number.

Folders of a version before nodes (``<staging>/<pid>-<random>/`` and loose files in ``<staging>``) are
recovered by whichever node comes first, as before.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import secrets
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from dicomflow.errors import StorageError
from dicomflow.storage._locks import try_lock

T = TypeVar("T")
_LOCK = ".lock"  # in each process's staging folder, locked by that process while it lives
_ORIGINS = "origins"  # in each process's staging folder: "<number> <origin>" lines
_NEW = ".new-"  # a staging folder being made (its lock is taken before it gets its name)


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


class StagingArea:
    """The staging folders of one node below ``root`` (``root/<node_id>/<process>/``)."""

    def __init__(self, root: Path, node_id: str, *, fsync: bool = True) -> None:
        self.root = Path(root)
        self.directory = self.root / node_id
        self.fsync = fsync
        self._own: _OwnStaging | None = None
        self._own_pid = 0
        self._lock = threading.Lock()
        self._fsyncs: ThreadPoolExecutor | None = None
        self._claimed: list[tuple[Path, int]] | None = None  # dead processes' folders, during recovery
        self._journals: dict[Path, dict[str, str]] = {}
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StorageError(f"cannot create the staging area {self.directory}: {exc}") from exc

    # -- writing ------------------------------------------------------------------------------------------

    def new_path(self, origin: str = "", suffix: str = ".part") -> Path:
        """A fresh name in this process's staging folder, naming ``origin`` (see :meth:`origin_of`)."""
        own = self._own_staging()
        if not origin:
            return own.directory / f"{secrets.token_hex(12)}{suffix}"
        number = own.origins.get(origin)
        if number is None:
            number = self._record_origin(own, origin)
        return own.directory / f"{secrets.token_hex(12)}.{number}{suffix}"

    def stage_while(
        self, chunks: list[bytes | memoryview], work: Callable[[], T], origin: str = ""
    ) -> tuple[StagedBlob, T]:
        """Write ``chunks`` to a new staged file and fsync it, running ``work`` while the disk works.

        The fsync waits in a thread of its own, the hash and ``work`` run in the caller's. If ``work``
        raises, the staged file is removed and the exception propagates.
        """
        path = self.new_path(origin)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except OSError as exc:
            raise StorageError(f"cannot write {path}: {exc}") from exc
        synced: Future[None] | None = None
        try:
            size = _write_all(fd, chunks)
            synced = self._sync_pool().submit(os.fsync, fd) if self.fsync else None
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
        with self._lock:
            if self._fsyncs is None:
                self._fsyncs = ThreadPoolExecutor(max_workers=8, thread_name_prefix="blob-fsync")
            return self._fsyncs

    # -- recovery -----------------------------------------------------------------------------------------

    def leftovers(self) -> list[Path]:
        """Staged files left by this node's processes that stopped before finishing them.

        Their folders stay locked by this process (so that no other recovery takes them) until
        :meth:`release_claims`; the folders of live processes, ours included, are left alone.
        """
        if self._claimed is None:
            self._claimed = self._claim_dead()
        found = [self.root, *(directory for directory, _fd in self._claimed)]  # loose in root: legacy
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

    def release_claims(self) -> None:
        """Remove the claimed folders of ended processes (their staged files are dealt with) and unlock."""
        claimed, self._claimed = self._claimed or [], None
        for directory, fd in claimed:
            if not _staged_in(directory):
                _remove_staging_folder(directory)
            os.close(fd)
            self._journals.pop(directory, None)
        if claimed and self.fsync:
            fsync_dir(self.directory)

    def close(self) -> None:
        """Stop the fsync threads, give up claims, and remove this process's folder if nothing is in it."""
        if self._fsyncs is not None:
            self._fsyncs.shutdown()
            self._fsyncs = None
        self.release_claims()
        own, self._own = self._own, None
        if own is not None and self._own_pid == os.getpid():
            if not _staged_in(own.directory):  # a clean stop leaves no folder behind
                _remove_staging_folder(own.directory)
            os.close(own.lock_fd)

    # -- this process's folder ----------------------------------------------------------------------------

    def _own_staging(self) -> _OwnStaging:
        own = self._own
        if own is not None and self._own_pid == os.getpid():
            return own
        with self._lock:
            if self._own is None or self._own_pid != os.getpid():
                if self._own is not None:  # forked: the parent's folder, lock and threads stay the parent's
                    with contextlib.suppress(OSError):
                        os.close(self._own.lock_fd)
                if self._own_pid:
                    self._fsyncs = None
                self._own = self._make_own_staging()
                self._own_pid = os.getpid()
            return self._own

    def _make_own_staging(self) -> _OwnStaging:
        """A new folder, locked before it gets its final name, so that recovery never sees it unlocked."""
        for _attempt in range(8):
            name = f"{os.getpid()}-{secrets.token_hex(6)}"
            making, directory = self.directory / f"{_NEW}{name}", self.directory / name
            try:
                making.mkdir()
                fd = try_lock(making / _LOCK)
            except FileNotFoundError as exc:  # a recovery took the new folder for a dead one's: again
                if not self.directory.is_dir():
                    raise StorageError(f"cannot make a staging folder in {self.directory}: {exc}") from exc
                continue
            except OSError as exc:
                raise StorageError(f"cannot make a staging folder in {self.directory}: {exc}") from exc
            if fd is None:  # as above
                continue
            try:
                os.rename(making, directory)
                if os.stat(directory / _LOCK).st_ino == os.fstat(fd).st_ino:
                    if self.fsync:
                        fsync_dir(self.directory)
                    return _OwnStaging(directory, fd, {})
            except OSError:
                pass  # as above: a recovery removed it meanwhile
            os.close(fd)
        raise StorageError(f"cannot make a staging folder in {self.directory}: taken away repeatedly")

    def _record_origin(self, own: _OwnStaging, origin: str) -> int:
        if "\n" in origin:
            raise ValueError(f"an origin is one line of text, not {origin!r}")
        with self._lock:
            number = own.origins.get(origin)
            if number is not None:
                return number
            number = len(own.origins)
            path = own.directory / _ORIGINS
            try:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
                try:
                    os.write(fd, f"{number} {origin}\n".encode())
                    if self.fsync:
                        os.fsync(fd)  # before any staged file names it
                finally:
                    os.close(fd)
            except OSError as exc:
                raise StorageError(f"cannot write {path}: {exc}") from exc
            own.origins[origin] = number
            return number

    def _claim_dead(self) -> list[tuple[Path, int]]:
        """Lock this node's staging folders of processes that ended (their lock is free), and the
        process folders of a version before nodes."""
        own = self._own.directory if self._own is not None and self._own_pid == os.getpid() else None
        claimed: list[tuple[Path, int]] = []
        for directory in [*_folders(self.directory), *_folders(self.root, legacy=True)]:
            if directory == own:
                continue
            try:
                fd = try_lock(directory / _LOCK)
            except OSError:  # removed meanwhile by another recovery
                continue
            if fd is not None:
                claimed.append((directory, fd))
        return claimed


def _folders(parent: Path, *, legacy: bool = False) -> list[Path]:
    """The process folders in ``parent`` (in the node-less layout, those with a lock file of their own)."""
    try:
        found = sorted(p for p in parent.iterdir() if p.is_dir() and not p.name.startswith(_NEW))
    except FileNotFoundError:
        return []
    return [p for p in found if (p / _LOCK).exists()] if legacy else found


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


def fsync_dir(directory: Path) -> None:
    """fsync a directory: its entries become durable."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
