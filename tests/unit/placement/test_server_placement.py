"""Spec 1.7 and the server-placement cases of 3.2 (scitran core tests), via resolve_destination."""

from __future__ import annotations

import pytest

from dicomflow.placement import PlacementConfig, Rule, resolve_destination

CONFIG = PlacementConfig()
GROUPS = ("neuro", "psych")


@pytest.mark.parametrize(
    ("group", "project", "projects", "expected"),
    [
        pytest.param("", "", [], ("unknown", "Unsorted", Rule.FALLBACK), id="empty-group-and-project"),
        pytest.param(
            "not_a_real_group",
            "new_project",
            [],
            ("unknown", "not_a_real_group_new_project", Rule.UNKNOWN_GROUP),
            id="unknown-group",
        ),
        pytest.param(
            "neuro", "", [], ("neuro", "Unsorted", Rule.ROUTING_STRING), id="existing-group-no-project"
        ),
        pytest.param(
            "Test with more info",
            "",
            [],
            ("unknown", "Test with more info_", Rule.UNKNOWN_GROUP),
            id="group-with-spaces",
        ),
        pytest.param("TeSt", "", [], ("unknown", "TeSt_", Rule.UNKNOWN_GROUP), id="TeSt-first"),
        pytest.param(
            "test",
            "",
            [("unknown", "TeSt_")],
            ("unknown", "TeSt_", Rule.UNKNOWN_GROUP),
            id="test-joins-TeSt_",
        ),
        pytest.param("Neuro", "x", [], ("neuro", "x", Rule.ROUTING_STRING), id="group-case-insensitive"),
        # Further rules of 1.7.
        pytest.param(
            "neuro",
            "amnesia",
            [("neuro", "Amnesia")],
            ("neuro", "Amnesia", Rule.ROUTING_STRING),
            id="project-case-insensitive-existing-spelling",
        ),
        pytest.param(
            "neuro",
            "",
            [("neuro", "unsorted")],
            ("neuro", "unsorted", Rule.ROUTING_STRING),
            id="fallback-project-case-insensitive",
        ),
        pytest.param("neurro", "x", [], ("neuro", "x", Rule.ROUTING_STRING), id="fuzzy-one-candidate"),
        pytest.param("", "b", [], ("unknown", "_b", Rule.UNKNOWN_GROUP), id="project-without-group"),
        pytest.param("unknown", "x", [], ("unknown", "x", Rule.ROUTING_STRING), id="fallback-group-exists"),
        pytest.param(
            "g" * 40,
            "p" * 40,
            [],
            ("unknown", ("g" * 40 + "_" + "p" * 40)[:64], Rule.UNKNOWN_GROUP),
            id="joined-label-cut-to-64",
        ),
    ],
)
def test_resolve_destination(
    group: str, project: str, projects: list[tuple[str, str]], expected: tuple[str, str, Rule]
) -> None:
    destination = resolve_destination(
        group, project, CONFIG, existing_groups=GROUPS, existing_projects=projects
    )
    assert (destination.group, destination.project, destination.rule) == expected


def test_fuzzy_match_needs_exactly_one_candidate() -> None:
    destination = resolve_destination(
        "lab-c", "x", CONFIG, existing_groups=["lab-a", "lab-b"], existing_projects=[]
    )
    assert (destination.group, destination.project) == ("unknown", "lab-c_x")


def test_fuzzy_match_below_cutoff() -> None:
    destination = resolve_destination("nrx", "x", CONFIG, existing_groups=GROUPS, existing_projects=[])
    assert destination.group == "unknown"


def test_fallback_project_of_2018_code_is_configurable() -> None:
    config = PlacementConfig(fallback_project="Unknown")
    destination = resolve_destination("", "", config, existing_groups=GROUPS, existing_projects=[])
    assert (destination.group, destination.project) == ("unknown", "Unknown")


@pytest.mark.parametrize(
    ("group", "project", "reason"),
    [
        pytest.param("neuro", "x", "the routing string names group 'neuro' and project 'x'", id="routing"),
        pytest.param("neuro", "", "the routing string names group 'neuro' but no project", id="no-project"),
        pytest.param(
            "nope",
            "x",
            "the routing string names group 'nope', which does not exist; "
            "placed in 'unknown' as project 'nope_x'",
            id="unknown-group",
        ),
        pytest.param("", "", "the routing string names no group or project", id="nothing"),
    ],
)
def test_reason_names_the_values(group: str, project: str, reason: str) -> None:
    destination = resolve_destination(group, project, CONFIG, existing_groups=GROUPS, existing_projects=[])
    assert destination.reason == reason
