"""Keys of what the nodes share through the blob store besides instances (whose keys start with a UID).

``results/<job id>/<path in the job's output>``, ``logs/<job id>/attempt-<n>.log``,
``uploads/<upload id>/<file>``: any node serves any result, log or upload file.
"""

from __future__ import annotations

RESULTS_PREFIX = "results/"
LOGS_PREFIX = "logs/"
UPLOADS_PREFIX = "uploads/"


def result_key(job_id: int, relative: str) -> str:
    """The key of a job's result file ``relative`` (a relative path inside its output)."""
    return f"{RESULTS_PREFIX}{job_id}/{relative.lstrip('/')}"


def log_key(job_id: int, attempt: str) -> str:
    """The key of the log of one attempt of a job (``attempt`` as its workdir is named: ``attempt-2``)."""
    return f"{LOGS_PREFIX}{job_id}/{attempt}.log"


def upload_prefix(upload_id: str) -> str:
    """The prefix of an upload's received files."""
    return f"{UPLOADS_PREFIX}{upload_id}/"


def is_shared_key(stored: str) -> bool:
    """Whether a stored location is a key of the blob store (results filed before it name a file in the
    data directory instead)."""
    return stored.startswith((RESULTS_PREFIX, LOGS_PREFIX, UPLOADS_PREFIX))
