"""Validity: required tags present (type 1), well-formed for their VR, matching expected values."""

from __future__ import annotations

import datetime
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import pytest
from pydicom import dcmread
from pydicom.dataset import Dataset

from dicomflow.checks import SeriesFacts, ValueRule, check_validity
from factories import invalid_values_allowed, make_series, to_bytes

UID = "1.2.826.0.1.3680043.8.498.2"
T1 = SeriesFacts(UID, 2, "T1", "MR", ())


def findings(
    instances: Sequence[Mapping[Any, object]] | Sequence[Dataset],
    tags: list[str | int] | None = None,
    values: Mapping[str | int, ValueRule] | None = None,
) -> list[tuple[str, str]]:
    return [(f.code, f.message) for f in check_validity(T1, instances, tags or [], values or {})]


def test_missing_tag_once_per_series() -> None:
    instances: list[dict[str, str | None]] = [{"PatientID": "P1"}] * 37
    instances += [{}, {"PatientID": ""}, {"PatientID": None}]
    assert findings(instances, ["PatientID"]) == [
        ("missing-tag", "series 2 (T1): PatientID missing in 3 of 40 instances")
    ]


@pytest.mark.parametrize("tag", ["PatientID", 0x00100020])
def test_tag_by_keyword_or_number(tag: str | int) -> None:
    assert findings([{}], [tag]) == [("missing-tag", "series 2 (T1): PatientID missing in 1 of 1 instance")]


def test_values_by_tag_number_in_a_mapping() -> None:
    assert findings([{0x00100020: "P1"}], ["PatientID"]) == []


@pytest.mark.parametrize(
    ("keyword", "value", "vr"),
    [
        pytest.param("StudyInstanceUID", "1.2.abc", "UI", id="uid-with-letters"),
        pytest.param("StudyInstanceUID", "1.02.3", "UI", id="uid-leading-zero"),
        pytest.param("StudyInstanceUID", "1." + "2" * 64, "UI", id="uid-too-long"),
        pytest.param("StudyDate", "2024-05-01", "DA", id="iso-date"),
        pytest.param("StudyDate", "20240230", "DA", id="february-30"),
        pytest.param("StudyDate", "20240101-20240201", "DA", id="date-range"),
        pytest.param("StudyTime", "250000", "TM", id="hour-25"),
        pytest.param("AcquisitionDateTime", "20240501102000+2500", "DT", id="datetime-offset-out-of-range"),
        pytest.param("SliceThickness", "1,5", "DS", id="decimal-comma"),
        pytest.param("InstanceNumber", "1.5", "IS", id="fractional-is"),
        pytest.param("Modality", "mr", "CS", id="lower-case-cs"),
        pytest.param("PatientAge", "45", "AS", id="age-without-unit"),
        pytest.param("PatientName", "A" * 65, "PN", id="pn-component-too-long"),
        pytest.param("Rows", "512", "US", id="text-for-us"),
        pytest.param("Rows", 70000, "US", id="us-out-of-range"),
    ],
)
def test_malformed_value(keyword: str, value: Any, vr: str) -> None:
    shown = str(value) if len(str(value)) <= 64 else f"{str(value)[:64]}\u2026"
    assert findings([{keyword: value}, {keyword: value}], [keyword]) == [
        ("malformed-value", f"series 2 (T1): {keyword} {shown!r} is not a valid {vr} in 2 of 2 instances")
    ]


@pytest.mark.parametrize(
    ("keyword", "value"),
    [
        ("StudyInstanceUID", "1.2.826.0.1.3680043.8.498.1"),
        ("StudyDate", "20240229"),
        ("StudyDate", datetime.date(2024, 5, 1)),
        ("StudyTime", "102000.123"),
        ("StudyTime", "1020"),
        ("AcquisitionDateTime", "20240501102000+0100"),
        ("SliceThickness", "2.5"),
        ("SliceThickness", 2.5),
        ("SliceThickness", 0.1 + 0.2),
        ("InstanceNumber", 17),
        ("InstanceNumber", " 17 "),
        ("ImageType", ["ORIGINAL", "PRIMARY", "", "AXIAL"]),
        ("ImageType", "ORIGINAL\\PRIMARY"),
        ("PatientAge", "045Y"),
        ("PatientName", "Doe^Jane"),
        ("Rows", 512),
        ("ImagePositionPatient", [-4, -4, 12.5]),
        ("PatientComments", "a \\ backslash is text in LT"),
        (0x00091010, b"private bytes"),
    ],
)
def test_well_formed_value(keyword: str | int, value: Any) -> None:
    assert findings([{keyword: value}], [keyword]) == []


@pytest.mark.parametrize(
    ("rule", "value", "expected"),
    [
        pytest.param("MR", "MR", None, id="exact"),
        pytest.param(" MR ", "MR ", None, id="exact-stripped"),
        pytest.param("MR", "CT", "Modality 'CT' does not match 'MR'", id="exact-mismatch"),
        pytest.param(re.compile("^m", re.I), "MR", None, id="regex"),
        pytest.param(re.compile("^P", re.I), "MR", "Modality 'MR' does not match /^P/i", id="regex-mismatch"),
    ],
)
def test_value_rule_on_modality(rule: ValueRule, value: str, expected: str | None) -> None:
    result = findings([{"Modality": value}], values={"Modality": rule})
    assert result == (
        [] if expected is None else [("value-mismatch", f"series 2 (T1): {expected} in 1 of 1 instance")]
    )


def is_thin(value: object) -> bool:
    return float(str(value)) <= 3


def test_value_rule_callable() -> None:
    instances: list[dict[str, object]] = [{"SliceThickness": v} for v in ("1", "5", 4.0)]
    assert findings(instances, values={"SliceThickness": is_thin}) == [
        ("value-mismatch", "series 2 (T1): SliceThickness '5' fails check is_thin in 2 of 3 instances")
    ]


def test_callable_that_raises_rejects_the_value() -> None:
    assert findings([{"SeriesDescription": "thin"}], values={"SeriesDescription": is_thin}) == [
        ("value-mismatch", "series 2 (T1): SeriesDescription 'thin' fails check is_thin in 1 of 1 instance")
    ]


@pytest.mark.parametrize(
    ("keyword", "value", "rule"),
    [
        pytest.param("ImageType", ["ORIGINAL", "PRIMARY"], "ORIGINAL\\PRIMARY", id="multi-valued-exact"),
        pytest.param(
            "ImageType", ["ORIGINAL", "PRIMARY"], re.compile(r"\bPRIMARY\b"), id="multi-valued-regex"
        ),
        pytest.param("Rows", 512, lambda rows: rows >= 256, id="binary-vr-decoded"),
        pytest.param("PixelSpacing", [0.5, 0.5], lambda v: v == "0.5\\0.5", id="ds-as-text"),
    ],
)
def test_rules_see_dicom_values(keyword: str, value: object, rule: ValueRule) -> None:
    assert findings([{keyword: value}], values={keyword: rule}) == []


def test_expected_value_implies_required_and_each_problem_once() -> None:
    instances: list[Mapping[str, Any]] = [{}, {"Modality": "m r"}, {"Modality": "CT"}, {"Modality": "MR"}]
    assert findings(instances, ["Modality"], {"Modality": "MR", "StudyDate": re.compile(".")}) == [
        ("missing-tag", "series 2 (T1): Modality missing in 1 of 4 instances"),
        ("malformed-value", "series 2 (T1): Modality 'm r' is not a valid CS in 1 of 4 instances"),
        ("value-mismatch", "series 2 (T1): Modality 'CT' does not match 'MR' in 1 of 4 instances"),
        ("missing-tag", "series 2 (T1): StudyDate missing in 4 of 4 instances"),
    ]


def test_unknown_keyword_is_misuse() -> None:
    with pytest.raises(ValueError, match="'PatientIdentifier' is not a DICOM keyword"):
        check_validity(T1, [{}], ["PatientIdentifier"], {})


def test_no_instances_no_findings() -> None:
    assert check_validity(T1, [], ["PatientID"], {"Modality": "MR"}) == []


# -- through pydicom datasets -------------------------------------------------------------------------------

REQUIRED = ["PatientID", "StudyInstanceUID", "StudyDate", "Modality", "SeriesNumber", "PixelSpacing"]
RoundTrip = Callable[[list[Dataset]], list[Dataset]]


def in_memory(datasets: list[Dataset]) -> list[Dataset]:
    return datasets


def read_back(datasets: list[Dataset]) -> list[Dataset]:
    """As stored and read again: values stay raw until accessed (pydicom would warn on invalid ones)."""
    from io import BytesIO

    with invalid_values_allowed():
        return [dcmread(BytesIO(to_bytes(ds)), stop_before_pixels=True) for ds in datasets]


@pytest.fixture(params=[in_memory, read_back], ids=["in-memory", "read-back"])
def round_trip(request: pytest.FixtureRequest) -> RoundTrip:
    return request.param  # type: ignore[no-any-return]  # request.param is Any


def test_valid_series_has_no_finding(round_trip: RoundTrip) -> None:
    datasets = round_trip(make_series(5, "MR"))
    assert (
        check_validity(
            T1, datasets, REQUIRED, {"Modality": "MR", "SeriesDescription": re.compile("mr", re.I)}
        )
        == []
    )


def test_dataset_problems(round_trip: RoundTrip) -> None:
    datasets = make_series(4, "MR", PatientName="Doe^Jane")
    with invalid_values_allowed():
        del datasets[0].PatientID
        datasets[1].PatientID = ""
        datasets[2].StudyInstanceUID = "1.2.abc"
        datasets[3].StudyDate = "20240230"
        datasets[3].PatientName = "X" * 70
    got = [
        (f.code, f.message)
        for f in check_validity(T1, round_trip(datasets), [*REQUIRED, "PatientName"], {"Modality": "CT"})
    ]
    assert got == [
        ("missing-tag", "series 2 (T1): PatientID missing in 2 of 4 instances"),
        (
            "malformed-value",
            "series 2 (T1): StudyInstanceUID '1.2.abc' is not a valid UI in 1 of 4 instances",
        ),
        ("malformed-value", "series 2 (T1): StudyDate '20240230' is not a valid DA in 1 of 4 instances"),
        ("value-mismatch", "series 2 (T1): Modality 'MR' does not match 'CT' in 4 of 4 instances"),
        (
            "malformed-value",
            f"series 2 (T1): PatientName '{'X' * 64}\u2026' is not a valid PN in 1 of 4 instances",
        ),
    ]
    assert {f.series_instance_uid for f in check_validity(T1, datasets, ["PatientID"], {})} == {UID}
