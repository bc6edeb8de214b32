"""Spec 3.4 (and 1.5): the acquisition UID -- screen-save decrement and AcquisitionNumber suffix."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from dicomflow.dicom import InstanceHeader
from dicomflow.placement import acquisition_uid

SCREEN_SAVE = ("DERIVED", "SECONDARY", "SCREEN SAVE")


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        pytest.param(
            {"series_instance_uid": "1.2.840.113619.2.1.10", "image_type": SCREEN_SAVE},
            "1.2.840.113619.2.1.9",
            id="screen-save-10-to-9",
        ),
        pytest.param(
            {"series_instance_uid": "1.2.3.100", "image_type": SCREEN_SAVE},
            "1.2.3.99",
            id="screen-save-100-to-99",
        ),
        pytest.param(
            {"series_instance_uid": "1.2.3.100", "image_type": ("DERIVED", "SECONDARY", "VXTL STATE")},
            "1.2.3.99",
            id="ge-vxtl-state",
        ),
        pytest.param(
            {"series_instance_uid": "1.2.3.100", "image_type": ("ORIGINAL", "PRIMARY", "AXIAL")},
            "1.2.3.100",
            id="original-primary-unchanged",
        ),
        pytest.param(
            {"series_instance_uid": "1.2.3.100", "image_type": (*SCREEN_SAVE, "X")},
            "1.2.3.100",
            id="four-values-unchanged",
        ),
        pytest.param(
            {"series_instance_uid": "1.2.3.100", "image_type": ("SECONDARY", "DERIVED", "SCREEN SAVE")},
            "1.2.3.100",
            id="order-must-match",
        ),
        # Better than the reaper, which would produce the invalid UID "1.2.3.-1".
        pytest.param(
            {"series_instance_uid": "1.2.3.0", "image_type": SCREEN_SAVE},
            "1.2.3.0",
            id="last-component-0-kept",
        ),
    ],
)
def test_screen_save(
    make_header: Callable[..., InstanceHeader], fields: dict[str, Any], expected: str
) -> None:
    assert acquisition_uid(make_header(**fields)) == expected


# The spec (3.4) suffixes every AcquisitionNumber of a split series (`<uid>_1`, `<uid>_2`). We follow the
# Flywheel docs instead ("How the DICOM Connector Uploads an Image", shared/reference/002_...: "If the
# Manufacturer is not Siemens and AcquisitionNumber is set and greater than 1 then acquisition.uid is
# suffixed with _{AcquisitionNumber}"), so that single-acquisition series keep the plain SeriesInstanceUID.
@pytest.mark.parametrize(
    ("manufacturer", "number", "expected"),
    [
        pytest.param("GE MEDICAL SYSTEMS", 1, "1.2.3.4", id="ge-acquisition-1-plain"),
        pytest.param("GE MEDICAL SYSTEMS", 2, "1.2.3.4_2", id="ge-acquisition-2-split"),
        pytest.param("SIEMENS", 1, "1.2.3.4", id="siemens-1"),
        pytest.param("SIEMENS", 2, "1.2.3.4", id="siemens-never-split"),
        pytest.param("siemens", 2, "1.2.3.4", id="siemens-upper-cased"),
        pytest.param("Siemens Healthineers", 2, "1.2.3.4_2", id="siemens-healthineers-is-not-SIEMENS"),
        # The 2017 reaper crashed on a missing Manufacturer; it counts as non-Siemens.
        pytest.param("", 2, "1.2.3.4_2", id="missing-manufacturer"),
        pytest.param("GE MEDICAL SYSTEMS", None, "1.2.3.4", id="missing-acquisition-number"),
        pytest.param("GE MEDICAL SYSTEMS", 0, "1.2.3.4", id="acquisition-number-0"),
        # Docs' table rows.
        pytest.param("GE", 2, "1.2.3.4_2", id="docs-ge-2"),
        pytest.param("GE", 1, "1.2.3.4", id="docs-ge-1"),
    ],
)
def test_acquisition_number(
    make_header: Callable[..., InstanceHeader], manufacturer: str, number: int | None, expected: str
) -> None:
    header = make_header(series_instance_uid="1.2.3.4", manufacturer=manufacturer, acquisition_number=number)
    assert acquisition_uid(header) == expected


def test_screen_save_and_acquisition_number_combine(make_header: Callable[..., InstanceHeader]) -> None:
    header = make_header(
        series_instance_uid="1.2.3.4", image_type=SCREEN_SAVE, manufacturer="GE", acquisition_number=2
    )
    assert acquisition_uid(header) == "1.2.3.3_2"
