"""Generated pydicom series through the header adapter: the issue's cases end to end, and the facts read."""

from __future__ import annotations

import math
import re
from io import BytesIO
from typing import Any

import pytest
from pydicom import dcmread
from pydicom.dataset import Dataset

from dicomflow.checks import (
    Finding,
    SeriesFacts,
    Severity,
    check_completeness,
    missing_series,
    series_facts,
)
from factories import make_instance, make_series, make_study, to_bytes


def messages(datasets: list[Dataset]) -> list[tuple[str, str]]:
    return [(f.code, f.message) for f in check_completeness(series_facts(datasets))]


def flair(slices: int = 40, **attrs: Any) -> list[Dataset]:
    """40 axial FLAIR slices 2.5 mm apart, slice 17 at z = -12.5 mm."""
    return make_series(
        slices, "MR", spacing=2.5, first=-52.5, SeriesNumber=3, SeriesDescription="FLAIR", **attrs
    )


MISSING_17 = ("missing-slice", "series 3 (FLAIR): slice 17 of 40 missing at z=\u221212.5 mm")


def test_complete_series() -> None:
    assert messages(flair()) == []


def test_removed_middle_slice() -> None:
    datasets = flair()
    del datasets[16]
    assert messages(datasets) == [MISSING_17]


def test_descending_positions_in_reverse_order() -> None:
    datasets = make_series(
        40, "MR", spacing=-2.5, first=45.0, SeriesNumber=3, SeriesDescription="FLAIR"
    )  # instance 1 at the top
    del datasets[23]  # z = 45 - 23 * 2.5 = -12.5: the 17th from the bottom
    assert messages(list(reversed(datasets))) == [MISSING_17]


def test_absent_instance_numbers_with_a_missing_slice() -> None:
    datasets = flair(InstanceNumber=None)
    del datasets[16]
    assert [ds.get("InstanceNumber") for ds in datasets[:2]] == [None, None]
    assert messages(datasets) == [MISSING_17]


def test_restarting_instance_numbers_with_complete_geometry() -> None:
    datasets = flair()
    for n, ds in enumerate(datasets[20:], start=1):
        ds.InstanceNumber = n
    assert messages(datasets) == []


def test_uneven_spacing() -> None:
    datasets = make_series(6, "CT", spacing=5.0, SeriesNumber=2, SeriesDescription="Head")
    datasets[3].ImagePositionPatient = [-4.0, -4.0, 17.5]
    assert messages(datasets) == [
        (
            "uneven-spacing",
            "series 2 (Head): uneven slice spacing (nominal 5 mm): "
            "7.5 mm after z=10.0 mm, 2.5 mm after z=17.5 mm",
        )
    ]


@pytest.mark.parametrize(
    "orientation",
    [
        pytest.param((1, 0, 0, 0, 0.866025, -0.5), id="oblique-30"),
        pytest.param((0.996195, 0, 0.087156, 0, 1, 0), id="oblique-5"),
        pytest.param((0, 1, 0, 0, 0, -1), id="sagittal"),
    ],
)
def test_oblique_orientation(orientation: tuple[float, ...]) -> None:
    datasets = flair(orientation=orientation)
    assert messages(datasets) == []
    del datasets[16]
    assert messages(datasets) == [MISSING_17]


def test_count_mismatch() -> None:
    datasets = flair(ImagesInAcquisition=40)[:-1]  # the last slice lost: geometry cannot see it
    assert messages(datasets) == [
        ("count-mismatch", "series 3 (FLAIR): ImagesInAcquisition is 40 but 39 images received")
    ]


def test_multi_frame_series() -> None:
    datasets = [
        make_instance(
            "MR", NumberOfFrames=20, InstanceNumber=n, SeriesInstanceUID="1.2.3.4", NumberOfSlices=20
        )
        for n in (1, 1, 3)
    ]
    assert messages(datasets) == []


def test_no_geometry_series() -> None:
    datasets = make_series(
        3,
        "OT",
        ImagePositionPatient=None,
        ImageOrientationPatient=None,
        SliceLocation=None,
        InstanceNumber=None,
    )
    assert series_facts(datasets).slices[0].image_position is None
    assert messages(datasets) == []


def test_localizer() -> None:
    uid = "1.2.826.0.1.3680043.8.498.9"
    datasets = [
        make_instance(
            "MR", SeriesInstanceUID=uid, InstanceNumber=n, ImageOrientationPatient=iop, SeriesNumber=1
        )
        for n, iop in enumerate([[1, 0, 0, 0, 1, 0], [0, 1, 0, 0, 0, -1], [1, 0, 0, 0, 0, -1]], start=1)
    ]
    [finding] = check_completeness(series_facts(datasets))
    assert (finding.code, finding.severity) == ("mixed-orientation", Severity.WARNING)


def test_facts_read_from_headers() -> None:
    datasets = flair(4, ImagesInAcquisition=4, NumberOfSlices=4, AcquisitionNumber=2)
    facts = series_facts([dcmread(BytesIO(to_bytes(ds)), stop_before_pixels=True) for ds in datasets])
    first = facts.slices[0]
    assert (facts.series_number, facts.series_description, facts.modality) == (3, "FLAIR", "MR")
    assert (facts.images_in_acquisition, facts.number_of_slices) == (4, 4)
    assert (first.instance_number, first.number_of_frames, first.acquisition_number) == (1, 1, 2)
    assert first.image_orientation == (1, 0, 0, 0, 1, 0)
    assert first.image_position is not None and math.isclose(first.image_position[2], -52.5)
    assert series_facts(datasets) == facts


def test_facts_need_one_series() -> None:
    with pytest.raises(ValueError, match="at least one instance"):
        series_facts([])
    with pytest.raises(ValueError, match="instances of 2 series given"):
        series_facts(make_study(series=2, instances=1))


@pytest.mark.parametrize(
    ("number", "description", "label"),
    [
        (3, "FLAIR", "series 3 (FLAIR)"),
        (3, "  ", "series 3"),
        (None, "FLAIR", "series 1.2.3 (FLAIR)"),
        (None, "", "series 1.2.3"),
    ],
)
def test_label(number: int | None, description: str, label: str) -> None:
    assert SeriesFacts("1.2.3", number, description, "MR", ()).label() == label


def test_missing_required_series() -> None:
    """A report type wants a T1 and a FLAIR; the study has a T1 only."""
    study = make_study(series=1, instances=2, modality="MR", SeriesDescription="T1 MPRAGE")
    wanted = {"T1": re.compile("t1", re.I), "FLAIR": re.compile("flair", re.I)}
    descriptions = {str(ds.SeriesDescription) for ds in study}
    found = [
        missing_series(name, f"SeriesDescription ~ /{rule.pattern}/i")
        for name, rule in wanted.items()
        if not any(rule.search(d) for d in descriptions)
    ]
    assert found == [
        Finding(
            "required-series-missing",
            "required series 'FLAIR' missing: no series matched SeriesDescription ~ /flair/i",
        )
    ]
    assert found[0].as_dict() == {
        "code": "required-series-missing",
        "message": "required series 'FLAIR' missing: no series matched SeriesDescription ~ /flair/i",
        "severity": "error",
        "series_instance_uid": None,
    }
