"""The journal of an upload shared through the blob store, for nodes that share no directory (S3).

Each send (one request's files) works in a node-local folder of its own and, when done, puts what it
recorded (received names, journal lines) as one object ``uploads/<id>/journal/<send>.json``. While it runs
it holds a marker ``uploads/<id>/sending/<send>``, put before it checks that the upload is open: completion
moves the upload's row out of ``uploading`` first, then waits until no marker is left, then reads every
journal object. A send that saw the upload open had put its marker before, so completion waits for it; a
send that starts later sees the upload closed and stores nothing (409). The store's list-after-write
consistency (S3's since 2020, MinIO's, RGW's) is what this relies on.
"""

from __future__ import annotations

import json
import logging
import secrets
import shutil
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from dicomflow.storage import BlobStore, upload_prefix

LOGGER = logging.getLogger(__name__)
RECEIVED = ".received"  # as in an upload's folder: one stored name per line
JOURNAL = ".journal"  # one JSON line per file or zip member: what it became
_POLL = 0.1  # seconds between looks at the sends in flight


class SharedJournal:
    """Upload journals in ``store`` (see the module docstring); ``node`` names this node's sends."""

    def __init__(self, store: BlobStore, node: str, *, wait_seconds: float = 120.0) -> None:
        self.store = store
        self.node = node
        self.wait_seconds = wait_seconds

    @contextmanager
    def sending(self, upload_id: str, folder: Path, is_open: Callable[[], bool]) -> Iterator[Path]:
        """A send's own local folder below ``folder``; what it recorded there (``received``, ``journal``
        files of lines) is put into the store at the end, whatever happens.

        ``is_open`` is asked after the marker is in place; when it says no, :class:`SendRefused` is raised
        and nothing is stored.
        """
        send = f"{time.time_ns():020d}-{self.node}-{secrets.token_hex(6)}"
        prefix = upload_prefix(upload_id)
        self.store.put(f"{prefix}sending/{send}", b"")
        try:
            if not is_open():
                raise SendRefused(upload_id)
            own = folder / send
            own.mkdir(parents=True)
            try:
                yield own
            finally:
                record = {"received": _lines(own / RECEIVED), "journal": _lines(own / JOURNAL)}
                if record["received"] or record["journal"]:
                    self.store.put(f"{prefix}journal/{send}.json", json.dumps(record).encode())
                shutil.rmtree(own, ignore_errors=True)
        finally:
            self.store.delete(f"{prefix}sending/{send}")

    def wait_for_sends(self, upload_id: str) -> None:
        """Wait until no send of the upload is in flight (at most ``wait_seconds``: a node that died
        mid-send leaves its marker)."""
        deadline = time.monotonic() + self.wait_seconds
        while self.store.list_keys(f"{upload_prefix(upload_id)}sending/"):
            if time.monotonic() > deadline:
                LOGGER.warning("upload %s: sends still marked in flight; importing without them", upload_id)
                return
            time.sleep(_POLL)

    def records(self, upload_id: str) -> list[dict[str, list[str]]]:
        """Every send's record, in the order the sends started."""
        keys = self.store.list_keys(f"{upload_prefix(upload_id)}journal/")
        return [json.loads(self.store.get(key)) for key in keys]

    def last_activity(self, upload_id: str) -> float:
        """When the newest send started (seconds since the epoch; 0 if none)."""
        keys = self.store.list_keys(upload_prefix(upload_id))
        times = [int(key.rsplit("/", 1)[-1][:20]) for key in keys if key.rsplit("/", 1)[-1][:20].isdigit()]
        return max(times, default=0) / 1e9

    def remove(self, upload_id: str) -> None:
        """Forget an upload's journal (imported or expired)."""
        for key in self.store.list_keys(upload_prefix(upload_id)):
            self.store.delete(key)


class SendRefused(Exception):
    """The upload was no longer open when the send checked: nothing was stored."""


def _lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []
