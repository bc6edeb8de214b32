"""Routes of the icometrix-compatible API, mounted at the server root. Each calls one use case of
:mod:`dicomflow.usecases.icometrix` (or of accounts, for the logins) and maps its answer with ``_model.py``;
none decides anything itself."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, File, Query, Request, Response, UploadFile
from fastapi.responses import StreamingResponse
from pydantic import BaseModel

from dicomflow.api._access import Access, access_of
from dicomflow.api._application import App
from dicomflow.api._deps import Identities, get_identities
from dicomflow.api._files import file_response
from dicomflow.api.icometrix import _model as m
from dicomflow.api.icometrix import _schemas as s
from dicomflow.usecases import icometrix as uc
from dicomflow.usecases.accounts import Refusal, end_session, session_for_password, session_for_token

COOKIE = "dicomflow_session"
router = APIRouter()
PageIndex = Annotated[int | None, Query(alias="pageIndex", ge=0)]
PageSize = Annotated[int | None, Query(alias="pageSize", ge=1, le=10_000)]


# -- sessions -----------------------------------------------------------------------------------------------


class TokenLogin(BaseModel):
    key: str


class PasswordLogin(BaseModel):
    email: str
    password: str


def _session_cookie(response: Response, email: str, token: str) -> s.SessionOpened:
    response.set_cookie(
        COOKIE, token, httponly=True, path="/", samesite="lax"
    )  # no Secure/Domain: plain HTTP
    return s.SessionOpened(status="ok", email=email)


@router.post("/authentication-service/api/v1/token-sessions")
def token_session(body: TokenLogin, response: Response, app: App) -> s.SessionOpened:
    """Exchange an API token for a cookie session (401 with the reason for a refused token)."""
    user, token = session_for_token(app, body.key)
    return _session_cookie(response, user.email, token)


@router.post("/authentication-service/api/v1/sessions")
def password_session(body: PasswordLogin, request: Request, response: Response, app: App) -> s.SessionOpened:
    """Log in with email and password; the session lives in a cookie.

    Failed logins are throttled per account and per client address (429 with ``Retry-After``).
    """
    address = request.client.host if request.client else "unknown"
    user, token = session_for_password(app, body.email, body.password, address)
    return _session_cookie(response, user.email, token)


async def caller(
    request: Request, app: App, identities: Annotated[Identities, Depends(get_identities)]
) -> Access:
    """The user of the session cookie (401 without one, or with the reason the session is refused)."""
    token = request.cookies.get(COOKIE)
    user = identities.check(token) if token else Refusal.UNKNOWN
    if isinstance(user, Refusal):
        hint = "log in first: POST /authentication-service/api/v1/token-sessions"
        raise user.error(hint if user is Refusal.UNKNOWN else None)
    return access_of(app, user)


Caller = Annotated[Access, Depends(caller)]


@router.delete("/authentication-service/api/v1/sessions")
def logout(request: Request, response: Response, app: App, who: Caller) -> s.Status:
    """End the session: its token is revoked and the cookie cleared."""
    end_session(app, request.cookies[COOKIE])
    request.app.state.identities.forget(request.cookies[COOKIE])
    response.delete_cookie(COOKIE, path="/")
    return s.Status(status="ok")


@router.get("/authentication-service/api/v1/loginstatus")
def login_status(who: Caller) -> s.User:
    """The session's user."""
    return m.user(who.user, who.roles)


# -- storage service ----------------------------------------------------------------------------------------


@router.get("/storage-service/api/v2/projects")
def list_projects(
    app: App, who: Caller, page_index: PageIndex = None, page_size: PageSize = None
) -> s.Page[s.ProjectEntity]:
    """The caller's projects, paginated."""
    return m.page([m.project(p) for p in uc.projects(app, who)], page_index, page_size)


@router.get("/storage-service/api/v1/projects/{project_id}")
def get_project(project_id: str, app: App, who: Caller) -> s.ProjectEntity:
    """One project (404 if unknown or not the caller's)."""
    return m.project(uc.project(app, who, project_id))


