"""Routes of the icometrix-compatible API, mounted at the server root. They read dicomflow, call the
mapping in ``_model.py``, and never decide anything themselves."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Depends, File, Query, Request, Response, UploadFile
from fastapi.responses import FileResponse
from pydantic import BaseModel
from pydicom import dcmread
from sqlalchemy import Engine, func, select

from dicomflow.api._access import READ, UPLOAD, Access, no_such_project
from dicomflow.api._deps import Identities, IndexEngine, get_identities
from dicomflow.api.icometrix import _model as m
from dicomflow.errors import NotFound
from dicomflow.index import Acquisition, Instance, Project, Session, Study, Subject, reading
from dicomflow.index._accounts import (
    Refusal,
    TokenKind,
    check_token,
    create_token,
    prune_sessions,
    revoke_token,
)
from dicomflow.index._logins import LoginPolicy, login
from dicomflow.index.results import result_row, results_of_study
from dicomflow.index.studies import StudyInfo, latest_study, list_studies
from dicomflow.jobs import Flow
from dicomflow.uploads import Uploads

COOKIE = "dicomflow_session"
_KEEP_ENDED_SESSIONS = timedelta(days=1)  # ended sessions stay listed (tokens list --all) for a day
router = APIRouter()
PageIndex = Annotated[int | None, Query(alias="pageIndex", ge=0)]
PageSize = Annotated[int | None, Query(alias="pageSize", ge=1, le=10_000)]


# -- sessions -----------------------------------------------------------------------------------------------


class TokenLogin(BaseModel):
    key: str


class PasswordLogin(BaseModel):
    email: str
    password: str


def _open_session(engine: Engine, email: str, response: Response, idle_timeout: float) -> dict[str, Any]:
    prune_sessions(engine, older_than=timedelta(seconds=idle_timeout) + _KEEP_ENDED_SESSIONS)
    token = create_token(engine, email, kind=TokenKind.SESSION)  # ends when idle, revoked at logout
    response.set_cookie(
        COOKIE, token, httponly=True, path="/", samesite="lax"
    )  # no Secure/Domain: plain HTTP
    return {"status": "ok", "email": email}


@router.post("/authentication-service/api/v1/token-sessions")
def token_session(
    body: TokenLogin, request: Request, response: Response, engine: IndexEngine
) -> dict[str, Any]:
    """Exchange an API token for a cookie session (401 with the reason for a refused token)."""
    idle = request.app.state.settings.http.session_idle_timeout
    user = check_token(engine, body.key, session_idle_timeout=idle)
    if isinstance(user, Refusal):
        raise user.error()
    return _open_session(engine, user.email, response, idle)


@router.post("/authentication-service/api/v1/sessions")
def password_session(
    body: PasswordLogin, request: Request, response: Response, engine: IndexEngine
) -> dict[str, Any]:
    """Log in with email and password; the session lives in a cookie.

    Failed logins are throttled per account and per client address (429 with ``Retry-After``).
    """
    http = request.app.state.settings.http
    policy = LoginPolicy(
        max_failures=http.login_max_failures,
        max_failures_per_address=http.login_max_failures_per_address,
        lockout=http.login_lockout,
        lockout_max=http.login_lockout_max,
        failure_window=http.login_failure_window,
    )
    address = request.client.host if request.client else "unknown"
    user = login(engine, body.email, body.password, address=address, policy=policy)
    return _open_session(engine, user.email, response, http.session_idle_timeout)


async def caller(
    request: Request, engine: IndexEngine, identities: Annotated[Identities, Depends(get_identities)]
) -> Access:
    """The user of the session cookie (401 without one, or with the reason the session is refused)."""
    token = request.cookies.get(COOKIE)
    user = identities.check(token) if token else Refusal.UNKNOWN
    if isinstance(user, Refusal):
        hint = "log in first: POST /authentication-service/api/v1/token-sessions"
        raise user.error(hint if user is Refusal.UNKNOWN else None)
    return Access.of(user, engine)


Caller = Annotated[Access, Depends(caller)]


@router.delete("/authentication-service/api/v1/sessions")
def logout(request: Request, response: Response, engine: IndexEngine, who: Caller) -> dict[str, Any]:
    """End the session: its token is revoked and the cookie cleared."""
    revoke_token(engine, request.cookies[COOKIE])
    request.app.state.identities.forget(request.cookies[COOKIE])
    response.delete_cookie(COOKIE, path="/")
    return {"status": "ok"}


@router.get("/authentication-service/api/v1/loginstatus")
def login_status(who: Caller) -> dict[str, Any]:
    """The session's user."""
    return m.user(who.user, who.roles)


