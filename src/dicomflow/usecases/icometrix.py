"""What the icometrix-compatible API reads and does, behind the caller's project walls.

Contract: ``shared/specs/icometrix_api.md``. Ids are lowercase UUID strings whose first group names the kind
of entity and whose last group is our integer id (``00000003-0000-4000-8000-00000000002a`` is study 42):
reversible, stable, path-safe, and never confused across kinds. Every use case takes the caller's
:class:`~dicomflow.usecases.access.Access`; a project the caller does not belong to is not found. A
series' summary (instance count, header attributes) comes from the index, kept when it was placed; a series
placed before that was kept is read from its first file once, and kept.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from enum import IntEnum
from typing import IO, TYPE_CHECKING, Any

from dicomflow.dicom import read_series_attributes
from dicomflow.errors import NotFound
from dicomflow.flow import Stage
from dicomflow.index import icometrix as repo
from dicomflow.index import reading, writing
from dicomflow.index.accounts import Role
from dicomflow.index.icometrix import HierarchyIds, ProjectRecord, SeriesRecord, SessionRecord, SubjectRecord
from dicomflow.index.jobs import JobInfo
from dicomflow.index.results import ResultInfo, result_row, results_of_study
from dicomflow.index.studies import StudyInfo, latest_study, list_studies
from dicomflow.schemas import Upload as UploadInfo
from dicomflow.usecases.access import READ, UPLOAD, Access, no_such_project
from dicomflow.usecases.results import open_result, read_result

if TYPE_CHECKING:
    from dicomflow.runtime import Application

__all__ = [
    "HierarchyIds",
    "JobInfo",
    "Kind",
    "PipelineResult",
    "ProjectRecord",
    "Report",
    "ReportFile",
    "ResultInfo",
    "SeriesRecord",
    "SessionRecord",
    "StudyInfo",
    "StudyView",
    "SubjectRecord",
    "UploadInfo",
    "complete_upload",
    "customer_results",
    "make_id",
    "patient",
    "patients",
    "pipeline_results",
    "project",
    "projects",
    "put_files",
    "read_id",
    "report",
    "report_file",
    "report_status",
    "reports",
    "series",
    "start_upload",
    "studies",
    "study",
    "study_reports",
    "study_uploads",
    "upload",
    "upload_files",
    "uploads",
]


class Kind(IntEnum):
    """The entity an id names (first group of the UUID)."""

    PROJECT = 1
    PATIENT = 2
    STUDY = 3
    REPORT = 4
    SERIES = 5
    RESULT = 6


def make_id(kind: Kind, number: int, sub: int = 0) -> str:
    """The UUID of entity ``number`` of ``kind`` (``sub`` distinguishes reports of one study version)."""
    return f"{int(kind):08x}-{sub:04x}-4000-8000-{number:012x}"


def read_id(kind: Kind, text: str) -> tuple[int, int]:
    """``(number, sub)`` of an id made by :func:`make_id`.

    Raises
    ------
    NotFound
        For anything else (the id is then unknown, whatever it is).
    """
    match = re.fullmatch(r"([0-9a-f]{8})-([0-9a-f]{4})-4000-8000-([0-9a-f]{12})", text)
    if match is None or int(match.group(1), 16) != kind:
        raise NotFound(f"no {kind.name.lower()} {text!r}")
    return int(match.group(3), 16), int(match.group(2), 16)


@dataclass(frozen=True, slots=True)
class StudyView:
    """A session as the API shows a study: its modalities and the report types of its newest version."""

    session: SessionRecord
    project_id: int
    modalities: list[str]
    report_types: list[str]


@dataclass(frozen=True, slots=True)
class PipelineResult:
    """A succeeded job with the measurements of its ``results.json`` (``{}`` without one)."""

    job: JobInfo
    measurements: Any


@dataclass(frozen=True, slots=True)
class Report:
    """One requested report type on one study version, with its jobs and their result files."""

    info: StudyInfo
    ids: HierarchyIds
    index: int
    requested: str
    jobs: list[JobInfo]
    results: list[ResultInfo]
    dicom_patient_id: str


@dataclass(frozen=True, slots=True)
class ReportFile:
    """A report file to send: its bytes open for reading (the receiver closes them), size, media type and
    name."""

    stream: IO[bytes]
    size: int
    media_type: str
    name: str


def report_status(info: StudyInfo, jobs: Sequence[JobInfo]) -> tuple[str, str, str]:
    """(``status``, ``report_status``, remarks) of a report on a study version.

    A report always ends ``Finished`` (the client waits for nothing else); a failure or a QC rejection
    travels in ``report_status`` and the remarks.
    """
    stage = Stage(info.stage)
    if stage in (Stage.UPLOADING, Stage.IMPORTING):
        return "Imported", "Imported", ""
    if stage is Stage.PROCESSING:
        running = any(job.state == "running" for job in jobs)
        return ("Processing", "Processing", "") if running else ("Scheduled", "Scheduled", "")
    if stage is Stage.QUALITY_CONTROL:
        return "QualityControl", "QualityControl", ""
    if stage is Stage.FINISHED:
        return "Finished", "Finished", ""
    rejected = info.history[-1].actor != "dicomflow" if info.history else False
    return "Finished", "Rejected" if rejected else "Failed", info.reason


# -- storage service -----------------------------------------------------------------------------------------


def projects(app: Application, caller: Access) -> list[ProjectRecord]:
    """The caller's projects, by id."""
    with reading(app.engine) as conn:
        found = repo.projects(conn)
    return [p for p in found if caller.sees(p.group_id, p.label)]