@router.get("/storage-service/api/v1/projects/{project_id}/patients")
def list_patients(
    project_id: str, app: App, who: Caller, page_index: PageIndex = None, page_size: PageSize = None
) -> s.Page[s.PatientEntity]:
    """Subjects of a project."""
    project, subjects = uc.patients(app, who, project_id)
    return m.page([m.patient(r, project.id) for r in subjects], page_index, page_size)


@router.get("/storage-service/api/v1/projects/{project_id}/patients/{patient_id}")
def get_patient(project_id: str, patient_id: str, app: App, who: Caller) -> s.PatientEntity:
    """One subject."""
    project, subject = uc.patient(app, who, project_id, patient_id)
    return m.patient(subject, project.id)


@router.get("/storage-service/api/v1/projects/{project_id}/patients/{patient_id}/patients")
def list_patient_studies(
    project_id: str,
    patient_id: str,
    app: App,
    who: Caller,
    page_index: PageIndex = None,
    page_size: PageSize = None,
) -> s.Page[s.StudyEntity]:
    """A subject's studies (the client asks ``/patients`` for them)."""
    _, studies = uc.studies(app, who, project_id, patient_id)
    return m.page([_study(v) for v in studies], page_index, page_size)


StudyPath = "/storage-service/api/v1/projects/{project_id}/patients/{patient_id}/studies/{study_id}"


def _study(view: uc.StudyView) -> s.StudyEntity:
    return m.study(view.session, view.project_id, view.modalities, view.report_types)


@router.get(StudyPath)
def get_study(project_id: str, patient_id: str, study_id: str, app: App, who: Caller) -> s.StudyEntity:
    """One study (session)."""
    return _study(uc.study(app, who, project_id, patient_id, study_id))


@router.get(StudyPath + "/series")
def list_series(
    project_id: str,
    patient_id: str,
    study_id: str,
    app: App,
    who: Caller,
    page_index: PageIndex = None,
    page_size: PageSize = None,
) -> s.Page[s.SeriesEntity]:
    """Series of a study with every field the client requires (kept in the index when each was placed)."""
    ids, series = uc.series(app, who, project_id, patient_id, study_id)
    return m.page([m.series(row, ids) for row in series], page_index, page_size)


@router.get(StudyPath + "/customer-results")
def list_customer_results(
    project_id: str,
    patient_id: str,
    study_id: str,
    app: App,
    who: Caller,
    page_index: PageIndex = None,
    page_size: PageSize = None,
) -> s.Page[s.CustomerResultEntity]:
    """One customer result per succeeded job of the study."""
    ids, jobs = uc.customer_results(app, who, project_id, patient_id, study_id)
    return m.page([m.customer_result(j, ids) for j in jobs], page_index, page_size)


@router.get(
    "/storage-service/api/v2/projects/{project_id}/patients/{patient_id}/studies/{study_id}/pipeline-results"
)
def list_pipeline_results(
    project_id: str,
    patient_id: str,
    study_id: str,
    app: App,
    who: Caller,
    page_index: PageIndex = None,
    page_size: PageSize = None,
) -> s.Page[s.PipelineResultEntity]:
    """One pipeline result per succeeded job, with the measurements of its results.json."""
    ids, found = uc.pipeline_results(app, who, project_id, patient_id, study_id)
    items = [m.pipeline_result(r.job, ids, r.measurements) for r in found]
    return m.page(items, page_index, page_size)


# -- uploads service ----------------------------------------------------------------------------------------


class StartUpload(BaseModel):
    icobrain_report_type: str
    force_reprocessing: bool = False


UploadBase = "/uploads-service/api/v1/projects/{project_id}"


@router.get(UploadBase + "/dicom-uploads")
def list_uploads(
    project_id: str, app: App, who: Caller, page_index: PageIndex = None, page_size: PageSize = None
) -> s.Page[s.UploadEntity]:
    """Uploads of a project."""
    project, found = uc.uploads(app, who, project_id)
    return m.page([m.upload(u, project.id) for u in found], page_index, page_size)


@router.post(UploadBase + "/multi-upload")
def start_upload(project_id: str, body: StartUpload, app: App, who: Caller) -> s.UploadEntity:
    """Open an upload with the requested report type."""
    project, info = uc.start_upload(
        app, who, project_id, body.icobrain_report_type, force_reprocessing=body.force_reprocessing
    )
    return m.upload(info, project.id)


