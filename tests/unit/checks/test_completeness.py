"""Completeness rules, one table per rule, on SeriesFacts built directly (positions along the normal)."""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pytest

import factories
from dicomflow.checks import Finding, SeriesFacts, Severity, SliceFacts, check_completeness, series_facts
from dicomflow.dicom import load_volume

MakeSeries = Callable[..., SeriesFacts]

AXIAL = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)
SERIES_UID = "1.2.826.0.1.3680043.8.498.7"


def slice_at(
    z: float | None,
    orientation: Sequence[float] | None = AXIAL,
    number: int | None = None,
    frames: int = 1,
    acquisition: int | None = None,
) -> SliceFacts:
    """One slice ``z`` mm along the normal of ``orientation`` (its corner 4 mm back in-plane)."""
    position = None
    if z is not None and orientation is not None:
        row, column = np.array(orientation[:3]), np.array(orientation[3:])
        corner = z * np.cross(row, column) - 4 * row - 4 * column
        position = (float(corner[0]), float(corner[1]), float(corner[2]))
    return SliceFacts(
        sop_instance_uid=f"{SERIES_UID}.{number or 0}.{z}",
        instance_number=number,
        image_position=position,
        image_orientation=None if orientation is None else tuple(orientation),
        number_of_frames=frames,
        acquisition_number=acquisition,
    )


@pytest.fixture
def make_series() -> Callable[..., SeriesFacts]:
    """``make_series(zs, numbers=..., orientation=..., **SeriesFacts fields)``: numbers default to 1, 2, …"""

    def make(
        zs: Sequence[float | None],
        *,
        numbers: Sequence[int | None] | None = None,
        orientation: Sequence[float] | None = AXIAL,
        **fields: Any,
    ) -> SeriesFacts:
        numbers = list(range(1, len(zs) + 1)) if numbers is None else list(numbers)
        values: dict[str, Any] = {
            "series_instance_uid": SERIES_UID,
            "series_number": 3,
            "series_description": "FLAIR",
            "modality": "MR",
            "slices": tuple(slice_at(z, orientation, n) for z, n in zip(zs, numbers, strict=True)),
        }
        values.update(fields)
        return SeriesFacts(**values)

    return make


# 40 slices 1 mm apart, slice 17 at z = -12.5 mm.
FORTY = [-28.5 + i for i in range(40)]
SAGITTAL = (0.0, 1.0, 0.0, 0.0, 0.0, -1.0)
CORONAL = (1.0, 0.0, 0.0, 0.0, 0.0, -1.0)
OBLIQUE = (1.0, 0.0, 0.0, 0.0, math.cos(0.3), math.sin(0.3))


def without(zs: Sequence[float], *indices: int) -> list[float]:
    """``zs`` without the slices at the given 0-based indices."""
    return [z for i, z in enumerate(zs) if i not in indices]


def found(findings: list[Finding]) -> list[tuple[str, str]]:
    return [(finding.code, finding.message) for finding in findings]


@pytest.mark.parametrize(
    ("zs", "options", "expected"),
    [
        pytest.param(FORTY, {}, [], id="complete"),
        pytest.param(
            without(FORTY, 16),
            {},
            [("missing-slice", "series 3 (FLAIR): slice 17 of 40 missing at z=\u221212.5 mm")],
            id="removed-middle-slice",
        ),
        pytest.param(
            without(FORTY, 16, 17),
            {},
            [
                (
                    "missing-slice",
                    "series 3 (FLAIR): slices 17\u201318 of 40 missing at z=\u221212.5, \u221211.5 mm",
                )
            ],
            id="two-adjacent-missing",
        ),
        pytest.param(
            without(FORTY, 3, 30),
            {},
            [
                ("missing-slice", "series 3 (FLAIR): slice 4 of 40 missing at z=\u221225.5 mm"),
                ("missing-slice", "series 3 (FLAIR): slice 31 of 40 missing at z=1.5 mm"),
            ],
            id="one-finding-per-gap",
        ),
        pytest.param(
            list(reversed(without(FORTY, 16))),
            {},
            [("missing-slice", "series 3 (FLAIR): slice 17 of 40 missing at z=\u221212.5 mm")],
            id="descending-positions",
        ),
        pytest.param(
            without(FORTY, 16),
            {"numbers": [None] * 39},
            [("missing-slice", "series 3 (FLAIR): slice 17 of 40 missing at z=\u221212.5 mm")],
            id="absent-instance-numbers",
        ),
        pytest.param(
            without(FORTY, 16),
            {"numbers": [*range(1, 21), *range(1, 20)]},
            [("missing-slice", "series 3 (FLAIR): slice 17 of 40 missing at z=\u221212.5 mm")],
            id="restarting-instance-numbers",
        ),
        pytest.param(
            without([2.5 * i for i in range(10)], 5),
            {"orientation": OBLIQUE},
            [("missing-slice", "series 3 (FLAIR): slice 6 of 10 missing at z=12.5 mm")],
            id="oblique",
        ),
        pytest.param(
            without([-10.0 + 3 * i for i in range(8)], 1),
            {"orientation": SAGITTAL},
            [("missing-slice", "series 3 (FLAIR): slice 2 of 8 missing at z=\u22127.0 mm")],
            id="sagittal",
        ),
        pytest.param([0.625 * i for i in range(200)], {"orientation": CORONAL}, [], id="thin-coronal"),
        pytest.param(
            without([0.05 * i for i in range(5)], 2),
            {},
            [("missing-slice", "series 3 (FLAIR): slice 3 of 5 missing at z=0.1 mm")],
            id="missing-at-small-spacing",
        ),
        pytest.param(
            [0.0, 1.0, 3.0],
            {"numbers": [None] * 3},
            [("missing-slice", "series 3 (FLAIR): slice 3 of 4 missing at z=2.0 mm")],
            id="three-slices-tie-goes-to-smaller-gap",
        ),
    ],
)
def test_missing_slices(
    make_series: MakeSeries, zs: list[float], options: dict[str, Any], expected: list[tuple[str, str]]
) -> None:
    assert found(check_completeness(make_series(zs, **options))) == expected


