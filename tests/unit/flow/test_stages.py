"""The stage machine: allowed transitions and what a study's stage becomes when its jobs end."""

from __future__ import annotations

import pytest

from dicomflow.flow import InvalidTransition, JobOutcome, JobState, Stage, after_jobs, check_transition

ALLOWED = [
    ("Uploading", "Importing"),
    ("Uploading", "Failed"),
    ("Importing", "Processing"),
    ("Importing", "Finished"),
    ("Importing", "Failed"),
    ("Processing", "QualityControl"),
    ("Processing", "Finished"),
    ("Processing", "Failed"),
    ("QualityControl", "Finished"),
    ("QualityControl", "Failed"),
    ("QualityControl", "Processing"),
    ("Finished", "Processing"),
    ("Failed", "Processing"),
]


@pytest.mark.parametrize(("current", "new"), ALLOWED)
def test_allowed_transitions(current: str, new: str) -> None:
    assert check_transition(current, new) is Stage(new)


@pytest.mark.parametrize(
    ("current", "new"),
    [(c.value, n.value) for c in Stage for n in Stage if (c.value, n.value) not in ALLOWED],
)
def test_every_other_transition_is_refused(current: str, new: str) -> None:
    with pytest.raises(InvalidTransition, match=f"from {current} to {new}"):
        check_transition(current, new)


def _job(name: str, state: JobState, qc: bool = False, error: str = "") -> JobOutcome:
    return JobOutcome(name, state, qc, error)


@pytest.mark.parametrize(
    ("jobs", "expected"),
    [
        ([], (Stage.FINISHED, "nothing to process")),
        ([_job("a", JobState.SUCCEEDED)], (Stage.FINISHED, "all report types succeeded")),
        ([_job("a", JobState.SUCCEEDED), _job("b", JobState.RUNNING)], None),
        ([_job("a", JobState.RETRYING)], None),
        ([_job("a", JobState.QUEUED)], None),
        ([_job("a", JobState.SUCCEEDED, qc=True)], (Stage.QUALITY_CONTROL, "waiting for review of a")),
        (
            [_job("a", JobState.SUCCEEDED, qc=True), _job("b", JobState.FAILED, error="boom")],
            (Stage.FAILED, "b: boom"),
        ),
        (
            [_job("a", JobState.FAILED, error="x"), _job("b", JobState.FAILED, error="y")],
            (Stage.FAILED, "a: x; b: y"),
        ),
    ],
)
def test_after_jobs(jobs: list[JobOutcome], expected: tuple[Stage, str] | None) -> None:
    assert after_jobs(jobs) == expected
