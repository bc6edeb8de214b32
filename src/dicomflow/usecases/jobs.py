"""Jobs: list them (newest first), read the log of a job's newest attempt, process studies here and now
(``dicomflow import --report-type``), and serve as a worker of the Celery executor (``dicomflow worker``)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import TYPE_CHECKING

from dicomflow import schemas
from dicomflow.errors import NotFound
from dicomflow.flow import JobState
from dicomflow.index import reading
from dicomflow.index.jobs import job_row
from dicomflow.index.jobs import list_jobs as listed_jobs
from dicomflow.index.studies import StudyInfo, list_studies, study_of_job
from dicomflow.jobs import CeleryWorker, ProcessingEngine, job_workdir
from dicomflow.usecases import _schemas
from dicomflow.usecases.access import Access

if TYPE_CHECKING:
    from dicomflow.runtime import Application


def list_jobs(
    app: Application, caller: Access | None, state: JobState | str | None = None
) -> list[schemas.Job]:
    """The newest jobs (200) of the caller's projects, optionally of one state, with their attempts.

    An unknown ``state`` matches no job.
    """
    with reading(app.engine) as conn:
        jobs = listed_jobs(conn, state=state)
        if caller is not None and caller.roles is not None:
            studies = caller.visible(list_studies(conn, latest_only=False, detail=False))
            visible = {study.id for study in studies}
            jobs = [job for job in jobs if job.study_id in visible]
    return [_schemas.job(job) for job in jobs]


def job_log(app: Application, caller: Access | None, job_id: int) -> str | None:
    """What the newest attempt of a job wrote (logging, stdout, stderr, the traceback of a failure); None
    while it has written nothing yet.

    Raises
    ------
    NotFound
        No job with that id in the caller's projects.
    """
    with reading(app.engine) as conn:
        job = job_row(conn, job_id)
        if caller is not None:
            study = study_of_job(conn, job_id)
            if not caller.sees(study.group, study.project):
                raise NotFound(f"no job with id {job_id}")
    path = job_workdir(app.settings, job.id, max(job.attempts, 1)) / "job.log"
    return path.read_text(errors="replace") if path.is_file() else None


def process_here(
    app: Application, sessions: Sequence[int], report_types: Sequence[str], *, actor: str
) -> list[StudyInfo]:
    """Request ``report_types`` on the studies of ``sessions`` and run the flow in this process (at least one
    job worker, the embedded executor whatever ``jobs.executor`` says) until each study is Finished, Failed or
    waits in QualityControl; return them as they ended.

    For the local operator (``dicomflow import --report-type``), who sees every project.
    """
    settings = app.settings
    processing = ProcessingEngine(
        settings.with_overrides(
            **{"processing.workers": max(1, settings.processing.workers), "jobs.executor": "embedded"}
        ),
        app.engine,
        flow=app.flow,
        holder=f"{settings.cluster.node_id[:40]}:import-{os.getpid()}",  # not the node's server
    )
    try:
        study_ids = processing.flow.request(list(sessions), list(report_types), actor=actor)
        return processing.run_until_settled(study_ids)
    finally:
        processing.stop()


def run_worker(app: Application) -> int:
    """Run jobs announced on ``settings.jobs.broker_url`` (``processing.workers`` at once) until SIGTERM;
    returns the exit status. Each job is claimed, run, beaten and filed in the index, as the server's
    embedded executor does (see :mod:`dicomflow.jobs._celery`)."""
    return CeleryWorker(app.settings, app.engine, app.flow).run()
