"""Zip archives of stored instances, streamed as they are written (nothing is buffered whole).

Members are stored uncompressed (DICOM pixel data rarely shrinks, and the bytes stay identical to what was
received) under ``<sop_instance_uid>.dcm``; a second object kept under the same SOP Instance UID becomes
``<sop_instance_uid>_2.dcm``.
"""

from __future__ import annotations

import zipfile
from collections.abc import Iterable, Iterator
from typing import IO, Protocol

from dicomflow.usecases.catalog import BlobRef

CHUNK = 1 << 20
"""Bytes read from a blob at a time."""


class Blobs(Protocol):
    """Where the bytes are: the application's blob store."""

    def open(self, key: str) -> IO[bytes]:
        """Open the blob under ``key`` for reading."""
        ...


class _Sink:
    """A write-only, non-seekable target for ``ZipFile``: collects what is written until taken."""

    def __init__(self) -> None:
        self._parts: list[bytes] = []

    def write(self, data: bytes) -> int:
        self._parts.append(bytes(data))
        return len(data)

    def flush(self) -> None:
        pass

    def close(self) -> None:
        pass

    def take(self) -> bytes:
        data = b"".join(self._parts)
        self._parts.clear()
        return data


def zip_stream(store: Blobs, blobs: Iterable[BlobRef]) -> Iterator[bytes]:
    """Yield a zip archive of ``blobs`` piece by piece, each member byte-identical to its blob.

    Parameters
    ----------
    store
        Where the bytes are.
    blobs
        The instances to pack, in archive order.

    Yields
    ------
    bytes
        Consecutive pieces of the archive.
    """
    sink = _Sink()
    names = _MemberNames()
    with zipfile.ZipFile(sink, "w", zipfile.ZIP_STORED) as archive:
        for blob in blobs:
            info = zipfile.ZipInfo(
                names.next(blob.sop_instance_uid), date_time=blob.received_at.timetuple()[:6]
            )
            info.file_size = blob.size  # lets zipfile decide on ZIP64 up front
            with store.open(blob.blob_key) as source, archive.open(info, "w") as member:
                while block := source.read(CHUNK):
                    member.write(block)
                    yield sink.take()
            yield sink.take()
    yield sink.take()


class _MemberNames:
    def __init__(self) -> None:
        self._seen: dict[str, int] = {}

    def next(self, sop_instance_uid: str) -> str:
        count = self._seen[sop_instance_uid] = self._seen.get(sop_instance_uid, 0) + 1
        return f"{sop_instance_uid}.dcm" if count == 1 else f"{sop_instance_uid}_{count}.dcm"
