"""The series attributes kept per series, read from the first instance's bytes or file."""

from __future__ import annotations

from pathlib import Path

from dicomflow.dicom import read_series_attributes
from factories import make_instance, to_bytes


def test_values_are_kept_as_text_multi_values_as_lists_absent_ones_left_out(tmp_path: Path) -> None:
    ds = make_instance("MR", EchoTime="2.46", ScanningSequence=["GR", "IR"], Rows=32, SeriesDate="")
    data = to_bytes(ds)
    found = read_series_attributes(memoryview(data))
    assert found["EchoTime"] == ["2.46"] and found["ScanningSequence"] == ["GR", "IR"]
    assert found["Rows"] == ["32"] and "SeriesDate" not in found and "FlipAngle" not in found
    path = tmp_path / "a.dcm"
    path.write_bytes(data)
    assert read_series_attributes(path) == found == read_series_attributes(data)


def test_a_file_that_is_not_dicom_describes_nothing() -> None:
    assert read_series_attributes(b"not a DICOM file") == {}
