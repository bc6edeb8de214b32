"""The fast file-meta encoder writes exactly what pydicom writes."""

from __future__ import annotations

from io import BytesIO

import pytest
from pydicom import dcmread
from pydicom.dataset import FileMetaDataset
from pydicom.filebase import DicomFileLike
from pydicom.filewriter import write_file_meta_info
from pydicom.uid import (
    JPEG2000,
    UID,
    CTImageStorage,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
)

from dicomflow.dicom import IMPLEMENTATION_CLASS_UID, dataset_offset, encode_file_meta
from dicomflow.dicom._file_meta import IMPLEMENTATION_VERSION_NAME
from factories import dataset_offset as factories_offset
from factories import make_instance, to_bytes


def _pydicom_meta(sop_class: str, sop: str, syntax: str, ae: str) -> bytes:
    meta = FileMetaDataset()
    meta.FileMetaInformationVersion = b"\x00\x01"
    meta.MediaStorageSOPClassUID = UID(sop_class)
    meta.MediaStorageSOPInstanceUID = UID(sop)
    meta.TransferSyntaxUID = UID(syntax)
    meta.ImplementationClassUID = IMPLEMENTATION_CLASS_UID
    meta.ImplementationVersionName = IMPLEMENTATION_VERSION_NAME
    if ae:
        meta.SourceApplicationEntityTitle = ae
    out = BytesIO()
    out.write(b"\x00" * 128 + b"DICM")
    write_file_meta_info(DicomFileLike(out), meta, enforce_standard=True)
    return out.getvalue()


# a 64-character UID of generate_uid()'s shape, fixed: xdist workers must collect the same test ids
LONG_UID = "1.2.826.0.1.3680043.8.498.93958101060489017100497705261914419695"


@pytest.mark.parametrize("syntax", [ImplicitVRLittleEndian, ExplicitVRBigEndian, JPEG2000])
@pytest.mark.parametrize("ae", ["", "STORESCU", "kp-lung"])
@pytest.mark.parametrize("sop", ["1.2.3", "1.2.34", LONG_UID])
def test_identical_to_pydicom(syntax: str, ae: str, sop: str) -> None:
    assert encode_file_meta(CTImageStorage, sop, syntax, ae) == _pydicom_meta(CTImageStorage, sop, syntax, ae)


def test_reads_back() -> None:
    meta = dcmread(
        BytesIO(encode_file_meta(CTImageStorage, "1.2.3", ImplicitVRLittleEndian, "X")), force=True
    )
    assert meta.file_meta.MediaStorageSOPInstanceUID == "1.2.3"
    assert meta.file_meta.SourceApplicationEntityTitle == "X"


@pytest.mark.parametrize("ae", ["", "MODALITY_A"])
def test_dataset_offset_is_where_the_file_meta_ends(ae: str) -> None:
    ds = make_instance()
    data = to_bytes(ds)
    dataset = data[factories_offset(data) :]
    meta = encode_file_meta(ds.SOPClassUID, ds.SOPInstanceUID, ExplicitVRLittleEndian, ae)
    for part10 in (data, meta + dataset, meta[128:] + dataset):
        assert part10[dataset_offset(part10) :] == dataset
    assert dataset_offset(dataset) == 0
    assert dataset_offset(meta[: len(meta) - 3]) == len(meta) - 3  # cut short inside the file meta
