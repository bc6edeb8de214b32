"""Spec 3.3: PatientName -> first and last name (reaper 2017 = fw-file), OperatorsName -> session.operator."""

from __future__ import annotations

import pytest

from dicomflow.placement import format_operators, split_patient_name


@pytest.mark.parametrize(
    ("name", "first", "last"),
    [
        pytest.param("Doe^John^Mid", "John^Mid", "Doe", id="caret-three-parts"),
        pytest.param("Doe^John", "John", "Doe", id="caret"),
        pytest.param("DOE^JOHN", "John", "Doe", id="title-cased"),
        pytest.param("John Doe", "John", "Doe", id="space"),
        pytest.param("Mary Ann Smith", "Mary Ann", "Smith", id="last-space"),
        pytest.param("Doe", None, "Doe", id="single-word"),
        pytest.param("^John", "John", None, id="empty-last"),
        pytest.param("Smith^^^Dr", "^^Dr", "Smith", id="empty-components"),
        pytest.param("doe-smith^anne marie", "Anne Marie", "Doe-Smith", id="hyphen-and-space"),
        pytest.param("o'brien^sean", "Sean", "O'Brien", id="apostrophe"),
        # Flywheel docs' table ("How the DICOM Connector Uploads an Image").
        pytest.param("John Mid Doe", "John Mid", "Doe", id="docs-three-words"),
        pytest.param("john doe", "John", "Doe", id="docs-lower-case"),
        # The docs show "JohnDoe"; fw-file's str.title() (the spec's rule) lower-cases the inner capital.
        pytest.param("JohnDoe", None, "Johndoe", id="docs-one-word"),
        pytest.param("", None, None, id="empty"),
    ],
)
def test_split_patient_name(name: str, first: str | None, last: str | None) -> None:
    assert split_patient_name(name) == (first, last)


@pytest.mark.parametrize(
    ("names", "expected"),
    [
        pytest.param(["Doe^Jane", "Roe^Rick"], "Jane Doe, Rick Roe", id="two-operators"),
        pytest.param(["Doe"], "Doe", id="last-name-only"),
        pytest.param(["", "^Jane"], "Jane", id="empty-left-out"),
        pytest.param([], "", id="none"),
    ],
)
def test_format_operators(names: list[str], expected: str) -> None:
    assert format_operators(names) == expected
