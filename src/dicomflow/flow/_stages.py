"""Stages, job states and the transitions between them."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum


class Stage(StrEnum):
    """Where a study is in the processing flow (the names users see)."""

    UPLOADING = "Uploading"
    IMPORTING = "Importing"
    PROCESSING = "Processing"
    QUALITY_CONTROL = "QualityControl"
    FINISHED = "Finished"
    FAILED = "Failed"


class JobState(StrEnum):
    """State of one job: one report type run on one study version."""

    QUEUED = "queued"
    RUNNING = "running"
    RETRYING = "retrying"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


TERMINAL = frozenset({Stage.FINISHED, Stage.FAILED})

_ALLOWED: dict[Stage, frozenset[Stage]] = {
    Stage.UPLOADING: frozenset({Stage.IMPORTING, Stage.FAILED}),
    Stage.IMPORTING: frozenset({Stage.PROCESSING, Stage.FINISHED, Stage.FAILED}),
    Stage.PROCESSING: frozenset({Stage.QUALITY_CONTROL, Stage.FINISHED, Stage.FAILED}),
    Stage.QUALITY_CONTROL: frozenset({Stage.FINISHED, Stage.FAILED, Stage.PROCESSING}),
    # a re-run (reprocess, or a rejection sent back) leaves a terminal stage for Processing again
    Stage.FINISHED: frozenset({Stage.PROCESSING}),
    Stage.FAILED: frozenset({Stage.PROCESSING}),
}


class InvalidTransition(ValueError):
    """A stage change the flow does not allow (a bug in the caller, or a stale request)."""


def check_transition(current: Stage | str, new: Stage | str) -> Stage:
    """Return ``new`` as a :class:`Stage` if a study may move there from ``current``.

    Raises
    ------
    InvalidTransition
        When the flow does not allow the move, e.g. Finished → QualityControl.
    """
    current, new = Stage(current), Stage(new)
    if new not in _ALLOWED[current]:
        raise InvalidTransition(f"a study cannot move from {current} to {new}")
    return new


@dataclass(frozen=True)
class JobOutcome:
    """What the flow needs to know of one job of a study version."""

    report_type: str
    state: JobState
    requires_qc: bool
    error: str = ""


def after_jobs(jobs: Sequence[JobOutcome]) -> tuple[Stage, str] | None:
    """The stage a study in Processing moves to once its jobs end, with the reason; None while any runs.

    A failed job fails the study (its error is the reason); else the study waits in QualityControl when
    any report type asks for review, and is Finished otherwise.
    """
    if any(job.state not in (JobState.SUCCEEDED, JobState.FAILED) for job in jobs):
        return None
    failed = [job for job in jobs if job.state is JobState.FAILED]
    if failed:
        return Stage.FAILED, "; ".join(f"{job.report_type}: {job.error}" for job in failed)
    review = [job.report_type for job in jobs if job.requires_qc]
    if review:
        return Stage.QUALITY_CONTROL, f"waiting for review of {', '.join(review)}"
    return Stage.FINISHED, "all report types succeeded" if jobs else "nothing to process"
