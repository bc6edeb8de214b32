"""Spec 3.1: fw-meta routing strings and field loaders (verified against fw-meta 4.13.0, TZ=UTC)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

import pytest

from dicomflow.dicom import InstanceHeader
from dicomflow.placement import (
    DEFAULT_ROUTING_PATTERN,
    PlacementConfig,
    Routing,
    Rule,
    acquisition_label,
    compile_routing_pattern,
    first_label,
    normalize_sex,
    parse_dicom_datetime,
    parse_routing_string,
    place,
    sanitize_label,
    subject_label,
)

MakeHeader = Callable[..., InstanceHeader]

NOTHING = Routing()


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        pytest.param("fw://neuro/Amnesia", Routing("neuro", "Amnesia"), id="prefix"),
        pytest.param("neuro/Amnesia", Routing("neuro", "Amnesia"), id="no-prefix"),
        pytest.param(
            "fw://Neuro/Amnesia/sub-01/ses-01",
            Routing("neuro", "Amnesia", "sub-01", "ses-01"),
            id="group-lower-cased-four-parts",
        ),
        pytest.param(
            "fw://neuro/Amnesia/sub-01/ses-01/acq-1",
            Routing("neuro", "Amnesia", "sub-01", "ses-01", "acq-1"),
            id="five-parts",
        ),
        pytest.param("fw://neuro", Routing(group="neuro"), id="group-only"),
        pytest.param("fw://neuro/Amnesia/sub-01/ses-01/acq-1/extra", NOTHING, id="six-parts-no-match"),
        pytest.param("fw://a/b", Routing(project="b"), id="group-too-short-dropped"),
        pytest.param("fw://a", NOTHING, id="only-a-too-short-group"),
        pytest.param("fw://NEURO_lab/My Project*", Routing("neuro_lab", "My Projectstar"), id="star"),
        pytest.param("fw://bad group!/proj", Routing(project="proj"), id="invalid-group-dropped"),
        pytest.param(
            "fw://neuro/Proj:Name?/s 1", Routing("neuro", "Proj_Name_", "s 1"), id="label-sanitised"
        ),
        pytest.param(
            "fw:/neuro/Amnesia", Routing(project="neuro", subject="Amnesia"), id="one-slash-near-miss"
        ),
        pytest.param("FW://neuro/Amnesia", NOTHING, id="prefix-case-sensitive"),
        pytest.param("fw://neuro//sub", NOTHING, id="empty-part"),
        # fw-meta does not strip; InstanceHeader values are stripped on read and place() strips again.
        pytest.param("  fw://neuro/Amnesia  ", NOTHING, id="padded"),
        pytest.param("random text", NOTHING, id="random-text"),
        pytest.param("", NOTHING, id="empty"),
    ],
)
def test_parse_routing_string(value: str, expected: Routing) -> None:
    assert parse_routing_string(value) == expected


def test_padded_routing_value_is_stripped_by_place(make_header: MakeHeader) -> None:
    header = make_header(extra={"PatientComments": "  fw://neuro/Amnesia  "})
    config = PlacementConfig(routing_tag="PatientComments")
    placement = place(
        header,
        config,
        called_ae_project=None,
        existing_groups=["neuro"],
        existing_projects=[],
    )
    assert (placement.group, placement.project, placement.rule) == ("neuro", "Amnesia", Rule.ROUTING_STRING)


def test_empty_data_takes_the_default_group(make_header: MakeHeader) -> None:
    """`{}` with mapping PatientID -> group and default group `default` -> group `default`."""
    config = PlacementConfig(fallback_group="default")
    placement = place(
        make_header(),
        config,
        called_ae_project=None,
        existing_groups=[],
        existing_projects=[],
    )
    assert (placement.group, placement.project, placement.rule) == ("default", "Unsorted", Rule.FALLBACK)


def test_series_number_template(make_header: MakeHeader) -> None:
    """SeriesNumber=3, SeriesDescription=foo, template `{SeriesNumber} - {SeriesDescription}`."""
    assert acquisition_label(make_header(series_number=3, series_description="foo"), "UTC") == "3 - foo"


def test_patient_id_of_70_characters_is_truncated_to_64(make_header: MakeHeader) -> None:
    assert subject_label(make_header(patient_id="x" * 70)) == "x" * 64


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        pytest.param("T2*w..", "T2starw", id="star-and-trailing-dots"),
        pytest.param("a/b:c<d>e?f\\g|h", "a_b_c_d_e_f_g_h", id="each-unsafe-char"),
        pytest.param("a\t\r\n\x0b\x0cb", "a_b", id="run-of-controls-is-one-underscore"),
        pytest.param("a\x00\x7fb", "a_b", id="non-printable-ascii"),
        pytest.param("Müller Kopf", "Müller Kopf", id="non-ascii-and-spaces-kept"),
        pytest.param("...", "", id="only-dots"),
    ],
)
def test_sanitize_label(value: str, expected: str) -> None:
    assert sanitize_label(value) == expected


def test_sanitize_label_cuts_acquisition_labels_at_128() -> None:
    assert sanitize_label("y" * 300, 128) == "y" * 128


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        pytest.param("M", "male", id="M"),
        pytest.param("f", "female", id="f"),
        pytest.param("O", "other", id="O"),
        pytest.param("unknown", "unknown", id="unknown"),
        pytest.param("U", None, id="U-dropped"),
        pytest.param("", None, id="empty"),
    ],
)
def test_normalize_sex(value: str, expected: str | None) -> None:
    assert normalize_sex(value) == expected


def test_study_date_and_time_give_the_session_timestamp(make_header: MakeHeader) -> None:
    """`{StudyDate}{StudyTime}` = 20001231 + 133742 -> 2000-12-31T13:37:42+00:00, timezone UTC."""
    expected = datetime(2000, 12, 31, 13, 37, 42, tzinfo=UTC)
    assert parse_dicom_datetime("20001231", "133742", "UTC") == expected
    placement = place(
        make_header(study_date="20001231", study_time="133742"),
        PlacementConfig(),
        called_ae_project=None,
        existing_groups=[],
        existing_projects=[],
    )
    assert (placement.session_timestamp, placement.timezone) == (expected, "UTC")
    assert placement.session_timestamp is not None and placement.session_timestamp.utcoffset() is not None


@pytest.mark.parametrize(
    ("study_comments", "expected"),
    [
        pytest.param("Comment", "Comment", id="first-mapping-wins"),
        pytest.param("", "20001231", id="falls-back-to-second"),
    ],
)
def test_fallback_chain(study_comments: str, expected: str) -> None:
    """Mappings StudyComments -> session then StudyDate -> session: the first non-empty one wins."""
    assert first_label(study_comments, "20001231") == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [pytest.param("s123", Routing(subject="s123"), id="s123"), pytest.param("foobar", NOTHING, id="foobar")],
)
def test_constrained_capture(value: str, expected: Routing) -> None:
    assert parse_routing_string(value, r"{subject:s\d+}") == expected


@pytest.mark.parametrize(
    ("pattern", "value", "expected"),
    [
        pytest.param(
            "fw://{group._id}/{project.label}[/{subject.label}][/{session.label}]",
            "fw://psych/study01/s1",
            Routing("psych", "study01", "s1"),
            id="docs-advanced-configuration",
        ),
        pytest.param(
            "{grp}/{proj}/{sub}/{ses}/{acq}", "g1/p/s/e/a", Routing("g1", "p", "s", "e", "a"), id="aliases"
        ),
        pytest.param(r"{subject:s\d{3}}", "s123", Routing(subject="s123"), id="braces-in-regex"),
        pytest.param("{subject:.+}", "a/b", NOTHING, id="label-with-slash-dropped"),
    ],
)
def test_other_patterns(pattern: str, value: str, expected: Routing) -> None:
    assert parse_routing_string(value, pattern) == expected


@pytest.mark.parametrize(
    "pattern",
    [
        pytest.param("[{group}", id="unmatched-["),
        pytest.param("{group}]", id="unmatched-]"),
        pytest.param("{group", id="unmatched-{"),
        pytest.param("{nope}", id="unknown-field"),
        pytest.param("{group}/{grp}", id="repeated-field"),
        pytest.param("[{group:a)}", id="capture-regex-closes-bracket"),
    ],
)
def test_malformed_pattern(pattern: str) -> None:
    with pytest.raises(ValueError, match="routing pattern"):
        compile_routing_pattern(pattern)


def test_default_pattern_is_fw_metas() -> None:
    assert DEFAULT_ROUTING_PATTERN == "[fw://]{group}[/{project}[/{subject}[/{session}[/{acquisition}]]]]"