@pytest.mark.parametrize(
    ("zs", "expected"),
    [
        pytest.param(
            [0.0, 1.0, 2.0, 3.5, 4.5, 5.5, 6.5],
            "(nominal 1 mm): 1.5 mm after z=2.0 mm",
            id="one-and-a-half-spacings",
        ),
        pytest.param(
            [0.0, 5.0, 10.0, 12.0, 17.0, 22.0, 23.0, 28.0],
            "(nominal 5 mm): 2 mm after z=10.0 mm, 1 mm after z=22.0 mm",
            id="gaps-below-spacing-listed-once",
        ),
        pytest.param(
            [0.0, 1.0, 2.0, 3.0, 3.95, 4.95, 5.95],
            "(nominal 1 mm): 0.95 mm after z=3.0 mm",
            id="five-percent-off",
        ),
    ],
)
def test_uneven_spacing(make_series: MakeSeries, zs: list[float], expected: str) -> None:
    message = f"series 3 (FLAIR): uneven slice spacing {expected}"
    assert found(check_completeness(make_series(zs))) == [("uneven-spacing", message)]


def test_uneven_spacing_and_missing_slice_are_both_found(make_series: MakeSeries) -> None:
    zs = [0.0, 2.0, 4.0, 8.0, 10.0, 13.0, 15.0]
    assert [f.code for f in check_completeness(make_series(zs, numbers=[None] * 7))] == [
        "missing-slice",
        "uneven-spacing",
    ]


def noisy(zs: Sequence[float], noise: float, seed: int = 7) -> list[float]:
    rng = random.Random(seed)
    return [z + rng.uniform(-noise, noise) for z in zs]


def tilted(count: int, degrees: float, step: float = 1.0) -> tuple[SliceFacts, ...]:
    """A CT stack with gantry tilt: the table moves along patient z, the slices are tilted about x."""
    angle = math.radians(degrees)
    orientation = (1.0, 0.0, 0.0, 0.0, math.cos(angle), math.sin(angle))
    return tuple(
        SliceFacts(f"1.2.3.{n}", n, (-4.0, -4.0, step * n), orientation) for n in range(1, count + 1)
    )


def test_floating_point_noise_gives_no_finding(make_series: MakeSeries) -> None:
    assert check_completeness(make_series(noisy(FORTY, 0.002))) == []


def test_orientation_noise_per_slice_gives_no_finding(make_series: MakeSeries) -> None:
    series = make_series(FORTY)
    rng = random.Random(3)
    slices = tuple(
        SliceFacts(
            s.sop_instance_uid,
            s.instance_number,
            s.image_position,
            tuple(v + rng.uniform(-1e-4, 1e-4) for v in AXIAL),
        )
        for s in series.slices
    )
    assert check_completeness(SeriesFacts(SERIES_UID, 3, "FLAIR", "MR", slices)) == []


