"""Pure helpers over pydicom: read an instance header, check UIDs, stack a series into a volume.

The volume (``Volume``, ``load_volume``, ``volume_to_nifti``) needs numpy, so it is imported when one of
those names is first used: the receiving and HTTP processes read headers only and never load numpy.
"""

import importlib
from typing import TYPE_CHECKING, Any

from dicomflow.dicom._file_meta import IMPLEMENTATION_CLASS_UID, dataset_offset, encode_file_meta
from dicomflow.dicom._header import InstanceHeader, header_from_dataset, read_header
from dicomflow.dicom._orientation import ORIENTATION_TOLERANCE, is_same_orientation
from dicomflow.dicom._series import SERIES_KEYWORDS, read_series_attributes
from dicomflow.dicom._uid import check_uid, is_valid_uid

if TYPE_CHECKING:
    from dicomflow.dicom._volume import Volume, load_volume, volume_to_nifti

_ON_FIRST_USE = {"Volume": "._volume", "load_volume": "._volume", "volume_to_nifti": "._volume"}

__all__ = [
    "IMPLEMENTATION_CLASS_UID",
    "ORIENTATION_TOLERANCE",
    "SERIES_KEYWORDS",
    "InstanceHeader",
    "Volume",
    "check_uid",
    "dataset_offset",
    "encode_file_meta",
    "header_from_dataset",
    "is_same_orientation",
    "is_valid_uid",
    "load_volume",
    "read_header",
    "read_series_attributes",
    "volume_to_nifti",
]


def __getattr__(name: str) -> Any:
    if name not in _ON_FIRST_USE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(_ON_FIRST_USE[name], __name__), name)
