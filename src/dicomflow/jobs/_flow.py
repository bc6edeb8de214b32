"""The processing flow over the index: new instances open or extend study versions, settled studies are
checked and get their jobs, ended jobs move studies on, reviewers approve or reject.

Decisions come from :mod:`dicomflow.flow` (pure); this module reads and writes the index around them.
It runs on a background thread of ``dicomflow serve`` (never on the network threads) and in ``dicomflow
import --report-type``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from collections.abc import Callable, Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

from pydicom import dcmread
from sqlalchemy import Connection, Engine

from dicomflow import metrics
from dicomflow.checks import Severity
from dicomflow.config import Settings
from dicomflow.errors import DicomflowError, InvalidState
from dicomflow.flow import TERMINAL, JobOutcome, JobState, Stage, after_jobs
from dicomflow.index import reading, utcnow, writing
from dicomflow.index.arrivals import Arrival, arrivals_since, cursor, move_cursor
from dicomflow.index.jobs import create_job, finish_job, job_row, jobs_of_run
from dicomflow.index.outbox import enqueue_export
from dicomflow.index.results import add_result
from dicomflow.index.rules import list_rules
from dicomflow.index.studies import (
    add_findings,
    attach_upload,
    clear_findings,
    find_study,
    latest_study,
    open_study,
    project_of_session,
    request_report_types,
    session_blob_keys,
    session_last_instance,
    set_stage,
    studies_ready,
    study_blob_keys,
    study_of_job,
    study_row,
    touch_study,
)
from dicomflow.ingest import Ingestor, Source, open_ingestor
from dicomflow.jobs._backoff import backoff
from dicomflow.jobs._execute import ERROR_FILE, EXIT_UNPROCESSABLE, FINDINGS_FILE
from dicomflow.pipelines import Manifest, ReportType, ReportTypes, read_series, select, survey
from dicomflow.storage import FileSystemBlobStore

LOGGER = logging.getLogger(__name__)
CURSOR = "flow"
SYSTEM = "dicomflow"


class Flow:
    """The flow's use cases over one index and blob store."""

    def __init__(
        self, settings: Settings, engine: Engine, store: FileSystemBlobStore, registry: ReportTypes
    ) -> None:
        self.settings = settings
        self.engine = engine
        self.store = store
        self.registry = registry
        self._ingestor: Ingestor | None = None  # files derived series back; opened on first use

    def close(self) -> None:
        """Close the ingest of derived series (its own blob store and write lock)."""
        if self._ingestor is not None:
            self._ingestor.close()
            self._ingestor = None

    def _ingest(self) -> Ingestor:
        if self._ingestor is None:
            self._ingestor = open_ingestor(self.settings)
        return self._ingestor

    # -- arrivals -----------------------------------------------------------------------------------------

    def track(self) -> int:
        """Open or extend study versions for instances received since the last call; returns the sessions."""
        with writing(self.engine) as conn:
            arrivals, position = arrivals_since(conn, cursor(conn, CURSOR))
            for arrival in arrivals:
                self._arrived(conn, arrival)
            move_cursor(conn, CURSOR, position)
        return len(arrivals)

    def _arrived(self, conn: Connection, arrival: Arrival) -> None:
        study = latest_study(conn, arrival.session_id)
        if study is not None and arrival.last_instance_id <= study.last_instance_id:
            return  # already counted (an import or upload opened the version itself)
        if study is not None and study.stage in (Stage.IMPORTING, Stage.UPLOADING):
            touch_study(conn, study.id, arrival.last_instance_id, arrival.last_received_at)
            return
        project_id, _ = project_of_session(conn, arrival.session_id)
        wanted = self._rule_report_types(conn, project_id, arrival.blob_key)
        reason = "new data after the study ended" if study is not None else "received"
        open_study(
            conn,
            arrival.session_id,
            stage=Stage.IMPORTING,
            report_types=wanted,
            last_instance_id=arrival.last_instance_id,
            last_instance_at=arrival.last_received_at,
            actor=SYSTEM,
            reason=reason,
        )

    def _rule_report_types(self, conn: Connection, project_id: int, blob_key: str) -> list[str]:
        matching = list_rules(conn, project_id)
        if not matching:
            return []
        header = dcmread(self.store.path_of(blob_key), stop_before_pixels=True)
        return [rule.report_type for rule in matching if _rule_matches(rule.match, header)]

    def request(
        self,
        session_ids: Sequence[int],
        report_types: Sequence[str],
        *,
        actor: str,
        upload_id: str | None = None,
        scope: str = "session",
        promote: bool = True,
    ) -> list[int]:
        """Open (or reuse) a study version per session with ``report_types`` requested, ready at once.

        With ``promote=False`` the studies stay in Importing: the caller runs :meth:`promote` on each (an
        upload does, once its own state says imported).
        """
        for name in report_types:
            self.registry.get(name)  # unknown names fail here, before anything is written
        study_ids = []
        with writing(self.engine) as conn:
            for session_id in dict.fromkeys(session_ids):
                last = session_last_instance(conn, session_id)
                study = latest_study(conn, session_id)
                project_id, _ = project_of_session(conn, session_id)
                if study is not None and study.stage is Stage.IMPORTING:
                    request_report_types(conn, study.id, report_types)
                    if upload_id:
                        attach_upload(conn, study.id, upload_id)
                    touch_study(
                        conn, study.id, max(last, study.last_instance_id), utcnow() - timedelta(days=1)
                    )
                    study_ids.append(study.id)
                    continue
                path = session_blob_keys(conn, session_id)[:1]
                rules = self._rule_report_types(conn, project_id, path[0]) if path else []
                study_ids.append(
                    open_study(
                        conn,
                        session_id,
                        stage=Stage.IMPORTING,
                        report_types=[*report_types, *rules],
                        last_instance_id=last,
                        last_instance_at=utcnow() - timedelta(days=1),
                        actor=actor,
                        reason="import completed" if scope == "session" else "inputs complete",
                        upload_id=upload_id,
                        scope=scope,
                    )
                )
        for study_id in study_ids if promote else ():
            self.promote(study_id)
        return study_ids

    def offer(self, session_ids: Sequence[int], report_type: str, *, scope: str, actor: str) -> list[int]:
        """Node mode: start ``report_type`` for each group whose inputs are all present; the others wait."""
        chosen = self.registry.get(report_type)
        started = []
        for session_id in dict.fromkeys(session_ids):
            with reading(self.engine) as conn:
                keys = study_blob_keys(conn, _Scope(session_id, scope))
            selection = select(chosen, read_series([self.store.path_of(key) for key in keys]))
            waiting = [f.message for f in selection.findings if f.code == "required-series-missing"]
            if waiting:
                LOGGER.info("session %d waits for its inputs: %s", session_id, "; ".join(waiting))
                continue
            started += self.request([session_id], [report_type], actor=actor, scope=scope)
        return started

    # -- readiness ----------------------------------------------------------------------------------------

    def promote_settled(self) -> int:
        """Check and start every DICOM-received study that has been quiet for the settle time."""
        cutoff = utcnow() - timedelta(seconds=self.settings.processing.settle_time)
        with reading(self.engine) as conn:
            ready = [row.id for row in studies_ready(conn, cutoff)]
        for study_id in ready:
            self.promote(study_id)
        return len(ready)

    def promote(self, study_id: int) -> None:
        """Run the checks of a ready study and queue its jobs (→ Processing), or fail it, or finish it."""
        with reading(self.engine) as conn:
            study = study_row(conn, study_id)
            keys = study_blob_keys(conn, study)
        names = list(study.report_types)
        try:
            series = read_series([self.store.path_of(key) for key in keys])
            plan = [(self.registry.get(name), select(self.registry.get(name), series)) for name in names]
        except Exception as exc:  # an unreadable file or a broken plugin must fail the study, not the loop
            LOGGER.exception("checks of study %d failed", study_id)
            with writing(self.engine) as conn:
                set_stage(conn, study_id, Stage.FAILED, SYSTEM, f"the checks could not run: {exc}")
            return
        with writing(self.engine) as conn:
            if study_row(conn, study_id).stage is not Stage.IMPORTING:
                LOGGER.info("study %d was promoted meanwhile (by another node)", study_id)
                return  # a lease handover let two nodes promote it; the first one did
            clear_findings(conn, study_id)
            if not names:
                add_findings(conn, study_id, "", survey(series))
                set_stage(conn, study_id, Stage.FINISHED, SYSTEM, "stored; no report type requested")
                return
            for report_type, selection in plan:
                add_findings(conn, study_id, report_type.name, selection.findings)
            blocking = [f for _, s in plan for f in s.findings if f.severity is Severity.ERROR]
            if blocking:
                set_stage(conn, study_id, Stage.FAILED, SYSTEM, "; ".join(f.message for f in blocking))
                return
            for report_type, _ in plan:
                self._queue(conn, study_id, report_type)
            set_stage(conn, study_id, Stage.PROCESSING, SYSTEM, f"checks passed; running {', '.join(names)}")

    def _queue(self, conn: Connection, study_id: int, report_type: type[ReportType]) -> int:
        processing = self.settings.processing
        return create_job(
            conn,
            study_id,
            report_type.name,
            report_type.version,
            requires_qc=report_type.requires_qc,
            max_attempts=report_type.max_attempts or processing.max_attempts,
            timeout=report_type.timeout or processing.timeout,
        )

    # -- job outcomes -------------------------------------------------------------------------------------

    def job_ended(
        self, job_id: int, workdir: Path, exit_code: int | None, *, timed_out: bool = False
    ) -> None:
        """File a finished attempt: results and derived series on success, retry or failure otherwise."""
        self._observe(job_id, "succeeded" if exit_code == 0 else "failed")
        if exit_code == 0:
            try:
                self._succeeded(job_id, workdir)
            except Exception as exc:
                LOGGER.exception("filing the results of job %d failed", job_id)
                self._failed(job_id, f"filing its results failed: {type(exc).__name__}: {exc}", retry=True)
        elif (workdir / FINDINGS_FILE).is_file():
            findings = json.loads((workdir / FINDINGS_FILE).read_text())
            self._failed(job_id, "; ".join(f["message"] for f in findings), retry=False)
        elif exit_code == EXIT_UNPROCESSABLE:  # deterministic: the same data would fail the same way
            self._failed(job_id, _error_text(workdir, exit_code, timed_out), retry=False)
        else:
            self._failed(job_id, _error_text(workdir, exit_code, timed_out), retry=True)
        self.settle_study_of(job_id)

    def _observe(self, job_id: int, outcome: str) -> None:
        """Count the attempt's duration in the metrics (by report type)."""
        try:
            with reading(self.engine) as conn:
                job = job_row(conn, job_id)
        except DicomflowError:
            return  # filing the attempt says what is wrong
        if job.started_at is not None:
            metrics.job_ended(job.report_type, outcome, (utcnow() - job.started_at).total_seconds())

    def _succeeded(self, job_id: int, workdir: Path) -> None:
        manifest = Manifest.load(workdir)
        with reading(self.engine) as conn:
            job = job_row(conn, job_id)
            study = study_of_job(conn, job_id)
        nodes = self.settings.processing.nodes
        unknown = sorted({node for node, _ in manifest.exports if node not in nodes})
        if unknown:
            raise ValueError(f"export to unknown node(s) {', '.join(unknown)}; configure processing.nodes")
        # derived objects join the study's session in its own project, never a namesake elsewhere
        source = Source("pipeline", f"job {job_id} ({job.report_type})", project=(study.group, study.project))
        for relative in manifest.derived:
            self._ingest().ingest_file(workdir / relative, source)
        data_dir = self.settings.data_dir.resolve()
        with writing(self.engine) as conn:
            for item in manifest.files:
                path = (workdir / item.path).resolve()
                add_result(
                    conn,
                    job_id=job_id,
                    study_id=job.study_id,
                    name=item.name,
                    kind=item.kind,
                    media_type=item.media_type,
                    size=path.stat().st_size,
                    sha256=_sha256(path),
                    path=str(path.relative_to(data_dir)),
                )
            for node, relative in manifest.exports:
                enqueue_export(conn, job_id, node, str((workdir / relative).resolve().relative_to(data_dir)))
            finish_job(conn, job_id, JobState.SUCCEEDED)

    def _failed(self, job_id: int, error: str, *, retry: bool) -> None:
        processing = self.settings.processing
        with writing(self.engine) as conn:
            job = job_row(conn, job_id)
            if retry and job.attempts < job.max_attempts:
                delay = backoff(job.attempts, processing.retry_delay, processing.retry_delay_max)
                LOGGER.warning(
                    "job %d attempt %d failed (%s); retrying in %s", job_id, job.attempts, error, delay
                )
                finish_job(conn, job_id, JobState.RETRYING, error, utcnow() + delay)
            else:
                LOGGER.error("job %d failed: %s", job_id, error)
                finish_job(conn, job_id, JobState.FAILED, error)

    def settle_study_of(self, job_id: int) -> None:
        """Move the job's study on when all its jobs have ended."""
        with writing(self.engine) as conn:
            job = job_row(conn, job_id)
            study = study_row(conn, job.study_id)
            if study.stage is not Stage.PROCESSING:
                return
            outcomes = [  # the run's own jobs: an older run's failure must not decide this one
                JobOutcome(j.report_type, j.state, j.requires_qc, j.error)
                for j in jobs_of_run(conn, study.id)
            ]
            decided = after_jobs(outcomes)
            if decided is not None:
                set_stage(conn, study.id, decided[0], SYSTEM, decided[1])

    # -- people -------------------------------------------------------------------------------------------

    def review(
        self,
        study_instance_uid: str,
        *,
        approve: bool,
        reviewer: str,
        comment: str = "",
        rerun: bool = False,
        project: tuple[str, str] | None = None,
    ) -> int:
        """Approve (→ Finished) or reject (→ Failed, or → Processing with ``rerun``) a study in review
        (its session in ``project`` (group, label), when the same study is in several); returns its id.

        Raises
        ------
        NotFound
            No version of the study (in ``project``).
        InvalidState
            The study is not in QualityControl.
        """
        with writing(self.engine) as conn:
            study = find_study(conn, study_instance_uid, sees=_only(project))
            if study.stage is not Stage.QUALITY_CONTROL:
                raise InvalidState(f"study {study_instance_uid} is {study.stage}, not in QualityControl")
            if approve:
                set_stage(conn, study.id, Stage.FINISHED, reviewer, comment or "approved")
            elif rerun:
                for job in study.jobs:
                    create_job(
                        conn,
                        study.id,
                        job.report_type,
                        job.report_version,
                        requires_qc=job.requires_qc,
                        max_attempts=job.max_attempts,
                        timeout=self.settings.processing.timeout,
                    )
                set_stage(conn, study.id, Stage.PROCESSING, reviewer, f"rejected, run again: {comment}")
            else:
                set_stage(
                    conn, study.id, Stage.FAILED, reviewer, f"rejected in review: {comment or 'no comment'}"
                )
        return study.id

    def reprocess(
        self,
        study_instance_uid: str,
        report_types: Sequence[str] = (),
        *,
        actor: str,
        project: tuple[str, str] | None = None,
    ) -> int:
        """Run a study's report types again (all requested, or the ones named); returns the study id.

        ``project`` (group, label) picks the study's session there, when the same study is in several.
        """
        with writing(self.engine) as conn:
            study = find_study(conn, study_instance_uid, sees=_only(project))
            if study.stage not in TERMINAL | {Stage.QUALITY_CONTROL}:
                raise InvalidState(
                    f"study {study_instance_uid} is {study.stage}; wait until it ends to reprocess"
                )
            names = list(report_types) or study.report_types
            if not names:
                raise InvalidState(f"study {study_instance_uid} has no report type to run; name one")
            request_report_types(conn, study.id, names)
        with writing(self.engine) as conn:
            clear_findings(conn, study.id)
        # the checks run again too: data may have been fixed since
        self._restart(study.id, names, actor)
        return study.id

    def _restart(self, study_id: int, names: Sequence[str], actor: str) -> None:
        with reading(self.engine) as conn:
            study = study_row(conn, study_id)
            keys = study_blob_keys(conn, study)
        series = read_series([self.store.path_of(key) for key in keys])
        with writing(self.engine) as conn:
            blocking = []
            for name in names:
                report_type = self.registry.get(name)
                selection = select(report_type, series)
                add_findings(conn, study_id, report_type.name, selection.findings)
                blocking += [f.message for f in selection.findings if f.severity is Severity.ERROR]
            # the stage follows the new run: it enters Processing, then fails on its own findings if any
            set_stage(conn, study_id, Stage.PROCESSING, actor, f"reprocessing {', '.join(names)}")
            if blocking:
                set_stage(conn, study_id, Stage.FAILED, actor, "; ".join(blocking))
                return
            for name in names:
                self._queue(conn, study_id, self.registry.get(name))


class _Scope:
    """The two fields :func:`study_blob_keys` reads, for a group not yet opened as a study."""

    def __init__(self, session_id: int, scope: str) -> None:
        self.session_id = session_id
        self.scope = scope


def _rule_matches(match: dict[str, str], header: Any) -> bool:
    for keyword, pattern in match.items():
        value = header.get(keyword)
        text = (
            ""
            if value is None
            else "\\".join(map(str, value))
            if isinstance(value, list | tuple)
            else str(value)
        )
        if re.search(pattern, text, re.IGNORECASE) is None:
            return False
    return True


def _error_text(workdir: Path, exit_code: int | None, timed_out: bool) -> str:
    if timed_out:
        return "timed out and was stopped"
    if (workdir / ERROR_FILE).is_file():
        return str(json.loads((workdir / ERROR_FILE).read_text())["error"])
    return f"the worker process ended with exit code {exit_code} before reporting"


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


__all__ = ["Flow"]


def _only(project: tuple[str, str] | None) -> Callable[[str, str], bool] | None:
    """A visibility test accepting one project (``None``: every project)."""
    if project is None:
        return None
    return lambda group, label: (group, label) == project
