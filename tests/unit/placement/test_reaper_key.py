"""Spec 3.2: the 2017 reaper routing key `subject@group/project`.

The default subject is `ex<StudyID>`; StudyID is 42 throughout.
"""

from __future__ import annotations

import pytest

from dicomflow.placement import parse_reaper_key


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        pytest.param("ex1234@neuro/amnesia", ("ex1234", "neuro", "amnesia"), id="full"),
        pytest.param("neuro/amnesia", ("ex42", "neuro", "amnesia"), id="no-subject"),
        pytest.param("s01@neuro", ("s01", "neuro", ""), id="no-project"),
        pytest.param("@neuro/amnesia/extra", ("ex42", "neuro", "amnesia/extra"), id="project-keeps-slashes"),
        pytest.param(" (s01@grp/proj) ", ("s01", "grp", "proj"), id="outer-punctuation-and-space"),
        pytest.param("a@b@grp/proj", ("a@b", "grp", "proj"), id="last-at"),
        pytest.param("", ("ex42", "", ""), id="empty"),
        pytest.param("grp/", ("ex42", "grp", ""), id="trailing-slash"),
    ],
)
def test_parse_reaper_key(value: str, expected: tuple[str, str, str]) -> None:
    assert parse_reaper_key(value, "42") == expected
