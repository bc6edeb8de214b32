"""Kernel file locks (``flock``) that tell a live process's files from a dead one's.

A lock dies with the last process holding its file open (a crash included), so there is never a stale lock
to clean up: as PostgreSQL's ``postmaster.pid``, the file may stay behind, only the lock on it counts.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from dicomflow.errors import ConfigError

DATA_DIR_LOCK = "dicomflow.pid"


def try_lock(path: Path, *, create: bool = True) -> int | None:
    """Open ``path`` (created if missing and ``create``) and lock it exclusively without waiting.

    Returns the open descriptor, which holds the lock until closed, or ``None`` if another open file holds
    it (another process, or another descriptor of ours).

    Raises
    ------
    OSError
        If the file cannot be opened (missing and not ``create``, no permission, ...).
    """
    fd = os.open(path, os.O_RDWR | (os.O_CREAT if create else 0), 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    except BaseException:
        os.close(fd)
        raise
    return fd


class DataDirLock:
    """The lock a server holds on its data directory for its whole life (one server per data directory).

    The file ``dicomflow.pid`` in the data directory holds the server's process id; processes forked by the
    server inherit the lock, so it is held until the last of them ends.
    """

    def __init__(self, data_dir: Path, fd: int) -> None:
        self.data_dir = data_dir
        self._fd: int | None = fd

    @classmethod
    def acquire(cls, data_dir: Path) -> DataDirLock:
        """Lock ``data_dir`` (which must exist).

        Raises
        ------
        ConfigError
            If another process holds it: the message names that process and what to do.
        """
        path = data_dir / DATA_DIR_LOCK
        try:
            fd = try_lock(path)
        except OSError as exc:
            raise ConfigError(f"cannot lock the data directory {data_dir} ({path}): {exc.strerror}") from exc
        if fd is None:
            holder = _holder(path)
            raise ConfigError(
                f"the data directory {data_dir} is in use by another dicomflow server ({holder}): stop that "
                "server first, or give this one another --data-dir"
            )
        return cls(data_dir, fd)

    def record_pid(self) -> None:
        """Write our process id into the lock file (read by a server refused the data directory)."""
        if self._fd is not None:
            os.ftruncate(self._fd, 0)
            os.pwrite(self._fd, f"{os.getpid()}\n".encode(), 0)

    def release(self) -> None:
        """Give the lock up (forked processes that inherited it keep it until they end)."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def _holder(path: Path) -> str:
    try:
        pid = path.read_text().split()[0]
    except (OSError, IndexError):
        return "a process that is starting"
    return f"pid {pid}" if pid.isdigit() else "a process that is starting"
