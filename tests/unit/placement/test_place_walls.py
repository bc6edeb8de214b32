"""place(): projects are walls. An existing session keeps an instance only within the project the sender
names (called AE ``kp-<project>``, an upload, a routing string); data naming another project opens a session
there, or is refused when ``cross_project_study`` is "reject". Nothing named: the existing session wins."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import pytest

from dicomflow.dicom import InstanceHeader
from dicomflow.errors import StudyInAnotherProject
from dicomflow.placement import PlacementConfig, Rule, place

MakeHeader = Callable[..., InstanceHeader]
GROUPS = ("lab", "neuro")
PROJECTS = (("lab", "p1"), ("lab", "p2"), ("neuro", "Amnesia"))
P1, P2 = ("lab", "p1"), ("lab", "p2")


def _place(
    header: InstanceHeader,
    sessions: Sequence[tuple[str, str]],
    ae_project: tuple[str, str] | None,
    policy: str = "separate",
) -> tuple[str, str, Rule]:
    placement = place(
        header,
        PlacementConfig(cross_project_study=policy),
        existing_sessions=sessions,
        called_ae_project=ae_project,
        existing_groups=GROUPS,
        existing_projects=PROJECTS,
    )
    return placement.group, placement.project, placement.rule


@pytest.mark.parametrize(
    ("sessions", "ae_project", "patient_id", "expected"),
    [
        pytest.param([P2], P1, "PAT1", ("lab", "p1", Rule.CALLED_AE), id="ae-names-p1-study-in-p2"),
        pytest.param([P2], None, "fw://lab/p1", ("lab", "p1", Rule.ROUTING_STRING), id="routing-names-p1"),
        pytest.param([P2, P1], P1, "", ("lab", "p1", Rule.EXISTING_SESSION), id="ae-names-p1-study-in-both"),
        pytest.param([P1], P1, "fw://lab/p2", ("lab", "p1", Rule.EXISTING_SESSION), id="ae-beats-routing"),
        pytest.param([P1], None, "fw://LAB/P1", ("lab", "p1", Rule.EXISTING_SESSION), id="routing-any-case"),
        pytest.param([P2], None, "PAT1", ("lab", "p2", Rule.EXISTING_SESSION), id="unknown-group-names-none"),
        pytest.param([P2], None, "", ("lab", "p2", Rule.EXISTING_SESSION), id="nothing-named"),
        pytest.param([P2, P1], None, "", ("lab", "p2", Rule.EXISTING_SESSION), id="nothing-named-oldest"),
        pytest.param([], P1, "", ("lab", "p1", Rule.CALLED_AE), id="new-study"),
    ],
)
def test_existing_session_only_within_the_named_project(
    make_header: MakeHeader,
    sessions: list[tuple[str, str]],
    ae_project: tuple[str, str] | None,
    patient_id: str,
    expected: tuple[str, str, Rule],
) -> None:
    assert _place(make_header(patient_id=patient_id), sessions, ae_project) == expected


@pytest.mark.parametrize(
    ("sessions", "ae_project", "patient_id"),
    [
        pytest.param([P2], P1, "", id="called-ae"),
        pytest.param([P2], None, "fw://lab/p1", id="routing-string"),
    ],
)
def test_reject_policy_refuses_a_study_of_another_project(
    make_header: MakeHeader,
    sessions: list[tuple[str, str]],
    ae_project: tuple[str, str] | None,
    patient_id: str,
) -> None:
    with pytest.raises(StudyInAnotherProject) as raised:
        _place(make_header(patient_id=patient_id), sessions, ae_project, "reject")
    assert "p2" not in raised.value.message  # the other project is never named
    assert raised.value.code == "cross-project-study"


@pytest.mark.parametrize(
    ("sessions", "ae_project", "patient_id", "expected"),
    [
        pytest.param([P1], P1, "", ("lab", "p1", Rule.EXISTING_SESSION), id="same-project"),
        pytest.param([P2], None, "PAT1", ("lab", "p2", Rule.EXISTING_SESSION), id="nothing-named"),
        pytest.param([], P1, "", ("lab", "p1", Rule.CALLED_AE), id="new-study"),
    ],
)
def test_reject_policy_accepts_what_stays_within_a_project(
    make_header: MakeHeader,
    sessions: list[tuple[str, str]],
    ae_project: tuple[str, str] | None,
    patient_id: str,
    expected: tuple[str, str, Rule],
) -> None:
    assert _place(make_header(patient_id=patient_id), sessions, ae_project, "reject") == expected


def test_unknown_policy_fails_at_construction() -> None:
    with pytest.raises(ValueError, match="cross_project_study"):
        PlacementConfig(cross_project_study="merge")
