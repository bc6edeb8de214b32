"""Routes of the processing flow: studies with stage and findings, jobs and logs, results, review, rules."""

from __future__ import annotations

import io
import zipfile
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import FileResponse, PlainTextResponse, Response
from pydantic import BaseModel, Field

from dicomflow.api._access import READ, REVIEW, UPLOAD, Access, Caller, project_of
from dicomflow.api._deps import AdminUser, IndexEngine, current_user
from dicomflow.config import Settings
from dicomflow.errors import InvalidState, NotFound
from dicomflow.flow import Stage
from dicomflow.index import Role, reading, writing
from dicomflow.index.jobs import JobInfo, job_row, list_jobs
from dicomflow.index.results import ResultInfo, result_row, results_of_study
from dicomflow.index.rules import RuleInfo, add_rule, list_rules
from dicomflow.index.rules import delete_rule as remove_rule
from dicomflow.index.studies import StudyInfo, find_study, list_studies, project_id_by_label, study_of_job
from dicomflow.jobs import Flow, job_workdir

router = APIRouter(dependencies=[Depends(current_user)])


def _flow(request: Request) -> Flow:
    flow: Flow = request.app.state.flow
    return flow


def _settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


class Review(BaseModel):
    """Body of the QualityControl decisions."""

    comment: str = Field("", description="The reviewer's note (required to reject).", max_length=4000)
    rerun: bool = Field(False, description="On reject: run the report types again instead of failing.")


class Reprocess(BaseModel):
    """Body of ``POST /studies/{uid}/reprocess``."""

    report_types: list[str] = Field(
        default_factory=list, description="Report types to run; default: as before."
    )


class RuleCreate(BaseModel):
    """Body of ``POST /projects/{label}/rules``."""

    report_type: str = Field(description="Report type (or alias) to run on new studies.")
    match: dict[str, str] = Field(
        default_factory=dict, description="DICOM keyword -> regex (case-insensitive); all must match."
    )


def _study(
    engine: Any, caller: Access, uid: str, version: int | None, allowed: frozenset[Role], action: str
) -> StudyInfo:
    """The study version in a project the caller may see (404 as for an unknown UID otherwise)."""
    with reading(engine) as conn:
        study = find_study(conn, uid, version, sees=caller.sees)
    caller.check(study.group, study.project, allowed, action)
    return study


def _where(study: StudyInfo) -> tuple[str, str]:
    return study.group, study.project


Version = Annotated[int | None, Query(description="Study version (default: the newest).")]


@router.get("/studies", summary="Studies in the processing flow (newest version each)")
def get_studies(
    engine: IndexEngine,
    caller: Caller,
    project: Annotated[str | None, Query(description="Only this project.")] = None,
    stage: Annotated[Stage | None, Query(description="Only this stage.")] = None,
) -> list[StudyInfo]:
    """Each study's newest version (of the caller's projects) with stage, reason, history, findings, jobs."""
    with reading(engine) as conn:
        return caller.visible(list_studies(conn, project=project, stage=stage.value if stage else None))


@router.get("/studies/{study_instance_uid}", summary="One study in the flow")
def get_study(
    study_instance_uid: str, engine: IndexEngine, caller: Caller, version: Version = None
) -> StudyInfo:
    """Stage, history, findings and jobs of a study version."""
    return _study(engine, caller, study_instance_uid, version, READ, "read it")


@router.get("/studies/{study_instance_uid}/results", summary="Result files of a study")
def get_results(
    study_instance_uid: str, engine: IndexEngine, caller: Caller, version: Version = None
) -> list[ResultInfo]:
    """Reports, result JSON and other files the study's jobs produced."""
    study = _study(engine, caller, study_instance_uid, version, READ, "read it")
    with reading(engine) as conn:
        return results_of_study(conn, study.id)


@router.get("/studies/{study_instance_uid}/results.zip", summary="Every result file of a study as zip")
def get_results_zip(
    study_instance_uid: str, request: Request, engine: IndexEngine, caller: Caller, version: Version = None
) -> Response:
    """A zip of the result files, in folders by report type."""
    settings = _settings(request)
    study = _study(engine, caller, study_instance_uid, version, READ, "read it")
    with reading(engine) as conn:
        found = results_of_study(conn, study.id)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for result in found:
            archive.write(settings.data_dir / result.path, f"{result.report_type}/{result.name}")
    name = f"{study_instance_uid}-v{study.version}-results.zip"
    headers = {"Content-Disposition": f'attachment; filename="{name}"'}
    return Response(buffer.getvalue(), media_type="application/zip", headers=headers)


@router.get("/results/{result_id}/file", summary="Download one result file")
def get_result_file(result_id: int, request: Request, engine: IndexEngine, caller: Caller) -> FileResponse:
    """The file as the job wrote it."""
    with reading(engine) as conn:
        result = result_row(conn, result_id)
        study = study_of_job(conn, result.job_id)
    if not caller.sees(study.group, study.project):
        raise NotFound(f"no result with id {result_id}")
    return FileResponse(
        _settings(request).data_dir / result.path, media_type=result.media_type, filename=result.name
    )


