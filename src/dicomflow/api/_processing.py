"""Routes of the processing flow: studies with stage and findings, jobs and logs, results, review, rules.

Each route translates one request into one use case of :mod:`dicomflow.usecases` (which applies the
project walls) and returns its :mod:`dicomflow.schemas` models: the JSON the SDK parses.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query
from fastapi.responses import PlainTextResponse, Response, StreamingResponse

from dicomflow.api._access import Caller
from dicomflow.api._application import App
from dicomflow.api._deps import AdminUser, current_user
from dicomflow.api._files import file_response
from dicomflow.errors import NotFound
from dicomflow.schemas import (
    Job,
    ReportType,
    ReportTypeAlias,
    Reprocess,
    ResultFile,
    Review,
    Rule,
    RuleCreate,
    Stage,
    Study,
)
from dicomflow.usecases import jobs, report_types, reprocess, results, review, rules, studies

router = APIRouter(dependencies=[Depends(current_user)])


Version = Annotated[int | None, Query(description="Study version (default: the newest).")]


@router.get("/studies", summary="Studies in the processing flow (newest version each)")
def get_studies(
    app: App,
    caller: Caller,
    project: Annotated[str | None, Query(description="Only this project.")] = None,
    stage: Annotated[Stage | None, Query(description="Only this stage.")] = None,
) -> list[Study]:
    """Each study's newest version (of the caller's projects) with stage, reason, history, findings, jobs."""
    return studies.list_studies(app, caller, project=project, stage=stage)


@router.get("/studies/{study_instance_uid}", summary="One study in the flow")
def get_study(study_instance_uid: str, app: App, caller: Caller, version: Version = None) -> Study:
    """Stage, history, findings and jobs of a study version."""
    return studies.get_study(app, caller, study_instance_uid, version)


@router.get("/studies/{study_instance_uid}/results", summary="Result files of a study")
def get_results(
    study_instance_uid: str, app: App, caller: Caller, version: Version = None
) -> list[ResultFile]:
    """Reports, result JSON and other files the study's jobs produced."""
    return results.study_results(app, caller, study_instance_uid, version).results


@router.get("/studies/{study_instance_uid}/results.zip", summary="Every result file of a study as zip")
def get_results_zip(study_instance_uid: str, app: App, caller: Caller, version: Version = None) -> Response:
    """A zip of the result files, in folders by report type."""
    archive = results.results_archive(app, caller, study_instance_uid, version)
    headers = {"Content-Disposition": f'attachment; filename="{archive.name}"'}
    return Response(archive.content, media_type=archive.media_type, headers=headers)


@router.get(
    "/results/{result_id}/file",
    summary="Download one result file",
    response_class=StreamingResponse,
    responses={200: {"content": {"application/octet-stream": {}}}},
)
def get_result_file(result_id: int, app: App, caller: Caller) -> StreamingResponse:
    """The file as the job wrote it, streamed from the shared store."""
    found = results.result_file(app, caller, result_id)
    return file_response(found.stream, found.size, found.media_type, found.name)


@router.post("/studies/{study_instance_uid}/reprocess", status_code=202, summary="Run a study again")
def post_reprocess(study_instance_uid: str, body: Reprocess, app: App, caller: Caller) -> Study:
    """Checks and fresh jobs for the study's report types (``force_reprocessing``)."""
    return reprocess.reprocess(app, caller, study_instance_uid, body.report_types)


@router.get("/qc", summary="Studies waiting for review")
def get_qc(app: App, caller: Caller) -> list[Study]:
    """Studies in QualityControl, of the caller's projects."""
    return review.waiting_for_review(app, caller)


@router.post("/studies/{study_instance_uid}/qc/approve", summary="Approve results (→ Finished)")
def post_approve(study_instance_uid: str, body: Review, app: App, caller: Caller) -> Study:
    """Reviewers and admins of the project; recorded with the reviewer in the history and event log."""
    return review.approve(app, caller, study_instance_uid, comment=body.comment)


@router.post("/studies/{study_instance_uid}/qc/reject", summary="Reject results (→ Failed, or re-run)")
def post_reject(study_instance_uid: str, body: Review, app: App, caller: Caller) -> Study:
    """Reviewers and admins of the project; the comment is the reason users see."""
    return review.reject(app, caller, study_instance_uid, comment=body.comment, rerun=body.rerun)


@router.get("/jobs", summary="Jobs, newest first")
def get_jobs(
    app: App,
    caller: Caller,
    state: Annotated[str | None, Query(description="queued, running, retrying, …")] = None,
) -> list[Job]:
    """Jobs of the caller's projects with their state and attempts."""
    return jobs.list_jobs(app, caller, state)


@router.get("/jobs/{job_id}/log", summary="Log of a job's newest attempt", response_class=PlainTextResponse)
def get_job_log(job_id: int, app: App, caller: Caller) -> str:
    """Everything the attempt's process wrote (logging, stdout, stderr, the traceback of a failure)."""
    log = jobs.job_log(app, caller, job_id)
    if log is None:
        raise NotFound(f"job {job_id} has no log yet")
    return log


@router.get("/report-types", summary="Installed report types")
def get_report_types(app: App) -> list[ReportType | ReportTypeAlias]:
    """Name, version, title, whether it needs review, and its inputs; aliases listed separately."""
    return report_types.list_report_types(app)


@router.get("/projects/{label}/rules", summary="A project's rules")
def get_rules(label: str, app: App, caller: Caller) -> list[Rule]:
    """Report types run on the project's new studies, with their tag conditions."""
    return rules.list_rules(app, caller, label)


@router.post("/projects/{label}/rules", status_code=201, summary="Add a project rule (admins only)")
def post_rule(label: str, body: RuleCreate, app: App, _admin: AdminUser) -> Rule:
    """Run a report type on new studies of the project whose tags match."""
    return rules.add_rule(app, label, body.report_type, body.match)


@router.delete("/rules/{rule_id}", status_code=204, summary="Remove a project rule (admins only)")
def delete_rule(rule_id: int, app: App, _admin: AdminUser) -> Response:
    """Studies already queued keep their jobs."""
    rules.delete_rule(app, rule_id)
    return Response(status_code=204)
