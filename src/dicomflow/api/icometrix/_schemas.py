"""Response models of the icometrix-compatible API, field by field as ``icometrix-sdk`` 0.0.9 parses them.

Contract: ``shared/specs/icometrix_api.md`` section 5. Field names and order are the wire format: do not
rename. Timestamps are strings in the one form the client parses (``_model.timestamp``).
"""

from __future__ import annotations

from typing import Any, Generic, TypeVar

from pydantic import BaseModel

__all__ = [
    "CustomerReportEntity",
    "CustomerReportFile",
    "CustomerResultEntity",
    "Page",
    "PageMeta",
    "PatientEntity",
    "PipelineResultEntity",
    "PipelineResultsRef",
    "ProjectEntity",
    "Received",
    "ResultSet",
    "SeriesEntity",
    "SessionOpened",
    "Status",
    "StudyEntity",
    "StudyUploadEntity",
    "UploadEntity",
    "UploadEntityFiles",
    "User",
    "UserRole",
]

T = TypeVar("T", bound=BaseModel)


class BackendEntity(BaseModel):
    """What every entity but ``User`` carries."""

    id: str
    uri: str | None
    creation_timestamp: str | None
    update_timestamp: str | None


class ResultSet(BaseModel):
    """Size of a page: how many items in all, from which offset, how many per page."""

    count: int
    offset: int
    limit: int


class PageMeta(BaseModel):
    """The paging envelope's metadata."""

    result_set: ResultSet


class Page(BaseModel, Generic[T]):
    """A page of entities: ``pageIndex`` is a 0-based page number; no paging returns one large page."""

    meta_data: PageMeta
    results: list[T]


class ProjectEntity(BackendEntity):
    """A project."""

    name: str
    abbrev: str
    country: str
    display_name: str
    description: str
    project_type: str
    imported_timestamp: str | None


class PatientEntity(BackendEntity):
    """A subject."""

    patient_id: str
    project_id: str
    patient_name: str
    patient_birth_date: str
    patient_sex: str | None
    firstname: str | None
    lastname: str | None
    label: str
    unique_patient_id: str


class StudyEntity(BackendEntity):
    """A session."""

    modality: str
    patient_id: str
    project_id: str
    study_date: str
    study_time: str
    study_instance_uid: str
    study_description: str
    icobrain_report_type: str | None
    imported_timestamp: str | None


class SeriesEntity(BackendEntity):
    """An acquisition, with every one of its ~35 required fields (strings where the client wants strings)."""

    echo_time: str
    flip_angle: str
    series_date: str
    series_time: str
    sequence_name: str
    inversion_time: str
    repetition_time: str
    sequence_variant: str
    receive_coil_name: str
    scanning_sequence: str
    body_part_examined: str
    transmit_coil_name: str
    magnetic_field_strength: str
    pixel_spacing: str
    note: str
    modality: str
    study_id: str
    patient_id: str
    project_id: str
    quarantine: str
    series_type: str
    series_number: str
    slice_orientation: str
    series_description: str
    series_instance_uid: str
    expected_images_in_acquisition: str
    slice_gap: float
    slice_thickness: float
    maximum_slice_increment: float
    image_size: list[int]
    voxel_size: list[float]
    images_in_nifti: int
    images_in_acquisition: int
    imported_timestamp: str | None


class UploadEntity(BackendEntity):
    """An upload."""

    folder_uri: str
    status: str
    type: str
    compressed: bool
    logs: list[str]
    errors: list[str]
    icobrain_report_type: str
    project_id: str


class StudyUploadEntity(BackendEntity):
    """A study an upload brought: the three ids the client fetches it with."""

    project_id: str
    patient_id: str
    study_id: str
    upload_id: str


class UploadEntityFiles(BaseModel):
    """Files an upload received and has not imported yet."""

    files: list[str]


class CustomerReportFile(BaseModel):
    """A file of a finished report."""

    uri: str
    name: str
    type: str


class CustomerReportEntity(BackendEntity):
    """One requested report type on one study version; files once ``Finished``."""

    status: str
    study_id: str
    patient_id: str
    project_id: str
    project_name: str
    project_country: str
    study_instance_uid: str
    icobrain_report_type: str
    report_type: str
    report_files: list[CustomerReportFile]
    upload_id: str | None
    report_status: str
    report_translated_remarks: str | None
    dicom_patient_id: str
    patient_name: str
    pipeline_result_id: str | None


class PipelineResultsRef(BaseModel):
    """The pipeline result a customer result points to."""

    pipeline_results_id: str


class CustomerResultEntity(BackendEntity):
    """A succeeded job."""

    job_id: str
    study_id: str
    patient_id: str
    project_id: str
    qc_result_id: str
    pipeline_results: PipelineResultsRef


class PipelineResultEntity(BackendEntity):
    """A succeeded job with its numeric results."""

    image: str
    job_id: str
    results: Any
    pipeline: str
    study_id: str
    patient_id: str
    project_id: str
    run_parameters: dict[str, Any]
    software_version_data: dict[str, str]
    job_mode: str


class UserRole(BaseModel):
    """A role of the session's user: in one project, or over the installation (admins)."""

    id: str
    name: str
    user_id: str
    entity_id: str
    entity_type: str


class User(BaseModel):
    """The session's user (not a backend entity: no ``uri``)."""

    id: str
    firstname: str
    lastname: str
    email: str
    hospital: str
    country: str
    language: str
    region: str
    type: str
    note: str
    refresh_token: str
    token_expire_time: str
    roles: list[UserRole]
    blocked: bool
    verified: bool
    password_setup_required: bool
    exp: int
    creation_timestamp: str | None
    update_timestamp: str | None


class SessionOpened(BaseModel):
    """A login's answer (the session itself is the cookie)."""

    status: str
    email: str


class Status(BaseModel):
    """A plain acknowledgement."""

    status: str


class Received(BaseModel):
    """Names of the files an upload request kept."""

    received: list[str]