@pytest.mark.parametrize("degrees", [0.5, 12.0, 30.0])
def test_gantry_tilt_gives_no_finding(degrees: float) -> None:
    assert check_completeness(SeriesFacts(SERIES_UID, 2, "Head", "CT", tilted(40, degrees))) == []


def test_gantry_tilt_still_finds_a_missing_slice() -> None:
    slices = tuple(s for s in tilted(40, 12.0, step=2.5) if s.instance_number != 17)
    [finding] = check_completeness(SeriesFacts(SERIES_UID, 2, "Head", "CT", slices))
    assert finding.code == "missing-slice"
    assert finding.message.startswith("series 2 (Head): slice 17 of 40 missing at z=")


def test_slices_in_any_order(make_series: MakeSeries) -> None:
    zs = without(FORTY, 16)
    order = list(range(len(zs)))
    random.Random(1).shuffle(order)
    series = make_series([zs[i] for i in order], numbers=[n + 1 if n < 16 else n + 2 for n in order])
    assert found(check_completeness(series)) == [
        ("missing-slice", "series 3 (FLAIR): slice 17 of 40 missing at z=\u221212.5 mm")
    ]


@pytest.mark.parametrize(
    ("zs", "numbers", "expected"),
    [
        pytest.param(
            [*range(10), *range(10)], [*range(1, 11), *range(1, 11)], [], id="two-echoes-restarting-numbers"
        ),
        pytest.param(sorted([*range(10)] * 3), None, [], id="three-phases-numbered-through"),
        pytest.param(
            [*range(10), *range(10), *range(10)], [None] * 30, [], id="three-phases-without-numbers"
        ),
        pytest.param(
            [*range(10), *range(10), 4.0],
            [None] * 21,
            [
                (
                    "uneven-repetition",
                    "series 3 (FLAIR): slice positions repeat unevenly (most 2 times): "
                    "z=4.0 mm (3 instances)",
                )
            ],
            id="one-image-too-many-in-two-echoes",
        ),
        pytest.param(
            [*range(10), *without(range(10), 4)],
            [None] * 19,
            [
                (
                    "uneven-repetition",
                    "series 3 (FLAIR): slice positions repeat unevenly (most 2 times): z=4.0 mm (1 instance)",
                )
            ],
            id="echo-lost-at-one-position",
        ),
        pytest.param(
            [*without(range(10), 4), *without(range(10), 4)],
            [None] * 18,
            [("missing-slice", "series 3 (FLAIR): slice 5 of 10 missing at z=4.0 mm")],
            id="both-echoes-lost-at-one-position",
        ),
        pytest.param(
            [*range(10), 4.0, 7.0],
            None,
            [
                (
                    "duplicate-position",
                    "series 3 (FLAIR): more than one instance at a slice position: z=4.0 mm (2 instances), "
                    "z=7.0 mm (2 instances)",
                )
            ],
            id="duplicates-in-single-set",
        ),
        pytest.param(
            [z + echo * 0.004 for echo in (0, 1) for z in range(10)],
            [None] * 20,
            [],
            id="echoes-differ-by-noise",
        ),
    ],
)
def test_repeated_positions(
    make_series: MakeSeries,
    zs: list[float],
    numbers: list[int | None] | None,
    expected: list[tuple[str, str]],
) -> None:
    series = make_series([float(z) for z in zs], numbers=numbers)
    assert found(check_completeness(series)) == expected


@pytest.mark.parametrize(
    ("numbers", "expected"),
    [
        pytest.param(
            without(range(1, 41), 16), "instance numbers 17 missing (have 1\u201316, 18\u201340)", id="one"
        ),
        pytest.param(
            without(range(1, 41), 16, 24, 25, 26),
            "instance numbers 17, 25\u201327 missing (have 1\u201316, 18\u201324, 28\u201340)",
            id="several",
        ),
        pytest.param(
            [1, 3, 5, 9, 11],
            "instance numbers 7 missing (have 1\u20135, 9\u201311 in steps of 2)",
            id="constant-step",
        ),
        pytest.param([1, 3], "instance numbers 2 missing (have 1, 3)", id="two-numbers-step-one"),
        pytest.param([5, 1, 3, 2], "instance numbers 4 missing (have 1\u20133, 5)", id="any-order"),
    ],
)
def test_instance_number_gap_without_geometry(
    make_series: MakeSeries, numbers: list[int], expected: str
) -> None:
    series = make_series([None] * len(numbers), numbers=numbers, orientation=None)
    [finding] = check_completeness(series)
    assert (finding.code, finding.message, finding.severity) == (
        "instance-number-gap",
        f"series 3 (FLAIR): {expected}",
        Severity.ERROR,
    )