# -- lookups ------------------------------------------------------------------------------------------------


def _project(engine: Engine, who: Access, project_id: str, allowed: frozenset[Any] = READ) -> Any:
    number, _ = m.read_id(m.Kind.PROJECT, project_id)
    with reading(engine) as conn:
        row = conn.execute(select(Project).where(Project.id == number)).first()
    if row is None or not who.sees(row.group_id, row.label):
        raise no_such_project()
    who.check(row.group_id, row.label, allowed, "do this")
    return row


def _subject(engine: Engine, project_row: Any, patient_id: str) -> Any:
    number, _ = m.read_id(m.Kind.PATIENT, patient_id)
    with reading(engine) as conn:
        row = conn.execute(
            select(Subject).where(Subject.id == number, Subject.project_id == project_row.id)
        ).first()
    if row is None:
        raise NotFound(f"no patient {patient_id!r}")
    return row


def _session(engine: Engine, subject_row: Any, study_id: str) -> Any:
    number, _ = m.read_id(m.Kind.STUDY, study_id)
    with reading(engine) as conn:
        row = conn.execute(
            select(Session).where(Session.id == number, Session.subject_id == subject_row.id)
        ).first()
    if row is None:
        raise NotFound(f"no study {study_id!r}")
    return row


def _row_ids(project: Any, subject: Any, session: Any) -> dict[str, int]:
    return {"project": project.id, "subject": subject.id, "session": session.id}


def _study_entity(engine: Engine, session_row: Any, project_id: int) -> dict[str, Any]:
    with reading(engine) as conn:
        modalities = list(
            conn.scalars(
                select(Acquisition.modality).where(Acquisition.session_id == session_row.id).distinct()
            )
        )
        latest = latest_study(conn, session_row.id)
    report_types = list(latest.report_types) if latest is not None else []
    return m.study(session_row, project_id, modalities, report_types)


def _flow(request: Request) -> Flow:
    flow: Flow = request.app.state.flow
    return flow


def _uploads(request: Request) -> Uploads:
    uploads: Uploads = request.app.state.uploads
    return uploads


# -- storage service ----------------------------------------------------------------------------------------


@router.get("/storage-service/api/v2/projects")
def list_projects(
    engine: IndexEngine, who: Caller, page_index: PageIndex = None, page_size: PageSize = None
) -> dict[str, Any]:
    """The caller's projects, paginated."""
    with reading(engine) as conn:
        rows = conn.execute(select(Project).order_by(Project.id)).all()
    return m.page([m.project(r) for r in rows if who.sees(r.group_id, r.label)], page_index, page_size)


@router.get("/storage-service/api/v1/projects/{project_id}")
def get_project(project_id: str, engine: IndexEngine, who: Caller) -> dict[str, Any]:
    """One project (404 if unknown or not the caller's)."""
    return m.project(_project(engine, who, project_id))


@router.get("/storage-service/api/v1/projects/{project_id}/patients")
def list_patients(
    project_id: str,
    engine: IndexEngine,
    who: Caller,
    page_index: PageIndex = None,
    page_size: PageSize = None,
) -> dict[str, Any]:
    """Subjects of a project."""
    project = _project(engine, who, project_id)
    with reading(engine) as conn:
        rows = conn.execute(
            select(Subject).where(Subject.project_id == project.id).order_by(Subject.id)
        ).all()
    return m.page([m.patient(r, project.id) for r in rows], page_index, page_size)


@router.get("/storage-service/api/v1/projects/{project_id}/patients/{patient_id}")
def get_patient(project_id: str, patient_id: str, engine: IndexEngine, who: Caller) -> dict[str, Any]:
    """One subject."""
    project = _project(engine, who, project_id)
    return m.patient(_subject(engine, project, patient_id), project.id)


@router.get("/storage-service/api/v1/projects/{project_id}/patients/{patient_id}/patients")
def list_patient_studies(
    project_id: str,
    patient_id: str,
    engine: IndexEngine,
    who: Caller,
    page_index: PageIndex = None,
    page_size: PageSize = None,
) -> dict[str, Any]:
    """A subject's studies (the client asks ``/patients`` for them)."""
    project = _project(engine, who, project_id)
    subject = _subject(engine, project, patient_id)
    with reading(engine) as conn:
        rows = conn.execute(
            select(Session).where(Session.subject_id == subject.id).order_by(Session.id)
        ).all()
    return m.page([_study_entity(engine, r, project.id) for r in rows], page_index, page_size)


