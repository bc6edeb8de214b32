"""The header scanner (``dicom/_scan.py``) against pydicom: same headers, same refusals, else fallback."""

from __future__ import annotations

import io
import warnings
from pathlib import Path
from typing import Any

import pytest
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pydicom.uid import (
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    RLELossless,
)

from dicomflow.dicom import InstanceHeader, read_header
from dicomflow.dicom._scan import Unsupported, scan
from dicomflow.errors import InvalidInstance
from factories import make_instance, to_bytes, write_files


class _Opaque(io.BufferedReader):
    name = "in-memory"  # pydicom asks for one


def by_pydicom(data: bytes, extra: tuple[str, ...] = ()) -> InstanceHeader:
    """``read_header`` through pydicom: a file object that is not a ``BytesIO``."""
    return read_header(_Opaque(io.BytesIO(data)), extra)


def with_sequences(**attrs: Any) -> Dataset:
    """An instance with a nested sequence before the UIDs (as many vendors' private data)."""
    inner = Dataset()
    inner.CodeValue, inner.CodingSchemeDesignator, inner.CodeMeaning = "113691", "DCM", "IVUS"
    item = Dataset()
    item.ReferencedSOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
    item.ReferencedSOPInstanceUID = "1.2.3.4.5"
    item.PurposeOfReferenceCodeSequence = Sequence([inner])
    ds = make_instance(**attrs)
    ds.ReferencedImageSequence = Sequence([item, item])
    ds.ProcedureCodeSequence = Sequence([inner])
    return ds


def undefined_lengths(ds: Dataset) -> Dataset:
    for elem in ds.iterall():
        if elem.VR == "SQ":
            elem.is_undefined_length = True
            for item in elem.value:
                item.is_undefined_length_sequence_item = True
    return ds


@pytest.mark.parametrize("transfer_syntax", [ImplicitVRLittleEndian, ExplicitVRLittleEndian, RLELossless])
@pytest.mark.parametrize("undefined", [False, True], ids=["defined-sq", "undefined-sq"])
def test_scanner_and_pydicom_agree(tmp_path: Path, transfer_syntax: str, undefined: bool) -> None:
    ds = with_sequences(PatientComments="fw://g/p", InstanceNumber=12)
    if undefined:
        ds = undefined_lengths(ds)
    [path] = write_files([ds], tmp_path, transfer_syntax)
    data = path.read_bytes()

    scan(memoryview(data), ())  # the fast path handles it (no Unsupported)
    assert read_header(data, ["PatientComments"]) == by_pydicom(data, ("PatientComments",))


@pytest.mark.parametrize("transfer_syntax", [JPEG2000Lossless])
def test_encapsulated_pixel_data(tmp_path: Path, transfer_syntax: str) -> None:
    [path] = write_files([make_instance()], tmp_path, transfer_syntax)
    data = path.read_bytes()

    assert read_header(data) == by_pydicom(data)
    with pytest.raises(InvalidInstance, match="(?i)truncated"):
        read_header(data[:-10])


@pytest.mark.parametrize("transfer_syntax", [DeflatedExplicitVRLittleEndian, ExplicitVRBigEndian])
def test_other_syntaxes_go_through_pydicom(tmp_path: Path, transfer_syntax: str) -> None:
    [path] = write_files([make_instance()], tmp_path, transfer_syntax)
    data = path.read_bytes()

    with pytest.raises(Unsupported):
        scan(memoryview(data), ())
    assert read_header(data) == by_pydicom(data)


def test_no_preamble_goes_through_pydicom() -> None:
    data = to_bytes(make_instance())

    with pytest.raises(Unsupported):
        scan(memoryview(data[128:]), ())


def test_other_character_sets_go_through_pydicom() -> None:
    data = to_bytes(make_instance(SpecificCharacterSet="ISO_IR 144", PatientName="Иванов^Иван"))

    assert read_header(data).patient_name == "Иванов^Иван"


def _outcome(read: Any, data: bytes) -> InstanceHeader | str:
    try:
        return read(data)  # type: ignore[no-any-return]  # read is either reader, typed Any
    except InvalidInstance:
        return "refused"


@pytest.mark.parametrize("undefined", [False, True], ids=["defined-sq", "undefined-sq"])
def test_cut_anywhere_both_accept_or_both_refuse(undefined: bool) -> None:
    ds = with_sequences()
    data = to_bytes(undefined_lengths(ds) if undefined else ds)
    pixels = data.index(b"\xe0\x7f\x10\x00")

    for cut in [*range(150, pixels + 40, 3), len(data) - 1]:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # pydicom warns about a cut UID
            expected = _outcome(by_pydicom, data[:cut])
        assert _outcome(read_header, data[:cut]) == expected, cut
    assert _outcome(read_header, data[: pixels + 40]) == "refused"


def test_memoryview_and_bytesio_sources() -> None:
    data = to_bytes(make_instance())
    source = io.BytesIO(b"xx" + data)
    source.seek(2)

    assert read_header(memoryview(data)) == read_header(source) == by_pydicom(data)
    source.write(b"the buffer export is released")  # BytesIO can grow again
