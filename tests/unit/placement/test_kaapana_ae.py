"""Spec 2.2 / 3.6: Kaapana's AE-title routing (calling AE -> dataset, called AE -> project)."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from dicomflow.dicom import InstanceHeader
from dicomflow.placement import (
    PlacementConfig,
    Rule,
    called_ae_for_project,
    dataset_from_calling_ae,
    place,
    project_from_called_ae,
)


@pytest.mark.parametrize(
    ("called_ae", "expected"),
    [
        pytest.param("kp-study1", "study1", id="kp-study1"),
        pytest.param("ANY", None, id="no-prefix"),  # Kaapana: default project "admin"; we: caller falls back
        pytest.param("kp-a;kp-b", "a", id="first-of-list"),
        pytest.param("KP-study1", None, id="case-sensitive"),  # Kaapana: "admin"
        pytest.param("ANY;kp-b", None, id="only-first-element-counts"),
        pytest.param("kp-", None, id="empty-name"),
        pytest.param("kp-study1  ", "study1", id="ae-padding"),
    ],
)
def test_project_from_called_ae(called_ae: str, expected: str | None) -> None:
    assert project_from_called_ae(called_ae) == expected


@pytest.mark.parametrize(
    ("calling_ae", "expected"),
    [
        pytest.param("kp-lung", "lung", id="kp-lung"),
        # Kaapana invents a one-off dataset named after the arrival time ("25-01-31-14:03:22123456");
        # deliberately, we assign none.
        pytest.param("SCANNER1", None, id="no-prefix-no-timestamp-dataset"),
        pytest.param("KP-lung", None, id="case-sensitive"),
    ],
)
def test_dataset_from_calling_ae(calling_ae: str, expected: str | None) -> None:
    assert dataset_from_calling_ae(calling_ae) == expected


def test_custom_prefix() -> None:
    assert project_from_called_ae("df-study1", prefix="df-") == "study1"
    assert dataset_from_calling_ae("df-lung", prefix="df-") == "lung"


@pytest.mark.parametrize(
    ("project", "expected"),
    [
        pytest.param("study1", "kp-study1", id="fits"),
        pytest.param("a" * 13, "kp-" + "a" * 13, id="13-chars-fit"),
        # Kaapana accepts 14-16 character project names that no AE title can reach; we say so.
        pytest.param("a" * 14, None, id="14-chars-unreachable"),
        pytest.param("a\\b", None, id="backslash"),
        pytest.param("", None, id="empty"),
    ],
)
def test_called_ae_for_project(project: str, expected: str | None) -> None:
    assert called_ae_for_project(project) == expected


def test_called_ae_project_places_the_instance(make_header: Callable[..., InstanceHeader]) -> None:
    """Calling `kp-lung`, called `kp-study1` -> project study1 (resolved by the caller to an existing one)."""
    placement = place(
        make_header(patient_id="fw://neuro/Amnesia"),
        PlacementConfig(),
        called_ae_project=("radiology", "study1"),
        existing_groups=["neuro", "radiology"],
        existing_projects=[("radiology", "study1")],
        called_ae_title="kp-study1",
    )
    assert (placement.group, placement.project, placement.rule) == ("radiology", "study1", Rule.CALLED_AE)
    assert placement.reason == "called AE 'kp-study1' names project 'radiology/study1'"


def test_unknown_called_ae_project_falls_back(make_header: Callable[..., InstanceHeader]) -> None:
    """Project `study1` absent: Kaapana assigns to `admin` only; the caller passes None and we fall back."""
    placement = place(
        make_header(),
        PlacementConfig(),
        called_ae_project=None,
        existing_groups=[],
        existing_projects=[],
        called_ae_title="kp-study1",
    )
    assert (placement.group, placement.project, placement.rule) == ("unknown", "Unsorted", Rule.FALLBACK)
