"""The JSON of the native API as pydantic models, shared by the SDK (``dicomflow.client``) and its users.

Field names are exactly the API's (DICOM vocabulary in snake case: ``study_instance_uid``,
``series_instance_uid``). Fields the server adds later are ignored, so an older SDK keeps working against a
newer server. This module imports pydantic and the standard library only.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "Finding",
    "Job",
    "ReceivedFile",
    "ResultFile",
    "Stage",
    "StageEntry",
    "Study",
    "StudyReports",
    "Upload",
    "UploadFileError",
    "UploadState",
]


class Stage(StrEnum):
    """Where a study is in the processing flow (the values of ``dicomflow.flow.Stage``)."""

    UPLOADING = "Uploading"
    IMPORTING = "Importing"
    PROCESSING = "Processing"
    QUALITY_CONTROL = "QualityControl"
    FINISHED = "Finished"
    FAILED = "Failed"


class UploadState(StrEnum):
    """Where an upload is: files arriving, importing in the background, or ended."""

    UPLOADING = "uploading"
    IMPORTING = "importing"
    IMPORTED = "imported"
    FAILED = "failed"
    EXPIRED = "expired"


class _Model(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class UploadFileError(_Model):
    """Why one received file (or zip member) of an upload was not imported."""

    file: str = Field(description="The stored name of the file (or archive member).")
    code: str = Field(description="The error code, as in ``dicomflow.errors`` (``invalid-instance``, …).")
    message: str


class Upload(_Model):
    """An upload session (``POST /uploads``, ``GET /uploads/{id}``)."""

    id: str
    project: str
    report_type: str | None = None
    force_reprocessing: bool = False
    state: UploadState
    created_by: str = Field("", description="Email of the user who started it.")
    created_at: datetime
    updated_at: datetime
    expires_at: datetime | None = None
    files_received: int = 0
    instances_imported: int = 0
    errors: list[UploadFileError] = Field(default_factory=list)
    summary_errors: list[str] = Field(default_factory=list, description="Problems of the whole upload.")
    study_instance_uids: list[str] = Field(default_factory=list)
    study_ids: list[int] = Field(
        default_factory=list, description="Ids of the study versions it handed over."
    )

    @property
    def has_ended(self) -> bool:
        """Whether the upload will not change any more (imported, failed or expired)."""
        return self.state in (UploadState.IMPORTED, UploadState.FAILED, UploadState.EXPIRED)


class ReceivedFile(_Model):
    """One file stored by ``PUT /uploads/{id}/files``."""

    name: str = Field(description="The name the server stored it under.")
    size: int


class StageEntry(_Model):
    """One step of a study's stage history."""

    at: datetime
    stage: Stage
    actor: str
    reason: str


class Finding(_Model):
    """A finding of the completeness and validity checks (or of a report type)."""

    report_type: str
    code: str
    severity: str
    message: str
    series_instance_uid: str | None = None


class Job(_Model):
    """One report type run on one study version."""

    id: int
    study_id: int
    study_instance_uid: str
    report_type: str
    report_version: str
    state: str = Field(description="queued, running, retrying, succeeded or failed.")
    attempts: int
    max_attempts: int
    requires_qc: bool
    error: str
    created_at: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None
    next_attempt_at: datetime | None = None


class Study(_Model):
    """A study version in the processing flow, with its stage, history, findings and jobs."""

    id: int
    study_instance_uid: str
    version: int
    project: str
    group: str
    subject: str
    session: str
    stage: Stage
    reason: str
    report_types: list[str] = Field(default_factory=list)
    upload_id: str | None = None
    created_at: datetime
    updated_at: datetime
    history: list[StageEntry] = Field(default_factory=list)
    findings: list[Finding] = Field(default_factory=list)
    jobs: list[Job] = Field(default_factory=list)


class ResultFile(_Model):
    """A file a study's jobs produced (``GET /studies/{uid}/results``)."""

    id: int
    job_id: int
    report_type: str
    name: str
    kind: str
    media_type: str
    size: int
    sha256: str
    path: str = Field(description="Where the server keeps it, relative to its data directory.")


class StudyReports(Study):
    """A study with the list of its result files (what ``Client.reports_for_study`` returns)."""

    results: list[ResultFile] = Field(default_factory=list)
