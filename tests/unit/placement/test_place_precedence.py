"""place(): rule precedence (spec 1.7 session UID first, 2.2 called AE) and the assembled Placement."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable, Collection
from datetime import UTC, datetime
from typing import Any

import pytest

from dicomflow.dicom import InstanceHeader
from dicomflow.placement import Placement, PlacementConfig, Rule, place

MakeHeader = Callable[..., InstanceHeader]
GROUPS = ("neuro", "psych")
PROJECTS = (("neuro", "Amnesia"), ("psych", "study01"))


def placed(
    header: InstanceHeader,
    config: PlacementConfig | None = None,
    *,
    existing_session: tuple[str, str] | None = None,
    called_ae_project: tuple[str, str] | None = None,
    existing_groups: Collection[str] = GROUPS,
) -> Placement:
    return place(
        header,
        config or PlacementConfig(),
        existing_sessions=[existing_session] if existing_session else [],
        called_ae_project=called_ae_project,
        existing_groups=existing_groups,
        existing_projects=PROJECTS,
    )


@pytest.mark.parametrize(
    ("session", "ae_project", "patient_id", "expected"),
    [
        pytest.param(
            ("psych", "study01"),
            None,
            "PAT001",
            ("psych", "study01", Rule.EXISTING_SESSION),
            id="existing-session-beats-an-unnamed-project",
        ),
        pytest.param(
            ("neuro", "Amnesia"),
            ("neuro", "Amnesia"),
            "fw://psych/study01",
            ("neuro", "Amnesia", Rule.EXISTING_SESSION),
            id="existing-session-in-the-named-project",
        ),
        pytest.param(
            None,
            ("psych", "study01"),
            "fw://neuro/Amnesia",
            ("psych", "study01", Rule.CALLED_AE),
            id="ae-beats-routing",
        ),
        pytest.param(
            None, None, "fw://neuro/amnesia", ("neuro", "Amnesia", Rule.ROUTING_STRING), id="routing"
        ),
        pytest.param(
            None, None, "fw://neuro", ("neuro", "Unsorted", Rule.ROUTING_STRING), id="routing-group-only"
        ),
        pytest.param(
            None, None, "fw://neuroo/x", ("neuro", "x", Rule.ROUTING_STRING), id="routing-fuzzy-group"
        ),
        pytest.param(
            None,
            None,
            "fw://cardio/heart",
            ("unknown", "cardio_heart", Rule.UNKNOWN_GROUP),
            id="unknown-group",
        ),
        # Flywheel's real behaviour with PatientID as routing tag: a plain id is a (valid, unknown) group.
        pytest.param(
            None, None, "BENCH0001", ("unknown", "bench0001_", Rule.UNKNOWN_GROUP), id="plain-patient-id"
        ),
        pytest.param(None, None, "fw://a", ("unknown", "Unsorted", Rule.FALLBACK), id="nothing-valid"),
        pytest.param(None, None, "", ("unknown", "Unsorted", Rule.FALLBACK), id="empty"),
    ],
)
def test_precedence(
    make_header: MakeHeader,
    session: tuple[str, str] | None,
    ae_project: tuple[str, str] | None,
    patient_id: str,
    expected: tuple[str, str, Rule],
) -> None:
    placement = placed(
        make_header(patient_id=patient_id), existing_session=session, called_ae_project=ae_project
    )
    assert (placement.group, placement.project, placement.rule) == expected


def test_plain_patient_id_still_labels_the_subject(make_header: MakeHeader) -> None:
    assert placed(make_header(patient_id="BENCH0001")).subject == "BENCH0001"


@pytest.mark.parametrize(
    ("session", "ae_project", "patient_id", "reason"),
    [
        pytest.param(
            ("psych", "study01"),
            None,
            "",
            "study '1.2.826.0.1.3680043.8.498.1' already has a session in 'psych/study01'",
            id="existing-session",
        ),
        pytest.param(
            ("psych", "study01"),
            None,
            "fw://psych/Study01",
            "study '1.2.826.0.1.3680043.8.498.1' already has a session in 'psych/study01'",
            id="existing-session-in-the-named-project",
        ),
        pytest.param(
            None, ("psych", "study01"), "", "the called AE title names project 'psych/study01'", id="ae"
        ),
        pytest.param(
            None,
            None,
            "fw://neuro/Amnesia",
            "PatientID 'fw://neuro/Amnesia' names group 'neuro' and project 'Amnesia'",
            id="routing",
        ),
        pytest.param(
            None,
            None,
            "PAT001",
            "PatientID 'PAT001' names group 'pat001', which does not exist; "
            "placed in 'unknown' as project 'pat001_'",
            id="unknown-group",
        ),
        pytest.param(None, None, "", "PatientID '' names no group or project", id="fallback"),
    ],
)
def test_reason(
    make_header: MakeHeader,
    session: tuple[str, str] | None,
    ae_project: tuple[str, str] | None,
    patient_id: str,
    reason: str,
) -> None:
    placement = placed(
        make_header(patient_id=patient_id), existing_session=session, called_ae_project=ae_project
    )
    assert placement.reason == reason


@pytest.mark.parametrize(
    ("config", "fields", "expected"),
    [
        pytest.param(
            PlacementConfig(routing_tag="PatientComments"),
            {"patient_id": "fw://psych/study01", "extra": {"PatientComments": "fw://neuro/Amnesia"}},
            ("neuro", "Amnesia"),
            id="routing-tag-from-extra",
        ),
        pytest.param(
            PlacementConfig(routing_tag="StudyComments"),
            {"patient_id": "fw://neuro/Amnesia"},
            ("unknown", "Unsorted"),
            id="routing-tag-not-read",
        ),
        pytest.param(
            PlacementConfig(routing_tag="PatientID"),
            {"patient_id": "PAT1", "extra": {"PatientID": "fw://neuro/Amnesia"}},
            ("neuro", "Amnesia"),
            id="extra-beats-attribute",
        ),
        pytest.param(
            PlacementConfig(routing_pattern="fw://{group}/{project}"),
            {"patient_id": "neuro/Amnesia"},
            ("unknown", "Unsorted"),
            id="pattern-requiring-prefix",
        ),
    ],
)
def test_routing_tag_and_pattern(
    make_header: MakeHeader, config: PlacementConfig, fields: dict[str, Any], expected: tuple[str, str]
) -> None:
    placement = placed(make_header(**fields), config)
    assert (placement.group, placement.project) == expected


def test_full_placement(make_header: MakeHeader) -> None:
    header = make_header(
        patient_id="fw://neuro/Amnesia/sub-01/ses-01/acq-1",
        patient_name="DOE^JOHN",
        patient_sex="M",
        study_date="20240315",
        study_time="101530",
        series_instance_uid="1.2.3.4",
        manufacturer="GE",
        acquisition_number=2,
    )
    placement = placed(header, PlacementConfig(timezone="Europe/Berlin"))
    assert placement == Placement(
        group="neuro",
        project="Amnesia",
        subject="sub-01",
        subject_firstname="John",
        subject_lastname="Doe",
        subject_sex="male",
        session_uid="1.2.826.0.1.3680043.8.498.1",
        session_label="ses-01",
        session_timestamp=datetime(2024, 3, 15, 9, 15, 30, tzinfo=UTC),
        acquisition_uid="1.2.3.4_2",
        acquisition_label="acq-1",
        acquisition_timestamp=datetime(2024, 3, 15, 9, 15, 30, tzinfo=UTC),
        timezone="Europe/Berlin",
        rule=Rule.ROUTING_STRING,
        reason="PatientID 'fw://neuro/Amnesia/sub-01/ses-01/acq-1' names group 'neuro' and project 'Amnesia'",
    )


def test_defaults_without_routing_labels(make_header: MakeHeader) -> None:
    header = make_header(
        patient_id="fw://neuro/Amnesia", study_description="Brain", series_description="T1", series_number=3
    )
    placement = placed(header)
    assert (placement.subject, placement.session_label, placement.acquisition_label) == (
        "fw_neuro_Amnesia",  # fw-file: subject.label is PatientID, sanitised
        "Brain",
        "3 - T1",
    )


def test_routing_labels_apply_with_an_existing_session(make_header: MakeHeader) -> None:
    placement = placed(
        make_header(patient_id="fw://psych/study01/sub-02"), existing_session=("psych", "study01")
    )
    assert (placement.group, placement.subject, placement.rule) == ("psych", "sub-02", Rule.EXISTING_SESSION)


@pytest.mark.parametrize(
    "fields",
    [
        pytest.param({"timezone": "Mars/Olympus"}, id="unknown-zone"),
        pytest.param({"routing_pattern": "[{group}"}, id="bad-pattern"),
        pytest.param({"fallback_group": ""}, id="empty-fallback-group"),
        pytest.param({"routing_tag": ""}, id="empty-routing-tag"),
    ],
)
def test_config_fails_at_construction(fields: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        PlacementConfig(**fields)


def test_placement_is_pure() -> None:
    """Importing dicomflow.placement pulls in neither pydicom nor anything with I/O."""
    code = (
        "import sys, dicomflow.placement\n"
        "loaded = {'pydicom', 'pynetdicom', 'sqlalchemy', 'httpx', 'dicomflow.dicom'} & set(sys.modules)\n"
        "assert not loaded, loaded\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
