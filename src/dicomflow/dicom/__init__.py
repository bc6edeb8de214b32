"""Pure helpers over pydicom: read an instance header, check UIDs."""

from dicomflow.dicom._file_meta import IMPLEMENTATION_CLASS_UID, dataset_offset, encode_file_meta
from dicomflow.dicom._header import InstanceHeader, header_from_dataset, read_header
from dicomflow.dicom._orientation import ORIENTATION_TOLERANCE, is_same_orientation
from dicomflow.dicom._series import SERIES_KEYWORDS, read_series_attributes
from dicomflow.dicom._uid import check_uid, is_valid_uid
from dicomflow.dicom._volume import Volume, load_volume, volume_to_nifti

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
