"""The data directory lock: one holder at a time, the holder's pid in the refusal, gone with its holder."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from dicomflow.errors import ConfigError
from dicomflow.storage import DataDirLock


def test_a_held_data_directory_is_refused_naming_the_holder(tmp_path: Path) -> None:
    held = DataDirLock.acquire(tmp_path)
    held.record_pid()

    with pytest.raises(ConfigError, match=rf"in use by another dicomflow server \(pid {os.getpid()}\)"):
        DataDirLock.acquire(tmp_path)

    held.release()
    DataDirLock.acquire(tmp_path).release()  # the file stays; only the lock counted


def test_the_lock_ends_with_its_process(tmp_path: Path) -> None:
    pid = os.fork()
    if pid == 0:
        try:
            DataDirLock.acquire(tmp_path).record_pid()
        finally:
            os._exit(0)  # the lock is not released: the end of the process releases it
    os.waitpid(pid, 0)
    assert (tmp_path / "dicomflow.pid").read_text().strip() == str(pid)
    DataDirLock.acquire(tmp_path).release()


def test_a_data_directory_that_cannot_hold_the_lock_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot lock the data directory"):
        DataDirLock.acquire(tmp_path / "missing")