StudyPath = "/storage-service/api/v1/projects/{project_id}/patients/{patient_id}/studies/{study_id}"


def _study_rows(
    engine: Engine, who: Access, project_id: str, patient_id: str, study_id: str
) -> tuple[Any, Any, Any]:
    project = _project(engine, who, project_id)
    subject = _subject(engine, project, patient_id)
    return project, subject, _session(engine, subject, study_id)


@router.get(StudyPath)
def get_study(
    project_id: str, patient_id: str, study_id: str, engine: IndexEngine, who: Caller
) -> dict[str, Any]:
    """One study (session)."""
    project, _, session = _study_rows(engine, who, project_id, patient_id, study_id)
    return _study_entity(engine, session, project.id)


@router.get(StudyPath + "/series")
def list_series(
    request: Request,
    project_id: str,
    patient_id: str,
    study_id: str,
    engine: IndexEngine,
    who: Caller,
    page_index: PageIndex = None,
    page_size: PageSize = None,
) -> dict[str, Any]:
    """Series of a study with every field the client requires (tags read from one instance each)."""
    project, subject, session = _study_rows(engine, who, project_id, patient_id, study_id)
    ids = _row_ids(project, subject, session)
    store = request.app.state.store
    items = []
    with reading(engine) as conn:
        rows = conn.execute(
            select(Acquisition).where(Acquisition.session_id == session.id).order_by(Acquisition.id)
        ).all()
        for row in rows:
            count = conn.scalar(select(func.count()).where(Instance.acquisition_id == row.id)) or 0
            key = conn.scalar(select(Instance.blob_key).where(Instance.acquisition_id == row.id).limit(1))
            header = dcmread(store.path_of(key), stop_before_pixels=True) if key else None
            items.append(m.series(row, ids, header, int(count)))
    return m.page(items, page_index, page_size)


def _jobs_and_results(engine: Engine, session_id: int) -> list[tuple[Any, list[Any], list[Any]]]:
    with reading(engine) as conn:
        versions = [
            s
            for s in list_studies(conn, latest_only=False)
            if s.id in set(conn.scalars(select(Study.id).where(Study.session_id == session_id)))
        ]
        return [(v, v.jobs, results_of_study(conn, v.id)) for v in versions]


@router.get(StudyPath + "/customer-results")
def list_customer_results(
    project_id: str,
    patient_id: str,
    study_id: str,
    engine: IndexEngine,
    who: Caller,
    page_index: PageIndex = None,
    page_size: PageSize = None,
) -> dict[str, Any]:
    """One customer result per succeeded job of the study."""
    project, subject, session = _study_rows(engine, who, project_id, patient_id, study_id)
    ids = _row_ids(project, subject, session)
    uri = m.study_uri(project.id, subject.id, session.id)
    items = [
        m.customer_result(j, ids, uri)
        for v, jobs, _ in _jobs_and_results(engine, session.id)
        for j in jobs
        if j.state == "succeeded"
    ]
    return m.page(items, page_index, page_size)


@router.get(
    "/storage-service/api/v2/projects/{project_id}/patients/{patient_id}/studies/{study_id}/pipeline-results"
)
def list_pipeline_results(
    request: Request,
    project_id: str,
    patient_id: str,
    study_id: str,
    engine: IndexEngine,
    who: Caller,
    page_index: PageIndex = None,
    page_size: PageSize = None,
) -> dict[str, Any]:
    """One pipeline result per succeeded job, with the measurements of its results.json."""
    project, subject, session = _study_rows(engine, who, project_id, patient_id, study_id)
    ids = _row_ids(project, subject, session)
    uri = m.study_uri(project.id, subject.id, session.id)
    data_dir = request.app.state.settings.data_dir
    items = []
    for _, jobs, results in _jobs_and_results(engine, session.id):
        for job in (j for j in jobs if j.state == "succeeded"):
            numbers: dict[str, Any] = next(
                (
                    json.loads((data_dir / r.path).read_text())["measurements"]
                    for r in results
                    if r.job_id == job.id and r.kind == "results"
                ),
                {},
            )
            items.append(m.pipeline_result(job, ids, uri, numbers))
    return m.page(items, page_index, page_size)