def project(
    app: Application, caller: Access, project_id: str, allowed: frozenset[Role] = READ
) -> ProjectRecord:
    """The project of ``project_id`` once the caller may act there as ``allowed``.

    Raises
    ------
    NotFound
        Unknown, or not the caller's.
    PermissionDenied
        The caller's role there is not in ``allowed``.
    """
    number, _ = read_id(Kind.PROJECT, project_id)
    with reading(app.engine) as conn:
        found = repo.project(conn, number)
    if found is None or not caller.sees(found.group_id, found.label):
        raise no_such_project()
    caller.check(found.group_id, found.label, allowed, "do this")
    return found


def patients(app: Application, caller: Access, project_id: str) -> tuple[ProjectRecord, list[SubjectRecord]]:
    """A project and its subjects."""
    found = project(app, caller, project_id)
    with reading(app.engine) as conn:
        return found, repo.subjects(conn, found.id)


def patient(
    app: Application, caller: Access, project_id: str, patient_id: str
) -> tuple[ProjectRecord, SubjectRecord]:
    """A project and one of its subjects."""
    found = project(app, caller, project_id)
    return found, _subject(app, found, patient_id)


def studies(
    app: Application, caller: Access, project_id: str, patient_id: str
) -> tuple[ProjectRecord, list[StudyView]]:
    """A subject's sessions as studies."""
    found, subject = patient(app, caller, project_id, patient_id)
    with reading(app.engine) as conn:
        sessions = repo.sessions(conn, subject.id)
    return found, [_study_view(app, session, found.id) for session in sessions]


def study(app: Application, caller: Access, project_id: str, patient_id: str, study_id: str) -> StudyView:
    """One session as a study."""
    found, _, session = _study_rows(app, caller, project_id, patient_id, study_id)
    return _study_view(app, session, found.id)


def series(
    app: Application, caller: Access, project_id: str, patient_id: str, study_id: str
) -> tuple[HierarchyIds, list[SeriesRecord]]:
    """A study's series, each with its summary (instance count and header attributes)."""
    found, subject, session = _study_rows(app, caller, project_id, patient_id, study_id)
    with reading(app.engine) as conn:
        listed = repo.series_of_session(conn, session.id)
    described = [item if item.header is not None else _describe(app, item) for item in listed]
    return HierarchyIds(found.id, subject.id, session.id), described


def customer_results(
    app: Application, caller: Access, project_id: str, patient_id: str, study_id: str
) -> tuple[HierarchyIds, list[JobInfo]]:
    """The succeeded jobs of a study's versions."""
    ids, versions = _versions_of_study(app, caller, project_id, patient_id, study_id)
    return ids, [job for info, _ in versions for job in info.jobs if job.state == "succeeded"]


