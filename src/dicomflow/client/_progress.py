"""The Rich progress bar of an upload (imported only when a bar is shown)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

from dicomflow.client._types import OnSent


@contextmanager
def upload_bar(total_files: int, total_bytes: int) -> Iterator[OnSent]:
    """A bar of bytes sent (with files sent in its label) on stderr; yields the callback advancing it."""
    progress = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        console=Console(stderr=True),
    )
    task = progress.add_task(f"uploading 0/{total_files} files", total=total_bytes)
    lock, sent = threading.Lock(), [0]

    def advance(_path: Path, size: int) -> None:
        with lock:
            sent[0] += 1
            progress.update(task, advance=size, description=f"uploading {sent[0]}/{total_files} files")

    with progress:
        yield advance
