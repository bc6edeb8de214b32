"""The JSON of the native API as pydantic models, shared by the SDK (``dicomflow.client``) and its users.

Field names are exactly the API's (DICOM vocabulary in snake case: ``study_instance_uid``,
``series_instance_uid``). Fields the server adds later are ignored, so an older SDK keeps working against a
newer server. This module imports pydantic, the standard library and the pure :mod:`dicomflow.flow` only
(whose enums, :class:`Stage` and :class:`JobState`, it re-exports: they are defined once, there).
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field

from dicomflow.flow import JobState, Stage

__all__ = [
    "FileList",
    "Finding",
    "Job",
    "JobState",
    "ReceivedFile",
    "ReceivedFiles",
    "ReportType",
    "ReportTypeAlias",
    "Reprocess",
    "ResultFile",
    "Review",
    "Rule",
    "RuleCreate",
    "Stage",
    "StageEntry",
    "Study",
    "StudyReports",
    "Upload",
    "UploadFileError",
    "UploadStart",
    "UploadState",
]


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


class ReceivedFiles(_Model):
    """Answer to ``PUT /uploads/{id}/files`` (and ``/files/{name}``)."""

    received: list[ReceivedFile]


class FileList(_Model):
    """Files received and not yet imported (``GET /uploads/{id}/files``)."""

    files: list[str] = Field(description="Stored names (a fresh UUID and the sanitised client name).")


class UploadStart(_Model):
    """Body of ``POST /uploads``."""

    project: str = Field(description="Label of the project the data goes to.", min_length=1, max_length=128)
    report_type: str | None = Field(None, description="Report type to run on each study found (or an alias).")
    force_reprocessing: bool = Field(False, description="Process again even if the same data was processed.")


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
    state: JobState = Field(description="queued, running, retrying, succeeded or failed.")
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


class Rule(_Model):
    """A project rule (``GET /projects/{label}/rules``): run ``report_type`` on the project's new studies
    whose tags match."""

    id: int
    project: str = Field(description="The project's label.")
    report_type: str
    match: dict[str, str] = Field(
        default_factory=dict, description="DICOM keyword -> regex (case-insensitive); all must match."
    )


class ReportType(_Model):
    """An installed report type (``GET /report-types``)."""

    name: str
    version: str
    title: str
    requires_qc: bool = Field(description="Whether its results wait in QualityControl for a reviewer.")
    inputs: dict[str, str] = Field(default_factory=dict, description="Input name -> what it accepts.")


class ReportTypeAlias(_Model):
    """Another name of an installed report type (``GET /report-types`` lists them after the types)."""

    alias: str
    name: str = Field(description="The report type it stands for.")


class Review(_Model):
    """Body of the QualityControl decisions (``POST /studies/{uid}/qc/approve`` and ``.../reject``)."""

    comment: str = Field("", description="The reviewer's note (required to reject).", max_length=4000)
    rerun: bool = Field(False, description="On reject: run the report types again instead of failing.")


class Reprocess(_Model):
    """Body of ``POST /studies/{uid}/reprocess``."""

    report_types: list[str] = Field(
        default_factory=list, description="Report types to run; default: as before."
    )


class RuleCreate(_Model):
    """Body of ``POST /projects/{label}/rules``."""

    report_type: str = Field(description="Report type (or alias) to run on new studies.")
    match: dict[str, str] = Field(
        default_factory=dict, description="DICOM keyword -> regex (case-insensitive); all must match."
    )