@router.post("/studies/{study_instance_uid}/reprocess", status_code=202, summary="Run a study again")
def post_reprocess(study_instance_uid: str, body: Reprocess, request: Request, caller: Caller) -> StudyInfo:
    """Checks and fresh jobs for the study's report types (``force_reprocessing``)."""
    flow = _flow(request)
    where = _where(_study(flow.engine, caller, study_instance_uid, None, UPLOAD | REVIEW, "reprocess"))
    flow.reprocess(study_instance_uid, body.report_types, actor=caller.user.email, project=where)
    with reading(flow.engine) as conn:
        return find_study(conn, study_instance_uid, sees=caller.sees)


@router.get("/qc", summary="Studies waiting for review")
def get_qc(engine: IndexEngine, caller: Caller) -> list[StudyInfo]:
    """Studies in QualityControl, of the caller's projects."""
    with reading(engine) as conn:
        return caller.visible(list_studies(conn, stage=Stage.QUALITY_CONTROL.value))


@router.post("/studies/{study_instance_uid}/qc/approve", summary="Approve results (→ Finished)")
def post_approve(study_instance_uid: str, body: Review, request: Request, caller: Caller) -> StudyInfo:
    """Reviewers and admins of the project; recorded with the reviewer in the history and event log."""
    flow = _flow(request)
    where = _where(_study(flow.engine, caller, study_instance_uid, None, REVIEW, "review"))
    email = caller.user.email
    flow.review(study_instance_uid, approve=True, reviewer=email, comment=body.comment, project=where)
    with reading(flow.engine) as conn:
        return find_study(conn, study_instance_uid, sees=caller.sees)


@router.post("/studies/{study_instance_uid}/qc/reject", summary="Reject results (→ Failed, or re-run)")
def post_reject(study_instance_uid: str, body: Review, request: Request, caller: Caller) -> StudyInfo:
    """Reviewers and admins of the project; the comment is the reason users see."""
    if not body.comment.strip():
        raise InvalidState("a rejection needs a comment saying why")
    flow = _flow(request)
    where = _where(_study(flow.engine, caller, study_instance_uid, None, REVIEW, "review"))
    email = caller.user.email
    flow.review(
        study_instance_uid,
        approve=False,
        reviewer=email,
        comment=body.comment,
        rerun=body.rerun,
        project=where,
    )
    with reading(flow.engine) as conn:
        return find_study(conn, study_instance_uid, sees=caller.sees)


@router.get("/jobs", summary="Jobs, newest first")
def get_jobs(
    engine: IndexEngine,
    caller: Caller,
    state: Annotated[str | None, Query(description="queued, running, retrying, …")] = None,
) -> list[JobInfo]:
    """Jobs of the caller's projects with their state and attempts."""
    with reading(engine) as conn:
        jobs = list_jobs(conn, state=state)
        if caller.roles is None:
            return jobs
        visible = {s.id for s in caller.visible(list_studies(conn, latest_only=False, detail=False))}
    return [job for job in jobs if job.study_id in visible]


@router.get("/jobs/{job_id}/log", summary="Log of a job's newest attempt", response_class=PlainTextResponse)
def get_job_log(job_id: int, request: Request, engine: IndexEngine, caller: Caller) -> str:
    """Everything the attempt's process wrote (logging, stdout, stderr, the traceback of a failure)."""
    with reading(engine) as conn:
        job = job_row(conn, job_id)
        study = study_of_job(conn, job_id)
    if not caller.sees(study.group, study.project):
        raise NotFound(f"no job with id {job_id}")
    path = job_workdir(_settings(request), job.id, max(job.attempts, 1)) / "job.log"
    if not path.is_file():
        raise NotFound(f"job {job_id} has no log yet")
    return path.read_text(errors="replace")


@router.get("/report-types", summary="Installed report types")
def get_report_types(request: Request) -> list[dict[str, Any]]:
    """Name, version, title, whether it needs review, and its inputs; aliases listed separately."""
    registry = _flow(request).registry
    types = [
        {
            "name": name,
            "version": registry.get(name).version,
            "title": registry.get(name).title,
            "requires_qc": registry.get(name).requires_qc,
            "inputs": {k: v.describe() for k, v in registry.get(name).input_objects().items()},
        }
        for name in registry.names()
    ]
    return [*types, *({"alias": a, "name": t} for a, t in sorted(registry.aliases.items()))]


@router.get("/projects/{label}/rules", summary="A project's rules")
def get_rules(label: str, engine: IndexEngine, caller: Caller) -> list[RuleInfo]:
    """Report types run on the project's new studies, with their tag conditions."""
    project_id = project_of(engine, caller, label, READ, "read its rules")
    with reading(engine) as conn:
        return list_rules(conn, project_id)


@router.post("/projects/{label}/rules", status_code=201, summary="Add a project rule (admins only)")
def post_rule(
    label: str, body: RuleCreate, request: Request, engine: IndexEngine, _admin: AdminUser
) -> RuleInfo:
    """Run a report type on new studies of the project whose tags match."""
    _flow(request).registry.get(body.report_type)
    with writing(engine) as conn:
        rule_id = add_rule(conn, project_id_by_label(conn, label), body.report_type, body.match)
        return next(r for r in list_rules(conn) if r.id == rule_id)


@router.delete("/rules/{rule_id}", status_code=204, summary="Remove a project rule (admins only)")
def delete_rule(rule_id: int, engine: IndexEngine, _admin: AdminUser) -> Response:
    """Studies already queued keep their jobs."""
    with writing(engine) as conn:
        remove_rule(conn, rule_id)
    return Response(status_code=204)
