"""The acquisition attributes of a series, read once from its first instance and kept in the index.

The icometrix-compatible API describes every series by ~20 attributes (echo time, pixel spacing, matrix
size, ...); they are read here when a series is first placed, so that a request reads them from the index
instead of opening a file per series.
"""

from __future__ import annotations

import io
import os
from typing import IO, Any

from pydicom import dcmread

SERIES_KEYWORDS = (
    "EchoTime",
    "FlipAngle",
    "SeriesDate",
    "SeriesTime",
    "SequenceName",
    "InversionTime",
    "RepetitionTime",
    "SequenceVariant",
    "ReceiveCoilName",
    "ScanningSequence",
    "BodyPartExamined",
    "TransmitCoilName",
    "MagneticFieldStrength",
    "PixelSpacing",
    "Rows",
    "Columns",
    "ImagesInAcquisition",
    "SpacingBetweenSlices",
    "SliceThickness",
    "ImageOrientationPatient",
)
"""The attributes kept per series."""


def read_series_attributes(
    source: str | os.PathLike[str] | IO[bytes] | bytes | bytearray | memoryview,
) -> dict[str, list[str]]:
    """The :data:`SERIES_KEYWORDS` present in a Part 10 file, each as its values in text (``str`` of each).

    Absent and empty attributes are left out; a file that cannot be read gives what could be read (nothing).

    Parameters
    ----------
    source
        Path, binary file object, or the bytes of the whole file.
    """
    readable: Any = source
    if isinstance(source, (bytes, bytearray, memoryview)):
        readable = _Reader(source)  # not BytesIO: it would copy a file mapped in memory, pixel data and all
    try:
        ds = dcmread(
            readable, stop_before_pixels=True, specific_tags=["SpecificCharacterSet", *SERIES_KEYWORDS]
        )
        found = {keyword: _strings(ds.get(keyword)) for keyword in SERIES_KEYWORDS}
    except Exception:  # a malformed header describes nothing; ingest goes on
        return {}
    return {keyword: values for keyword, values in found.items() if values is not None}


def _strings(value: Any) -> list[str] | None:
    """A value as pydicom gives it, as the text of each of its values (``None``: absent or empty)."""
    if value is None or value == "":
        return None
    if isinstance(value, list | tuple) or (hasattr(value, "__iter__") and not isinstance(value, str)):
        return [str(item) for item in value]
    return [str(value)]


class _Reader(io.RawIOBase):
    """A read-only file over bytes in memory that copies only what is read."""

    def __init__(self, data: bytes | bytearray | memoryview) -> None:
        self._view = memoryview(data).cast("B")
        self._position = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        size = max(0, min(len(buffer), len(self._view) - self._position))
        buffer[:size] = self._view[self._position : self._position + size]
        self._position += size
        return size

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._position, io.SEEK_END: len(self._view)}[whence]
        self._position = max(0, base + offset)
        return self._position

    def tell(self) -> int:
        return self._position