# -- uploads service ----------------------------------------------------------------------------------------


class StartUpload(BaseModel):
    icobrain_report_type: str
    force_reprocessing: bool = False


UploadBase = "/uploads-service/api/v1/projects/{project_id}"


def _upload(
    request: Request, engine: Engine, who: Access, project_id: str, upload_id: str
) -> tuple[Any, Any]:
    project = _project(engine, who, project_id)
    uploads = _uploads(request)
    info = uploads.get(upload_id)
    if uploads.project_id(upload_id) != project.id:
        raise NotFound(f"no upload {upload_id!r}")
    return project, info


@router.get(UploadBase + "/dicom-uploads")
def list_uploads(
    request: Request,
    project_id: str,
    engine: IndexEngine,
    who: Caller,
    page_index: PageIndex = None,
    page_size: PageSize = None,
) -> dict[str, Any]:
    """Uploads of a project."""
    project = _project(engine, who, project_id)
    found = _uploads(request).all([project.id])
    return m.page([m.upload(u, project.id) for u in found], page_index, page_size)


@router.post(UploadBase + "/multi-upload")
def start_upload(
    request: Request, project_id: str, body: StartUpload, engine: IndexEngine, who: Caller
) -> dict[str, Any]:
    """Open an upload with the requested report type."""
    project = _project(engine, who, project_id, UPLOAD)
    info = _uploads(request).start(
        project.label,
        body.icobrain_report_type,
        force_reprocessing=body.force_reprocessing,
        user=who.user.email,
    )
    return m.upload(info, project.id)


@router.put(UploadBase + "/multi-upload/{upload_id}")
def put_file(
    request: Request,
    project_id: str,
    upload_id: str,
    engine: IndexEngine,
    who: Caller,
    file: Annotated[list[UploadFile], File()],
) -> dict[str, Any]:
    """One (or more) files; the client's path is only a label."""
    project, _ = _upload(request, engine, who, project_id, upload_id)
    who.check(project.group_id, project.label, UPLOAD, "upload")
    stored = _uploads(request).receive_many(
        upload_id, [(part.filename or "file", part.file) for part in file]
    )
    return {"received": [name for name, _ in stored]}


@router.post(UploadBase + "/multi-upload/{upload_id}")
def complete_upload(
    request: Request, project_id: str, upload_id: str, engine: IndexEngine, who: Caller
) -> dict[str, Any]:
    """Complete the upload: the import starts in the background."""
    project, _ = _upload(request, engine, who, project_id, upload_id)
    who.check(project.group_id, project.label, UPLOAD, "upload")
    return m.upload(_uploads(request).complete(upload_id), project.id)


@router.get(UploadBase + "/multi-upload/{upload_id}")
@router.get(UploadBase + "/dicom-uploads/{upload_id}")
def get_upload(
    request: Request, project_id: str, upload_id: str, engine: IndexEngine, who: Caller
) -> dict[str, Any]:
    """The upload, with its status (``import_success`` once every study is handed to processing)."""
    project, info = _upload(request, engine, who, project_id, upload_id)
    return m.upload(info, project.id)


@router.get(UploadBase + "/dicom-uploads/{upload_id}/files")
def get_upload_files(
    request: Request, project_id: str, upload_id: str, engine: IndexEngine, who: Caller
) -> dict[str, Any]:
    """Files received and not yet imported."""
    _upload(request, engine, who, project_id, upload_id)
    return {"files": _uploads(request).files(upload_id)}


@router.get(UploadBase + "/dicom-uploads/{upload_id}/study-uploads")
def get_study_uploads(
    request: Request,
    project_id: str,
    upload_id: str,
    engine: IndexEngine,
    who: Caller,
    page_index: PageIndex = None,
    page_size: PageSize = None,
) -> dict[str, Any]:
    """The studies the upload brought, by the ids the client fetches them with."""
    project, _ = _upload(request, engine, who, project_id, upload_id)
    items = []
    for info in _uploads(request).studies(upload_id):
        ids = _ids(engine, info)
        items.append(m.study_upload(info, ids, upload_id))
    return m.page(items, page_index, page_size)


