"""The icometrix-compatible model and its mapping from dicomflow, in one place (the routes only translate).

Contract: ``shared/specs/icometrix_api.md`` (what ``icometrix-sdk`` 0.0.9 sends and accepts). The points
that shape this module:

* ids are lowercase UUID strings; ours are integers, so an id is a UUID whose first group names the kind
  of entity and whose last group is the integer (``00000003-0000-4000-8000-00000000002a`` is study 42):
  reversible, stable, path-safe, and never confused across kinds;
* every entity carries ``update_timestamp`` and ``creation_timestamp`` in the narrow format the client
  parses (naive UTC with microseconds);
* a customer report is one requested report type on one study version; it always ends ``Finished``
  (the client waits for nothing else), a failure or a QC rejection travels in ``report_status`` and
  ``report_translated_remarks``;
* an upload that found no DICOM is ``import_success`` with ``errors`` saying so (the reference example
  then stops with that message), one that could not run is ``import_failed``.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import PurePosixPath
from typing import Any, TypeVar

from pydantic import BaseModel

from dicomflow import __version__
from dicomflow.api.icometrix import _schemas as s
from dicomflow.usecases.accounts import Role, UserInfo
from dicomflow.usecases.icometrix import HierarchyIds as Ids
from dicomflow.usecases.icometrix import (
    JobInfo,
    Kind,
    ProjectRecord,
    Report,
    SeriesRecord,
    SessionRecord,
    StudyInfo,
    SubjectRecord,
    UploadInfo,
    make_id,
    report_status,
)

STORAGE = "/storage-service/api/v1/projects"
UPLOADS = "/uploads-service/api/v1/projects"
REPORTS = "/customer-reports-service/api/v2/projects"
DEFAULT_PAGE = 1000  # calls without paging read only the first page: it must hold everything realistic

MODALITIES = frozenset(
    [
        "CR",
        "CT",
        "MR",
        "US",
        "OT",
        "BI",
        "CD",
        "DD",
        "DG",
        "ES",
        "LS",
        "PT",
        "RG",
        "ST",
        "TG",
        "XA",
        "RF",
        "HC",
        "DX",
        "NM",
        "MG",
        "IO",
        "PX",
        "GM",
        "SM",
        "XC",
        "PR",
        "AU",
        "EPS",
        "HD",
        "SR",
        "OP",
        "IVUS",
        "SMR",
        "RTIMAGE",
        "RTDOSE",
        "RTSTRUCT",
        "RTPLAN",
        "RTRECORD",
    ]
)


def timestamp(value: datetime | None) -> str | None:
    """``2024-05-01T10:20:30.123456``: naive UTC with microseconds, the only form the client parses."""
    if value is None:
        return None
    moment = value.astimezone(UTC) if value.tzinfo else value
    return moment.replace(tzinfo=None).strftime("%Y-%m-%dT%H:%M:%S.%f")


def _base(
    entity_id: str, uri: str | None, created: datetime | None, updated: datetime | None
) -> dict[str, Any]:
    return {
        "id": entity_id,
        "uri": uri,
        "creation_timestamp": timestamp(created),
        "update_timestamp": timestamp(updated),
    }


M = TypeVar("M", bound=BaseModel)


def page(items: Sequence[M], page_index: int | None, page_size: int | None) -> s.Page[M]:
    """The paging envelope: ``pageIndex`` is a 0-based page number; no paging returns one large page."""
    size = max(1, page_size) if page_size else DEFAULT_PAGE
    offset = max(0, page_index or 0) * size
    result_set = s.ResultSet(count=len(items), offset=offset, limit=size)
    return s.Page[M](meta_data=s.PageMeta(result_set=result_set), results=list(items[offset : offset + size]))


# -- URIs ---------------------------------------------------------------------------------------------------


def project_uri(project_id: int) -> str:
    return f"{STORAGE}/{make_id(Kind.PROJECT, project_id)}"


def patient_uri(project_id: int, subject_id: int) -> str:
    return f"{project_uri(project_id)}/patients/{make_id(Kind.PATIENT, subject_id)}"


def study_uri(project_id: int, subject_id: int, session_id: int) -> str:
    return f"{patient_uri(project_id, subject_id)}/studies/{make_id(Kind.STUDY, session_id)}"


def report_uri(project_id: int, study_version_id: int, index: int) -> str:
    report = make_id(Kind.REPORT, study_version_id, index)
    return f"{REPORTS}/{make_id(Kind.PROJECT, project_id)}/customer-reports/{report}"


def upload_uri(project_id: int, upload_id: str) -> str:
    return f"{UPLOADS}/{make_id(Kind.PROJECT, project_id)}/multi-upload/{upload_id}"


def upload_folder_uri(project_id: int, upload_id: str) -> str:
    return f"{UPLOADS}/{make_id(Kind.PROJECT, project_id)}/dicom-uploads/{upload_id}"


# -- entities -----------------------------------------------------------------------------------------------


def project(row: ProjectRecord) -> s.ProjectEntity:
    """``ProjectEntity`` of a project."""
    return s.ProjectEntity(
        **_base(make_id(Kind.PROJECT, row.id), project_uri(row.id), row.created_at, row.created_at),
        name=row.label,
        abbrev=re.sub(r"[^A-Za-z0-9]", "", row.label)[:8].upper() or "PRJ",
        country="",
        display_name=row.label,
        description=f"group {row.group_id}",
        project_type="dicomflow",
        imported_timestamp=timestamp(row.created_at),
    )


def patient(row: SubjectRecord, project_id: int) -> s.PatientEntity:
    """``PatientEntity`` of a subject."""
    name = " ".join(p for p in (row.firstname, row.lastname) if p) or row.label
    return s.PatientEntity(
        **_base(
            make_id(Kind.PATIENT, row.id), patient_uri(project_id, row.id), row.created_at, row.created_at
        ),
        patient_id=make_id(Kind.PATIENT, row.id),
        project_id=make_id(Kind.PROJECT, project_id),
        patient_name=name,
        patient_birth_date="",
        patient_sex=row.sex,
        firstname=row.firstname,
        lastname=row.lastname,
        label=row.label,
        unique_patient_id=row.label,
    )


def study(
    row: SessionRecord, project_id: int, modalities: Sequence[str], report_types: Sequence[str]
) -> s.StudyEntity:
    """``StudyEntity`` of a session."""
    when = row.timestamp
    modality = next((m for m in modalities if m in MODALITIES), "OT")
    return s.StudyEntity(
        **_base(
            make_id(Kind.STUDY, row.id),
            study_uri(project_id, row.subject_id, row.id),
            row.created_at,
            row.created_at,
        ),
        modality=modality,
        patient_id=make_id(Kind.PATIENT, row.subject_id),
        project_id=make_id(Kind.PROJECT, project_id),
        study_date=when.strftime("%Y%m%d") if when else "19000101",
        study_time=when.strftime("%H%M%S") if when else "000000",
        study_instance_uid=row.study_instance_uid,
        study_description=row.label,
        icobrain_report_type=report_types[0] if report_types else None,
        imported_timestamp=timestamp(row.created_at),
    )


SERIES_TEXT = {
    "echo_time": "EchoTime",
    "flip_angle": "FlipAngle",
    "series_date": "SeriesDate",
    "series_time": "SeriesTime",
    "sequence_name": "SequenceName",
    "inversion_time": "InversionTime",
    "repetition_time": "RepetitionTime",
    "sequence_variant": "SequenceVariant",
    "receive_coil_name": "ReceiveCoilName",
    "scanning_sequence": "ScanningSequence",
    "body_part_examined": "BodyPartExamined",
    "transmit_coil_name": "TransmitCoilName",
    "magnetic_field_strength": "MagneticFieldStrength",
    "pixel_spacing": "PixelSpacing",
}


def series(row: SeriesRecord, ids: Ids) -> s.SeriesEntity:
    """``SeriesEntity``: every one of its ~35 required fields, as strings where the client wants strings.

    The header attributes are the first instance's, kept in the index when the series was placed (each
    value as text, see ``dicom.read_series_attributes``).
    """
    header: Mapping[str, list[str]] = row.header or {}

    def text(keyword: str) -> str:
        return "\\".join(header.get(keyword) or [])

    def number(keyword: str) -> float:
        values = header.get(keyword) or []
        try:
            return float(values[0]) if len(values) == 1 else 0.0
        except ValueError:
            return 0.0

    def integer(keyword: str) -> int:
        values = header.get(keyword) or []
        return int(values[0]) if values else 0

    spacing = [float(v) for v in header.get("PixelSpacing") or []]
    count = row.instance_count
    return s.SeriesEntity(
        **_base(make_id(Kind.SERIES, row.id), None, row.created_at, row.created_at),
        **{field: text(keyword) for field, keyword in SERIES_TEXT.items()},
        note="",
        modality=row.modality,
        study_id=make_id(Kind.STUDY, ids.session),
        patient_id=make_id(Kind.PATIENT, ids.subject),
        project_id=make_id(Kind.PROJECT, ids.project),
        quarantine="false",
        series_type=row.label,
        series_number="" if row.series_number is None else str(row.series_number),
        slice_orientation=_orientation(header.get("ImageOrientationPatient")),
        series_description=row.series_description,
        series_instance_uid=row.series_instance_uid,
        expected_images_in_acquisition=text("ImagesInAcquisition"),
        slice_gap=max(0.0, number("SpacingBetweenSlices") - number("SliceThickness"))
        if number("SpacingBetweenSlices")
        else 0.0,
        slice_thickness=number("SliceThickness"),
        maximum_slice_increment=number("SpacingBetweenSlices") or number("SliceThickness"),
        image_size=[integer("Rows"), integer("Columns"), count],
        voxel_size=[*spacing[:2], number("SliceThickness")] if spacing else [],
        images_in_nifti=count,
        images_in_acquisition=count,
        imported_timestamp=timestamp(row.created_at),
    )


def _orientation(cosines: Sequence[str] | None) -> str:
    if not cosines or len(cosines) != 6:
        return ""
    row, col = [float(v) for v in cosines[:3]], [float(v) for v in cosines[3:]]
    normal = [
        abs(row[1] * col[2] - row[2] * col[1]),
        abs(row[2] * col[0] - row[0] * col[2]),
        abs(row[0] * col[1] - row[1] * col[0]),
    ]
    return ("sagittal", "coronal", "axial")[normal.index(max(normal))]


def upload(info: UploadInfo, project_id: int) -> s.UploadEntity:
    """``UploadEntity`` of an upload.

    An upload that found no DICOM is ``import_success`` with ``errors`` saying so (the reference example
    then stops with that message), one that could not run is ``import_failed``.
    """
    if info.state in ("imported",) or (
        info.state == "failed" and info.summary_errors[:1] and info.summary_errors[0].startswith("No DICOM")
    ):
        status = "import_success"
    elif info.state in ("failed", "expired"):
        status = "import_failed"
    else:
        status = info.state  # uploading, importing: keep polling
    errors = [*info.summary_errors, *(f"{e.file}: {e.message}" for e in info.errors)]
    return s.UploadEntity(
        **_base(info.id, upload_uri(project_id, info.id), info.created_at, info.updated_at),
        folder_uri=upload_folder_uri(project_id, info.id),
        status=status,
        type="multi-upload",
        compressed=False,
        logs=[
            f"{info.files_received} file(s) received",
            f"{info.instances_imported} instance(s) imported",
        ],
        errors=errors,
        icobrain_report_type=info.report_type or "",
        project_id=make_id(Kind.PROJECT, project_id),
    )


def study_upload(info: StudyInfo, ids: Ids, upload_id: str) -> s.StudyUploadEntity:
    """``StudyUploadEntity``: the three ids the client fetches the study with."""
    return s.StudyUploadEntity(
        **_base(make_id(Kind.STUDY, ids.session, 1), None, info.created_at, info.updated_at),
        project_id=make_id(Kind.PROJECT, ids.project),
        patient_id=make_id(Kind.PATIENT, ids.subject),
        study_id=make_id(Kind.STUDY, ids.session),
        upload_id=upload_id,
    )


def report(found: Report) -> s.CustomerReportEntity:
    """``CustomerReportEntity``: one requested report type on one study version; files once Finished.

    A report always ends ``Finished`` (the client waits for nothing else); a failure or a QC rejection
    travels in ``report_status`` and ``report_translated_remarks``.
    """
    info, ids, jobs = found.info, found.ids, found.jobs
    status, detail, remarks = report_status(info, jobs)
    uri = report_uri(ids.project, info.id, found.index)
    files = []
    if status == "Finished" and detail == "Finished":
        files = [
            s.CustomerReportFile(
                uri=f"{uri}/files/{r.id}",
                name=file_name(r.name),
                type=PurePosixPath(r.name).suffix.lstrip(".") or "bin",
            )
            for r in found.results
        ]
    return s.CustomerReportEntity(
        **_base(make_id(Kind.REPORT, info.id, found.index), uri, info.created_at, info.updated_at),
        status=status,
        study_id=make_id(Kind.STUDY, ids.session),
        patient_id=make_id(Kind.PATIENT, ids.subject),
        project_id=make_id(Kind.PROJECT, ids.project),
        project_name=info.project,
        project_country="",
        study_instance_uid=info.study_instance_uid,
        icobrain_report_type=found.requested,
        report_type=found.requested,
        report_files=files,
        upload_id=info.upload_id,
        report_status=detail,
        report_translated_remarks=remarks or None,
        dicom_patient_id=found.dicom_patient_id,
        patient_name=info.subject,
        pipeline_result_id=make_id(Kind.RESULT, jobs[0].id) if jobs else None,
    )


def file_name(name: str) -> str:
    """The name a report file is sent under (its last path component)."""
    return PurePosixPath(name).name.replace("/", "_") or "file"


def customer_result(job: JobInfo, ids: Ids) -> s.CustomerResultEntity:
    """``CustomerResultEntity`` of a succeeded job."""
    result_id = make_id(Kind.RESULT, job.id)
    uri = f"{study_uri(ids.project, ids.subject, ids.session)}/customer-results/{result_id}"
    return s.CustomerResultEntity(
        **_base(result_id, uri, job.created_at, job.finished_at),
        job_id=str(job.id),
        study_id=make_id(Kind.STUDY, ids.session),
        patient_id=make_id(Kind.PATIENT, ids.subject),
        project_id=make_id(Kind.PROJECT, ids.project),
        qc_result_id="",
        pipeline_results=s.PipelineResultsRef(pipeline_results_id=result_id),
    )


def pipeline_result(job: JobInfo, ids: Ids, measurements: Any) -> s.PipelineResultEntity:
    """``PipelineResultEntity`` of a succeeded job, with its numeric results."""
    result_id = make_id(Kind.RESULT, job.id)
    study = study_uri(ids.project, ids.subject, ids.session)
    uri = study.replace("/v1/", "/v2/") + f"/pipeline-results/{result_id}"
    return s.PipelineResultEntity(
        **_base(result_id, uri, job.created_at, job.finished_at),
        image="",
        job_id=str(job.id),
        results=measurements,
        pipeline=job.report_type,
        study_id=make_id(Kind.STUDY, ids.session),
        patient_id=make_id(Kind.PATIENT, ids.subject),
        project_id=make_id(Kind.PROJECT, ids.project),
        run_parameters={"report_version": job.report_version},
        software_version_data={"dicomflow": __version__},
        job_mode="initial",
    )


def user(info: UserInfo, roles: Mapping[tuple[str, str], Role] | None) -> s.User:
    """``User`` of the session."""
    local = info.email.split("@")[0]
    granted = (
        [
            s.UserRole(
                id=str(uuid.uuid5(uuid.NAMESPACE_URL, f"{info.id}/{g}/{p}")),
                name=str(r.value),
                user_id=str(info.id),
                entity_id=p,
                entity_type="project",
            )
            for (g, p), r in roles.items()
        ]
        if roles is not None
        else [
            s.UserRole(
                id="admin", name="admin", user_id=str(info.id), entity_id="*", entity_type="installation"
            )
        ]
    )
    return s.User(
        id=str(info.id),
        firstname=local,
        lastname="",
        email=info.email,
        hospital="",
        country="",
        language="en",
        region="",
        type=info.role.value,
        note="",
        refresh_token="",
        token_expire_time="",
        roles=granted,
        blocked=False,
        verified=True,
        password_setup_required=False,
        exp=0,
        creation_timestamp=timestamp(info.created_at),
        update_timestamp=timestamp(info.created_at),
    )