@pytest.mark.parametrize(
    "numbers",
    [
        pytest.param(list(range(1, 41)), id="complete"),
        pytest.param(list(range(101, 141)), id="starting-anywhere"),
        pytest.param(list(range(2, 81, 2)), id="even-numbers-of-split-echoes"),
        pytest.param([*range(1, 17), *range(18, 41), None], id="one-number-absent"),
        pytest.param([*range(1, 17), *range(18, 41), 5], id="restart-or-duplicate"),
        pytest.param([None] * 40, id="all-absent"),
        pytest.param([7], id="single-instance"),
    ],
)
def test_no_instance_number_finding(make_series: MakeSeries, numbers: list[int | None]) -> None:
    series = make_series([None] * len(numbers), numbers=numbers, orientation=None)
    assert check_completeness(series) == []


def test_a_lost_phase_is_found_by_instance_numbers(make_series: MakeSeries) -> None:
    """Three phases, the second lost: every position still holds the same number of instances."""
    zs = [float(z) for _ in range(2) for z in range(10)]
    series = make_series(zs, numbers=[*range(1, 11), *range(21, 31)])
    [finding] = check_completeness(series)
    assert (finding.code, finding.message, finding.severity) == (
        "instance-number-gap",
        "series 3 (FLAIR): instance numbers 11\u201320 missing (have 1\u201310, 21\u201330);"
        " slice positions complete",
        Severity.WARNING,
    )


@pytest.mark.parametrize(
    ("zs", "fields", "expected"),
    [
        pytest.param(FORTY, {"images_in_acquisition": 40}, [], id="images-in-acquisition-matches"),
        pytest.param(
            FORTY[:-1],
            {"images_in_acquisition": 40},
            ["ImagesInAcquisition is 40 but 39 images received"],
            id="last-slice-missing",
        ),
        pytest.param(FORTY, {"number_of_slices": 40}, [], id="number-of-slices-matches"),
        pytest.param(
            FORTY[1:],
            {"number_of_slices": 40},
            ["NumberOfSlices is 40 but 39 slice positions received"],
            id="first-slice-missing",
        ),
        pytest.param(
            FORTY[:10],
            {"number_of_slices": 12, "images_in_acquisition": 9},
            [
                "ImagesInAcquisition is 9 but 10 images received",
                "NumberOfSlices is 12 but 10 slice positions received",
            ],
            id="both",
        ),
        pytest.param(
            FORTY[:1],
            {"images_in_acquisition": 40},
            ["ImagesInAcquisition is 40 but 1 images received"],
            id="single",
        ),
    ],
)
def test_count_mismatch(
    make_series: MakeSeries, zs: list[float], fields: dict[str, int], expected: list[str]
) -> None:
    findings = check_completeness(make_series(zs, **fields))
    assert found(findings) == [("count-mismatch", f"series 3 (FLAIR): {message}") for message in expected]


def test_number_of_slices_of_a_dynamic_pet_counts_positions(make_series: MakeSeries) -> None:
    zs = [float(z) for z in range(10)] * 3
    assert check_completeness(make_series(zs, numbers=range(1, 31), number_of_slices=10)) == []


def _acquisitions(images: Sequence[int]) -> tuple[SliceFacts, ...]:
    """Volumes of an fMRI-like series, one AcquisitionNumber each, numbered through."""
    slices, number = [], 0
    for acquisition, count in enumerate(images, start=1):
        for z in range(count):
            number += 1
            slices.append(slice_at(float(z), AXIAL, number, acquisition=acquisition))
    return tuple(slices)


@pytest.mark.parametrize(
    ("images", "expected"),
    [
        pytest.param([10, 10, 10], [], id="per-acquisition"),
        pytest.param(
            [10, 9, 10],
            [("count-mismatch", "series 3 (FLAIR): ImagesInAcquisition is 10 but acquisition 2 has 9")],
            id="one-volume-short",
        ),
    ],
)
def test_images_in_acquisition_per_acquisition(images: list[int], expected: list[tuple[str, str]]) -> None:
    series = SeriesFacts(SERIES_UID, 3, "FLAIR", "MR", _acquisitions(images), images_in_acquisition=10)
    assert found(check_completeness(series))[: len(expected)] == expected


