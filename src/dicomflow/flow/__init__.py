"""The stage machine of a study: Uploading → Importing → Processing → QualityControl → Finished | Failed.

Pure rules, no I/O: which transitions are allowed and what a study's stage becomes when its jobs end.
The index stores the stage, its history and the reason; this package decides them.
"""

from dicomflow.flow._stages import (
    TERMINAL,
    InvalidTransition,
    JobOutcome,
    JobState,
    Stage,
    after_jobs,
    check_transition,
)

__all__ = [
    "TERMINAL",
    "InvalidTransition",
    "JobOutcome",
    "JobState",
    "Stage",
    "after_jobs",
    "check_transition",
]