def pipeline_results(
    app: Application, caller: Access, project_id: str, patient_id: str, study_id: str
) -> tuple[HierarchyIds, list[PipelineResult]]:
    """The succeeded jobs of a study's versions, with the measurements of their ``results.json``."""
    ids, versions = _versions_of_study(app, caller, project_id, patient_id, study_id)
    found = []
    for info, results in versions:
        for job in (j for j in info.jobs if j.state == "succeeded"):
            numbers: Any = next(
                (
                    json.loads(read_result(app, r.path))["measurements"]
                    for r in results
                    if r.job_id == job.id and r.kind == "results"
                ),
                {},
            )
            found.append(PipelineResult(job, numbers))
    return ids, found


# -- uploads service -----------------------------------------------------------------------------------------


def upload(
    app: Application, caller: Access, project_id: str, upload_id: str
) -> tuple[ProjectRecord, UploadInfo]:
    """A project and one of its uploads."""
    found = project(app, caller, project_id)
    info = app.uploads.get(upload_id)
    if app.uploads.project_id(upload_id) != found.id:
        raise NotFound(f"no upload {upload_id!r}")
    return found, info


def uploads(app: Application, caller: Access, project_id: str) -> tuple[ProjectRecord, list[UploadInfo]]:
    """A project and its uploads."""
    found = project(app, caller, project_id)
    return found, app.uploads.all([found.id])


def start_upload(
    app: Application, caller: Access, project_id: str, report_type: str, *, force_reprocessing: bool
) -> tuple[ProjectRecord, UploadInfo]:
    """Open an upload into a project (the caller must be allowed to upload there)."""
    found = project(app, caller, project_id, UPLOAD)
    started = app.uploads.start(
        found.label, report_type, force_reprocessing=force_reprocessing, user=caller.user.email
    )
    return found, started


def put_files(
    app: Application, caller: Access, project_id: str, upload_id: str, files: Sequence[tuple[str, IO[bytes]]]
) -> list[str]:
    """Receive files into an upload; returns the names they were kept under."""
    found, _ = upload(app, caller, project_id, upload_id)
    caller.check(found.group_id, found.label, UPLOAD, "upload")
    return [name for name, _ in app.uploads.receive_many(upload_id, files)]


def complete_upload(
    app: Application, caller: Access, project_id: str, upload_id: str
) -> tuple[ProjectRecord, UploadInfo]:
    """Complete an upload: its import starts in the background."""
    found, _ = upload(app, caller, project_id, upload_id)
    caller.check(found.group_id, found.label, UPLOAD, "upload")
    return found, app.uploads.complete(upload_id)


def upload_files(app: Application, caller: Access, project_id: str, upload_id: str) -> list[str]:
    """Names of the files an upload received and has not imported yet."""
    upload(app, caller, project_id, upload_id)
    return app.uploads.files(upload_id)


def study_uploads(
    app: Application, caller: Access, project_id: str, upload_id: str
) -> list[tuple[StudyInfo, HierarchyIds]]:
    """The study versions an upload brought, each with the ids the client fetches it by."""
    upload(app, caller, project_id, upload_id)
    found = app.uploads.studies(upload_id)
    with reading(app.engine) as conn:
        return [(info, repo.ids_of_version(conn, info.id)) for info in found]


# -- customer reports ----------------------------------------------------------------------------------------


def reports(
    app: Application, caller: Access, project_id: str, study_instance_uid: str | None
) -> list[Report]:
    """Reports of a project, optionally of one StudyInstanceUID."""
    found = project(app, caller, project_id)
    versions = [
        v
        for v in _visible_versions(app, caller, study_instance_uid=study_instance_uid)
        if v.project == found.label and v.group == found.group_id
    ]
    return _reports_of(app, versions)


def study_reports(
    app: Application, caller: Access, project_id: str, patient_id: str, study_id: str
) -> list[Report]:
    """Reports of one study: every requested report type of its newest version."""
    _, _, session = _study_rows(app, caller, project_id, patient_id, study_id)
    with reading(app.engine) as conn:
        latest = latest_study(conn, session.id)
    versions = [
        v
        for v in _visible_versions(app, caller, study_instance_uid=session.study_instance_uid)
        if latest is not None and v.id == latest.id
    ]
    return _reports_of(app, versions)


def report(app: Application, caller: Access, project_id: str, report_id: str) -> Report:
    """One report.

    Raises
    ------
    NotFound
        No such report in the project (or the project is not the caller's).
    """
    found = project(app, caller, project_id)
    version_id, index = read_id(Kind.REPORT, report_id)
    versions = [v for v in _visible_versions(app, caller) if v.id == version_id and v.project == found.label]
    matching = [r for r in _reports_of(app, versions) if r.info.id == version_id and r.index == index]
    if not matching:
        raise NotFound(f"no customer report {report_id!r}")
    return matching[0]


