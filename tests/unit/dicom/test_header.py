"""``read_header`` on generated files: the values indexed, and every way a file can be refused."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pytest
from pydicom import dcmread
from pydicom.uid import (
    CTImageStorage,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    RLELossless,
)

from dicomflow.dicom import InstanceHeader, encode_file_meta, header_from_dataset, read_header
from dicomflow.errors import InvalidInstance
from factories import encode_dataset, invalid_values_allowed, make_instance, to_bytes, write_files

NATIVE_AND_PYDICOM_COMPRESSED = [
    ImplicitVRLittleEndian,
    ExplicitVRLittleEndian,
    DeflatedExplicitVRLittleEndian,
    RLELossless,
    JPEG2000Lossless,
]


def header_of(data: bytes, extra: tuple[str, ...] = ()) -> InstanceHeader:
    return read_header(io.BytesIO(data), extra)


def with_meta(
    dataset: bytes, sop_instance_uid: str = "", transfer_syntax: str = ExplicitVRLittleEndian
) -> bytes:
    """Data set bytes behind file meta as the receiver writes it (possibly naming no SOP Instance UID)."""
    return encode_file_meta(CTImageStorage, sop_instance_uid, transfer_syntax) + dataset


def test_values_of_a_generated_instance(tmp_path: Path) -> None:
    ds = make_instance(
        "CT",
        InstanceNumber=7,
        AccessionNumber="A-17",
        PatientComments="fw://neuro/Brain",
        TimezoneOffsetFromUTC="+0100",
    )
    [path] = write_files([ds], tmp_path)

    header = read_header(path, ["PatientComments"])

    assert header == InstanceHeader(
        sop_instance_uid=ds.SOPInstanceUID,
        sop_class_uid=CTImageStorage,
        study_instance_uid=ds.StudyInstanceUID,
        series_instance_uid=ds.SeriesInstanceUID,
        transfer_syntax_uid=ExplicitVRLittleEndian,
        patient_id="PAT001",
        patient_name="Doe^Jane",
        patient_sex="F",
        patient_birth_date="19700101",
        study_id="1",
        study_date="20240501",
        study_time="102000",
        study_description="Test study",
        accession_number="A-17",
        series_date="20240501",
        series_time="102000",
        series_description="CT test series",
        series_number=1,
        modality="CT",
        manufacturer="dicomflow tests",
        acquisition_date="20240501",
        acquisition_time="102000",
        acquisition_number=1,
        timezone_offset_from_utc="+0100",
        image_type=("ORIGINAL", "PRIMARY", "AXIAL"),
        instance_number=7,
        image_position_patient=(-4.0, -4.0, 6.0),
        image_orientation_patient=(1.0, 0.0, 0.0, 0.0, 1.0, 0.0),
        slice_location=6.0,
        extra={"PatientComments": "fw://neuro/Brain"},
    )


def test_path_str_and_file_object_give_the_same_header(tmp_path: Path) -> None:
    [path] = write_files([make_instance()], tmp_path)

    with open(path, "rb") as handle:
        from_handle = read_header(handle)

    assert read_header(path) == read_header(str(path)) == from_handle


@pytest.mark.parametrize("transfer_syntax", NATIVE_AND_PYDICOM_COMPRESSED)
def test_header_is_the_same_in_every_transfer_syntax(tmp_path: Path, transfer_syntax: str) -> None:
    ds = make_instance()
    [reference] = write_files([ds], tmp_path / "reference")
    [path] = write_files([ds], tmp_path / "ts", transfer_syntax)

    header = read_header(path)

    assert header.transfer_syntax_uid == transfer_syntax
    assert header == _with_syntax(read_header(reference), transfer_syntax)


def test_big_endian_header(tmp_path: Path) -> None:
    ds = make_instance(InstanceNumber=3)
    [path] = write_files([ds], tmp_path, ExplicitVRBigEndian)

    header = read_header(path)

    assert (header.transfer_syntax_uid, header.instance_number, header.series_number) == (
        ExplicitVRBigEndian,
        3,
        1,
    )
    assert header.image_position_patient == (-4.0, -4.0, 2.0)


def _with_syntax(header: InstanceHeader, transfer_syntax: str) -> InstanceHeader:
    from dataclasses import replace

    return replace(header, transfer_syntax_uid=transfer_syntax)


def test_header_from_dataset_matches_read_header() -> None:
    ds = make_instance()
    assert header_from_dataset(ds) == header_of(to_bytes(ds))


def test_absent_values_are_empty_or_none() -> None:
    ds = make_instance(
        PatientName=None,
        InstanceNumber=None,
        SeriesNumber=None,
        ImageType=None,
        ImagePositionPatient=None,
        SliceLocation=None,
        Modality=None,
    )

    header = header_of(to_bytes(ds))

    assert (header.patient_name, header.modality, header.image_type) == ("", "", ())
    assert (header.instance_number, header.series_number, header.slice_location) == (None, None, None)
    assert header.image_position_patient == ()


# -- refused files -------------------------------------------------------------------------------------


def test_missing_sop_instance_uid() -> None:
    ds = make_instance()
    del ds.SOPInstanceUID

    with pytest.raises(InvalidInstance, match="^SOP Instance UID is missing$"):
        header_of(with_meta(encode_dataset(ds)))


@pytest.mark.parametrize("keyword", ["StudyInstanceUID", "SeriesInstanceUID", "SOPClassUID"])
def test_missing_identifying_uid(keyword: str) -> None:
    attrs: dict[str, Any] = {keyword: None}
    ds = make_instance(**attrs)
    data = encode_file_meta("", ds.SOPInstanceUID, ExplicitVRLittleEndian) + encode_dataset(ds)
    what = {"StudyInstanceUID": "Study Instance UID", "SeriesInstanceUID": "Series Instance UID"}.get(
        keyword, "SOP Class UID"
    )

    with pytest.raises(InvalidInstance, match=f"^{what} is missing$"):
        header_of(data)


@pytest.mark.parametrize(
    ("keyword", "what"),
    [
        ("SOPInstanceUID", "SOP Instance UID"),
        ("StudyInstanceUID", "Study Instance UID"),
        ("SeriesInstanceUID", "Series Instance UID"),
    ],
)
@pytest.mark.parametrize("bad", ["1.2.abc", "1.2.03", "1..2", "1.2/../3", "1." + "2" * 70])
def test_uid_with_illegal_characters(keyword: str, what: str, bad: str) -> None:
    attrs: dict[str, Any] = {keyword: bad}
    with invalid_values_allowed():
        ds = make_instance(**attrs)
        data = with_meta(encode_dataset(ds), ds.SOPInstanceUID)

    with pytest.raises(InvalidInstance) as caught:
        header_of(data)

    assert caught.value.message == f"{what} {bad!r} is not a valid UID"


@pytest.mark.parametrize(
    "payload",
    [b"", b"plain text, not DICOM\n" * 20, b"\x00" * 200, b"%PDF-1.4\n" + b"x" * 300],
    ids=["empty", "text", "zeros", "pdf"],
)
def test_not_dicom(tmp_path: Path, payload: bytes) -> None:
    path = tmp_path / "payload.dcm"
    path.write_bytes(payload)

    with pytest.raises(InvalidInstance, match="not a DICOM file|cannot parse"):
        read_header(path)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(InvalidInstance, match="cannot parse"):
        read_header(tmp_path / "absent.dcm")


def _cut_in_meta(data: bytes) -> int:
    return 132 + 40


def _cut_before_uids(data: bytes) -> int:
    return data.index(b"\x20\x00\x0d\x00") + 12  # inside the Study Instance UID value


def _cut_in_value(data: bytes) -> int:
    return data.index(b"\x28\x00\x30\x00") + 10  # inside Pixel Spacing, after every UID


def _cut_in_pixels(data: bytes) -> int:
    return data.index(b"\xe0\x7f\x10\x00") + 100


@pytest.mark.parametrize(
    "cut",
    [_cut_in_meta, _cut_before_uids, _cut_in_value, _cut_in_pixels, lambda data: len(data) - 1],
    ids=["in-file-meta", "in-study-uid", "in-header-value", "in-pixel-data", "last-byte"],
)
def test_truncated_file_is_refused_as_truncated(cut: Any) -> None:
    data = to_bytes(make_instance())

    with pytest.raises(InvalidInstance, match="(?i)truncated"):
        header_of(data[: cut(data)])


# -- character sets ------------------------------------------------------------------------------------

CHARACTER_SETS = [
    (None, "Doe^Jane", "Plain ASCII"),
    ("ISO_IR 100", "Müller^Jürgen", "Étude crânienne"),
    ("ISO_IR 192", "Müller^Jürgen=山田^太郎", "Étude ÄÖÜ 研究"),
    (["", "ISO 2022 IR 87"], "Yamada^Tarou=山田^太郎=やまだ^たろう", "Kopf"),
    (["", "ISO 2022 IR 149"], "Hong^Gildong=洪^吉洞=홍^길동", "Kopf"),
    ("ISO_IR 144", "Иванов^Иван", "Исследование"),
    ("ISO_IR 126", "Παπαδόπουλος^Γιώργος", "μελέτη"),
    ("ISO_IR 13", "ﾔﾏﾀﾞ^ﾀﾛｳ", "Kopf"),
    ("GB18030", "Wang^XiaoDong=王^小東", "研究"),
]


@pytest.mark.parametrize(("charset", "name", "description"), CHARACTER_SETS)
def test_text_is_decoded_as_pydicom_decodes_it(charset: Any, name: str, description: str) -> None:
    ds = make_instance(
        SpecificCharacterSet=charset,
        PatientName=name,
        StudyDescription=description,
        SeriesDescription=description,
        Manufacturer=description,
    )
    data = to_bytes(ds)

    header = header_of(data)
    full = dcmread(io.BytesIO(data))

    assert header.patient_name == str(full.PatientName) == name
    assert header.study_description == full.StudyDescription == description
    assert header.series_description == full.SeriesDescription
    assert header.manufacturer == full.Manufacturer