@router.put(UploadBase + "/multi-upload/{upload_id}")
def put_file(
    project_id: str,
    upload_id: str,
    app: App,
    who: Caller,
    file: Annotated[list[UploadFile], File()],
) -> s.Received:
    """One (or more) files; the client's path is only a label."""
    parts = [(part.filename or "file", part.file) for part in file]
    return s.Received(received=uc.put_files(app, who, project_id, upload_id, parts))


@router.post(UploadBase + "/multi-upload/{upload_id}")
def complete_upload(project_id: str, upload_id: str, app: App, who: Caller) -> s.UploadEntity:
    """Complete the upload: the import starts in the background."""
    project, info = uc.complete_upload(app, who, project_id, upload_id)
    return m.upload(info, project.id)


@router.get(UploadBase + "/multi-upload/{upload_id}")
@router.get(UploadBase + "/dicom-uploads/{upload_id}")
def get_upload(project_id: str, upload_id: str, app: App, who: Caller) -> s.UploadEntity:
    """The upload, with its status (``import_success`` once every study is handed to processing)."""
    project, info = uc.upload(app, who, project_id, upload_id)
    return m.upload(info, project.id)


@router.get(UploadBase + "/dicom-uploads/{upload_id}/files")
def get_upload_files(project_id: str, upload_id: str, app: App, who: Caller) -> s.UploadEntityFiles:
    """Files received and not yet imported."""
    return s.UploadEntityFiles(files=uc.upload_files(app, who, project_id, upload_id))


@router.get(UploadBase + "/dicom-uploads/{upload_id}/study-uploads")
def get_study_uploads(
    project_id: str,
    upload_id: str,
    app: App,
    who: Caller,
    page_index: PageIndex = None,
    page_size: PageSize = None,
) -> s.Page[s.StudyUploadEntity]:
    """The studies the upload brought, by the ids the client fetches them with."""
    found = uc.study_uploads(app, who, project_id, upload_id)
    return m.page([m.study_upload(info, ids, upload_id) for info, ids in found], page_index, page_size)


# -- customer reports ---------------------------------------------------------------------------------------


@router.get("/customer-reports-service/api/v2/projects/{project_id}/customer-reports")
def list_reports(
    project_id: str,
    app: App,
    who: Caller,
    study_instance_uid: str | None = None,
    page_index: PageIndex = None,
    page_size: PageSize = None,
) -> s.Page[s.CustomerReportEntity]:
    """Reports of a project, optionally of one StudyInstanceUID."""
    found = uc.reports(app, who, project_id, study_instance_uid)
    return m.page([m.report(r) for r in found], page_index, page_size)


@router.get(
    "/customer-reports-service/api/v2/projects/{project_id}/patients/{patient_id}/studies/{study_id}/customer-reports"
)
def list_study_reports(
    project_id: str,
    patient_id: str,
    study_id: str,
    app: App,
    who: Caller,
    page_index: PageIndex = None,
    page_size: PageSize = None,
) -> s.Page[s.CustomerReportEntity]:
    """Reports of one study: every requested report type of its newest version."""
    found = uc.study_reports(app, who, project_id, patient_id, study_id)
    return m.page([m.report(r) for r in found], page_index, page_size)


@router.get("/customer-reports-service/api/v2/projects/{project_id}/customer-reports/{report_id}")
def get_report(project_id: str, report_id: str, app: App, who: Caller) -> s.CustomerReportEntity:
    """One report; ``Finished`` is its only end, successful or not."""
    return m.report(uc.report(app, who, project_id, report_id))


@router.get(
    "/customer-reports-service/api/v2/projects/{project_id}/customer-reports/{report_id}/files/{result_id}"
)
def get_report_file(
    project_id: str, report_id: str, result_id: int, app: App, who: Caller
) -> StreamingResponse:
    """A report file's bytes, uncompressed (the client saves what the wire carries)."""
    found = uc.report_file(app, who, project_id, report_id, result_id)
    return file_response(found.stream, found.size, found.media_type, m.file_name(found.name))
