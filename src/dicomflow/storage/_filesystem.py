"""Blob store on a local or shared filesystem: ``objects/<key>`` for blobs, ``staging/<node>/`` for writes
in flight (see ``_staged`` for the protocol, ``_staging`` for the staging area).

Publishing hard-links the staged file into ``objects/``: no copy, and the staged name stays the durable
copy until the batch's ``objects/`` directories are fsynced (one directory fsync per batch, not per
instance: each is a journal commit). Readers that need a file read the blob in place (``local_files``).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import IO

from dicomflow.errors import StorageError
from dicomflow.storage._staged import StagedStore, check_key
from dicomflow.storage._staging import StagedBlob, StagingArea, fsync_dir


class FileSystemBlobStore(StagedStore):
    """A blob store in a directory: ``objects/`` for published blobs, ``staging/<node_id>/`` for writes in
    flight (a folder per process, made at its first write).

    Parameters
    ----------
    root
        Directory of the store (created).
    fsync
        Whether to fsync files and directories (only tests turn this off).
    node_id
        The node this process belongs to (default: the host name); recovery looks at its staging only.
    """

    def __init__(self, root: Path, *, fsync: bool = True, node_id: str | None = None) -> None:
        self.root = Path(root)
        self.objects = self.root / "objects"
        self.staging = self.root / "staging"
        self._fsync = fsync
        self._known_dirs: set[Path] = set()
        try:
            self.objects.mkdir(parents=True, exist_ok=True)
            self.staging.mkdir(parents=True, exist_ok=True)
            area = StagingArea(self.staging, node_id or socket.gethostname(), fsync=fsync)
        except (OSError, StorageError) as exc:
            raise StorageError(f"cannot create blob store in {self.root}: {exc}") from exc
        super().__init__(area, defer_release=fsync)

    # -- staging protocol ---------------------------------------------------------------------------------

    def publish(self, staged: StagedBlob, key: str) -> bool:
        """Hard-link the staged file to ``objects/<key>``; ``False`` if a blob is there already."""
        target = self._path(key)
        try:
            self._ensure_dir(target.parent)
            os.link(staged.path, target)
        except FileExistsError:
            return False
        except OSError as exc:
            raise StorageError(f"cannot publish blob {key!r}: {exc}") from exc
        return True

    def _hold_into(self, key: str, path: Path) -> int:
        try:
            os.link(self._path(key), path)
            return path.stat().st_size
        except OSError as exc:
            raise StorageError(f"cannot hold blob {key!r}: {exc}") from exc

    def _make_durable(self, keys: set[str]) -> None:
        if self._fsync:
            for directory in {self._path(key).parent for key in keys}:
                fsync_dir(directory)

    def _published_from(self, path: Path, key: str) -> bool:
        try:
            return os.path.samefile(path, self._path(key))
        except OSError:
            return False

    # -- reading and writing ------------------------------------------------------------------------------

    def put(self, key: str, data: bytes | IO[bytes]) -> None:
        """Write ``data`` to a staged file, fsync it, and rename it to ``objects/<key>`` (replacing)."""
        target = self._path(key)
        temporary = self.staging_area.new_path(suffix=".put")
        try:
            with open(temporary, "wb") as out:
                if isinstance(data, bytes | bytearray | memoryview):
                    out.write(data)
                else:
                    shutil.copyfileobj(data, out, 1 << 20)
                out.flush()
                if self._fsync:
                    os.fsync(out.fileno())
            self._ensure_dir(target.parent)
            os.replace(temporary, target)
            if self._fsync:
                fsync_dir(target.parent)
        except OSError as exc:
            raise StorageError(f"cannot write blob {key!r}: {exc}") from exc
        finally:
            temporary.unlink(missing_ok=True)

    def get(self, key: str) -> bytes:
        """The bytes of a blob."""
        try:
            return self._path(key).read_bytes()
        except OSError as exc:
            raise StorageError(f"cannot read blob {key!r}: {exc}") from exc

    def open(self, key: str) -> IO[bytes]:
        """Open a blob for reading."""
        try:
            return open(self._path(key), "rb")
        except OSError as exc:
            raise StorageError(f"cannot read blob {key!r}: {exc}") from exc

    def read_range(self, key: str, start: int, length: int) -> bytes:
        """Up to ``length`` bytes from offset ``start``."""
        if start < 0 or length < 0:
            raise ValueError(f"invalid range {start}+{length}")
        try:
            with open(self._path(key), "rb") as handle:
                return os.pread(handle.fileno(), length, start)
        except OSError as exc:
            raise StorageError(f"cannot read blob {key!r}: {exc}") from exc

    def size(self, key: str) -> int:
        """The size of a blob in bytes."""
        try:
            return self._path(key).stat().st_size
        except OSError as exc:
            raise StorageError(f"cannot read blob {key!r}: {exc}") from exc

    def exists(self, key: str) -> bool:
        """Whether a blob is stored under ``key``."""
        return self._path(key).is_file()

    def delete(self, key: str) -> None:
        """Remove a blob (missing is fine)."""
        try:
            self._path(key).unlink(missing_ok=True)
        except OSError as exc:
            raise StorageError(f"cannot delete blob {key!r}: {exc}") from exc

    def list_keys(self, prefix: str = "") -> list[str]:
        """The keys starting with ``prefix``, sorted."""
        if prefix:
            check_key(prefix)
        base = self.objects / prefix.rpartition("/")[0]
        if not base.is_dir():
            return []
        found = (str(p.relative_to(self.objects)) for p in base.rglob("*") if p.is_file())
        return sorted(key for key in found if key.startswith(prefix))

    def fetch(self, key: str, target: Path) -> None:
        """Copy a blob to ``target``."""
        try:
            shutil.copyfile(self._path(key), target)
        except OSError as exc:
            raise StorageError(f"cannot read blob {key!r}: {exc}") from exc

    @contextlib.contextmanager
    def local_files(self, keys: Sequence[str], scratch: Path) -> Iterator[list[Path]]:
        """The blobs' own files (read-only: no copy needed on a filesystem)."""
        yield [self._path(key) for key in keys]

    def check(self) -> None:
        """Raise :class:`StorageError` unless the store's directory can be written (``/ready``)."""
        if not os.access(self.objects, os.W_OK | os.X_OK):
            raise StorageError(f"the blob store {self.objects} cannot be written")

    def _path(self, key: str) -> Path:
        """The file of ``key``; keys are relative, made of UID characters, dots, dashes and slashes."""
        return self.objects / check_key(key)

    def _ensure_dir(self, directory: Path) -> None:
        if directory in self._known_dirs:
            return
        directory.mkdir(parents=True, exist_ok=True)
        if self._fsync:
            fsync_dir(directory.parent)
        if len(self._known_dirs) > 4096:
            self._known_dirs.clear()
        self._known_dirs.add(directory)