@pytest.mark.parametrize(
    ("slices", "fields"),
    [
        pytest.param((slice_at(0.0, number=1),), {}, id="single-instance"),
        pytest.param((slice_at(0.0, number=1, frames=40),), {"number_of_slices": 40}, id="multi-frame"),
        pytest.param(
            (slice_at(0.0, number=1, frames=20), slice_at(0.0, number=2, frames=20)),
            {},
            id="multi-frame-same-position",
        ),
        pytest.param(
            (slice_at(0.0, number=1, frames=20), slice_at(7.3, number=2, frames=20), slice_at(9.0, number=3)),
            {},
            id="multi-frame-odd-positions",
        ),
        pytest.param(tuple(slice_at(None, None, n) for n in range(1, 4)), {}, id="no-geometry-sr"),
        pytest.param(
            tuple(slice_at(None, None, None) for _ in range(3)),
            {"number_of_slices": 3},
            id="no-geometry-no-numbers",
        ),
        pytest.param(
            (*(slice_at(float(z), number=z + 1) for z in range(10)), slice_at(None, None, 11)),
            {},
            id="dose-screen-in-the-series",
        ),
        pytest.param((slice_at(0.0, number=1), slice_at(3.7, number=2)), {}, id="two-slices"),
        pytest.param(
            tuple(slice_at(0.0, (1, 0, 0, 1, 0, 0), n) for n in range(1, 5)), {}, id="degenerate-orientation"
        ),
    ],
)
def test_series_it_cannot_judge_are_not_failed(
    slices: tuple[SliceFacts, ...], fields: dict[str, int]
) -> None:
    assert check_completeness(SeriesFacts(SERIES_UID, 9, "", "OT", slices, **fields)) == []


def test_localizer_in_three_orientations_is_a_warning() -> None:
    slices = (
        slice_at(0.0, AXIAL, 1),
        slice_at(0.0, SAGITTAL, 2),
        slice_at(0.0, CORONAL, 3),
        slice_at(20.0, CORONAL, 4),
        slice_at(0.0, CORONAL, 5),
    )
    [finding] = check_completeness(SeriesFacts(SERIES_UID, 1, "Localizer", "MR", slices))
    assert finding == Finding(
        "mixed-orientation",
        "series 1 (Localizer): slices in 3 orientations; slice geometry not checked",
        Severity.WARNING,
        SERIES_UID,
    )


@pytest.mark.parametrize("needs_volume", [False, True])
def test_mixed_orientation_is_an_error_only_where_a_volume_is_stacked(needs_volume: bool) -> None:
    slices = (slice_at(0.0, AXIAL, 1), slice_at(1.0, AXIAL, 2), slice_at(0.0, SAGITTAL, 3))
    [finding] = check_completeness(SeriesFacts(SERIES_UID, 4, "CT", "CT", slices), needs_volume=needs_volume)
    assert finding.code == "mixed-orientation"
    if needs_volume:
        assert finding.severity is Severity.ERROR
        assert finding.message == "series 4 (CT): slices in 2 orientations cannot be stacked into one volume"
    else:
        assert finding.severity is Severity.WARNING


@pytest.mark.parametrize("delta", [0.0, 5e-5, 5e-4, 2e-3, 5e-3, 0.02])
def test_checks_and_volume_stacking_agree_on_one_orientation(delta: float) -> None:
    """One tolerance: a series the checks call one orientation stacks, and one they call mixed does not."""
    datasets = factories.make_series(4)
    turned = list(datasets[2].ImageOrientationPatient)
    turned[4] -= delta  # the column turns a little towards z
    turned[5] = delta
    datasets[2].ImageOrientationPatient = turned
    findings = check_completeness(series_facts(datasets), needs_volume=True)
    is_mixed = any(f.code == "mixed-orientation" for f in findings)
    try:
        load_volume(datasets)
        stacks = True
    except ValueError as exc:
        assert "mixed ImageOrientationPatient" in str(exc)
        stacks = False
    assert is_mixed is not stacks
    assert is_mixed is (delta > 1e-3)


def test_an_instance_number_gap_with_complete_positions_is_a_warning(make_series: MakeSeries) -> None:
    """DICOM does not require consecutive numbers: with every slice position present, a gap only warns."""
    series = make_series(FORTY, numbers=without(range(1, 42), 16))
    [finding] = check_completeness(series)
    assert (finding.code, finding.severity) == ("instance-number-gap", Severity.WARNING)
    assert finding.message == (
        "series 3 (FLAIR): instance numbers 17 missing (have 1\u201316, 18\u201341); slice positions complete"
    )


def test_missing_positions_stay_an_error_whatever_the_numbers(make_series: MakeSeries) -> None:
    series = make_series(without(FORTY, 16), numbers=list(range(1, 40)))
    [finding] = check_completeness(series)
    assert (finding.code, finding.severity) == ("missing-slice", Severity.ERROR)