def report_file(
    app: Application, caller: Access, project_id: str, report_id: str, result_id: int
) -> ReportFile:
    """A file of a finished report.

    Raises
    ------
    NotFound
        No such report, or the file is not one of its files (yet).
    """
    found = report(app, caller, project_id, report_id)
    status, detail, _ = report_status(found.info, found.jobs)
    files = found.results if status == "Finished" and detail == "Finished" else []
    if not any(r.id == result_id for r in files):
        raise NotFound(f"no file {result_id} in report {report_id!r}")
    with reading(app.engine) as conn:
        result = result_row(conn, result_id)
    stream, size = open_result(app, result.path)
    return ReportFile(stream, size, result.media_type, result.name)


# -- helpers -------------------------------------------------------------------------------------------------


def _subject(app: Application, found: ProjectRecord, patient_id: str) -> SubjectRecord:
    number, _ = read_id(Kind.PATIENT, patient_id)
    with reading(app.engine) as conn:
        subject = repo.subject(conn, found.id, number)
    if subject is None:
        raise NotFound(f"no patient {patient_id!r}")
    return subject


def _study_rows(
    app: Application, caller: Access, project_id: str, patient_id: str, study_id: str
) -> tuple[ProjectRecord, SubjectRecord, SessionRecord]:
    found, subject = patient(app, caller, project_id, patient_id)
    number, _ = read_id(Kind.STUDY, study_id)
    with reading(app.engine) as conn:
        session = repo.session(conn, subject.id, number)
    if session is None:
        raise NotFound(f"no study {study_id!r}")
    return found, subject, session


def _study_view(app: Application, session: SessionRecord, project_id: int) -> StudyView:
    with reading(app.engine) as conn:
        modalities = repo.modalities(conn, session.id)
        latest = latest_study(conn, session.id)
    report_types = list(latest.report_types) if latest is not None else []
    return StudyView(session, project_id, modalities, report_types)


def _describe(app: Application, item: SeriesRecord) -> SeriesRecord:
    """A series placed before its header was kept: read from its first file, once, and kept."""
    with reading(app.engine) as conn:
        key = repo.first_blob_key(conn, item.id)
    if key is None:
        return item  # no instance yet: nothing to describe
    header = read_series_attributes(app.store.get(key))
    with writing(app.engine) as conn:
        repo.record_series_header(conn, item.id, header)
    return SeriesRecord(
        item.id,
        item.modality,
        item.label,
        item.series_number,
        item.series_description,
        item.series_instance_uid,
        item.created_at,
        item.instance_count,
        header,
    )


def _versions_of_study(
    app: Application, caller: Access, project_id: str, patient_id: str, study_id: str
) -> tuple[HierarchyIds, list[tuple[StudyInfo, list[ResultInfo]]]]:
    found, subject, session = _study_rows(app, caller, project_id, patient_id, study_id)
    with reading(app.engine) as conn:
        mine = repo.version_ids_of_session(conn, session.id)
        versions = [s for s in list_studies(conn, latest_only=False) if s.id in mine]
        found_versions = [(v, results_of_study(conn, v.id)) for v in versions]
    return HierarchyIds(found.id, subject.id, session.id), found_versions


def _visible_versions(app: Application, caller: Access, **filters: Any) -> list[StudyInfo]:
    with reading(app.engine) as conn:
        return caller.visible(list_studies(conn, latest_only=False, **filters))


def _reports_of(app: Application, versions: list[StudyInfo]) -> list[Report]:
    registry = app.flow.registry
    out = []
    for info in versions:
        with reading(app.engine) as conn:
            ids = repo.ids_of_version(conn, info.id)
            results = results_of_study(conn, info.id)
            dicom_patient_id = repo.subject_label(conn, ids.subject)
        for index, requested in enumerate(info.report_types):
            name = registry.get(requested).name if requested in registry else requested
            jobs = [j for j in info.jobs if j.report_type == name]
            mine = [r for r in results if r.job_id in {j.id for j in jobs}]
            out.append(Report(info, ids, index, requested, jobs, mine, dicom_patient_id))
    return out