def _ids(engine: Engine, info: StudyInfo) -> dict[str, int]:
    with reading(engine) as conn:
        row = conn.execute(
            select(Session.id, Session.subject_id, Session.project_id)
            .join(Study, Study.session_id == Session.id)
            .where(Study.id == info.id)
        ).one()
    return {"project": row.project_id, "subject": row.subject_id, "session": row.id}


# -- customer reports ---------------------------------------------------------------------------------------


def _reports_of(request: Request, engine: Engine, versions: list[StudyInfo]) -> list[dict[str, Any]]:
    registry = _flow(request).registry
    out = []
    for info in versions:
        ids = _ids(engine, info)
        with reading(engine) as conn:
            results = results_of_study(conn, info.id)
            patient = conn.scalar(select(Subject.label).where(Subject.id == ids["subject"])) or ""
        for index, requested in enumerate(info.report_types):
            name = registry.get(requested).name if requested in registry else requested
            jobs = [j for j in info.jobs if j.report_type == name]
            mine = [r for r in results if r.job_id in {j.id for j in jobs}]
            out.append(m.report(info, ids, index, requested, jobs, mine, patient))
    return out


def _versions(engine: Engine, who: Access, **filters: Any) -> list[StudyInfo]:
    with reading(engine) as conn:
        return who.visible(list_studies(conn, latest_only=False, **filters))


@router.get("/customer-reports-service/api/v2/projects/{project_id}/customer-reports")
def list_reports(
    request: Request,
    project_id: str,
    engine: IndexEngine,
    who: Caller,
    study_instance_uid: str | None = None,
    page_index: PageIndex = None,
    page_size: PageSize = None,
) -> dict[str, Any]:
    """Reports of a project, optionally of one StudyInstanceUID."""
    project = _project(engine, who, project_id)
    versions = [
        v
        for v in _versions(engine, who, study_instance_uid=study_instance_uid)
        if v.project == project.label and v.group == project.group_id
    ]
    return m.page(_reports_of(request, engine, versions), page_index, page_size)


@router.get(
    "/customer-reports-service/api/v2/projects/{project_id}/patients/{patient_id}/studies/{study_id}/customer-reports"
)
def list_study_reports(
    request: Request,
    project_id: str,
    patient_id: str,
    study_id: str,
    engine: IndexEngine,
    who: Caller,
    page_index: PageIndex = None,
    page_size: PageSize = None,
) -> dict[str, Any]:
    """Reports of one study: every requested report type of its newest version."""
    project, _, session = _study_rows(engine, who, project_id, patient_id, study_id)
    with reading(engine) as conn:
        latest = latest_study(conn, session.id)
    versions = [
        v
        for v in _versions(engine, who, study_instance_uid=session.study_instance_uid)
        if latest is not None and v.id == latest.id
    ]
    return m.page(_reports_of(request, engine, versions), page_index, page_size)


def _one_report(
    request: Request, engine: Engine, who: Access, project_id: str, report_id: str
) -> dict[str, Any]:
    project = _project(engine, who, project_id)
    version_id, index = m.read_id(m.Kind.REPORT, report_id)
    versions = [v for v in _versions(engine, who) if v.id == version_id and v.project == project.label]
    reports = [r for r in _reports_of(request, engine, versions) if r["id"] == report_id]
    if not reports:
        raise NotFound(f"no customer report {report_id!r}")
    return reports[0]


@router.get("/customer-reports-service/api/v2/projects/{project_id}/customer-reports/{report_id}")
def get_report(
    request: Request, project_id: str, report_id: str, engine: IndexEngine, who: Caller
) -> dict[str, Any]:
    """One report; ``Finished`` is its only end, successful or not."""
    return _one_report(request, engine, who, project_id, report_id)


@router.get(
    "/customer-reports-service/api/v2/projects/{project_id}/customer-reports/{report_id}/files/{result_id}"
)
def get_report_file(
    request: Request, project_id: str, report_id: str, result_id: int, engine: IndexEngine, who: Caller
) -> FileResponse:
    """A report file's bytes, uncompressed (the client saves what the wire carries)."""
    report = _one_report(request, engine, who, project_id, report_id)
    if not any(f["uri"].endswith(f"/files/{result_id}") for f in report["report_files"]):
        raise NotFound(f"no file {result_id} in report {report_id!r}")
    with reading(engine) as conn:
        result = result_row(conn, result_id)
    path = request.app.state.settings.data_dir / result.path
    return FileResponse(path, media_type=result.media_type, filename=m._file_name(result.name))
