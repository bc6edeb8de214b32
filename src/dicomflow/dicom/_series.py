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
    if isinstance(source, (bytes, bytearray, memoryview)):
        source = io.BytesIO(source)
    try:
        ds = dcmread(
            source, stop_before_pixels=True, specific_tags=["SpecificCharacterSet", *SERIES_KEYWORDS]
        )
        found = {keyword: _strings(ds.get(keyword)) for keyword in SERIES_KEYWORDS}
    except Exception:  # noqa: BLE001  # a malformed header describes nothing; ingest goes on
        return {}
    return {keyword: values for keyword, values in found.items() if values is not None}


def _strings(value: Any) -> list[str] | None:
    """A value as pydicom gives it, as the text of each of its values (``None``: absent or empty)."""
    if value is None or value == "":
        return None
    if isinstance(value, list | tuple) or (hasattr(value, "__iter__") and not isinstance(value, str)):
        return [str(item) for item in value]
    return [str(value)]
