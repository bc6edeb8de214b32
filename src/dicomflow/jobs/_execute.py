"""What runs inside a job's worker process: read the study from the index and the blob store, check and
select the inputs, run the report type, and leave ``manifest.json`` (or ``error.json``) in the workdir.

The same function serves the embedded executor's worker processes and, later, Celery workers on other hosts.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import traceback
from pathlib import Path

from pydicom import dcmread

from dicomflow.config import Settings
from dicomflow.errors import UnprocessableInput
from dicomflow.index import create_index_engine, reading
from dicomflow.index.jobs import job_row
from dicomflow.index.studies import project_of_session, study_blob_keys, study_row
from dicomflow.pipelines import Context, StudyInfo, load_report_types, read_series, run, select
from dicomflow.storage import open_blob_store

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_BLOCKED = 3  # the checks failed: retrying cannot help
EXIT_UNPROCESSABLE = 4  # the report type raised UnprocessableInput: deterministic, retrying cannot help
ERROR_FILE = "error.json"
FINDINGS_FILE = "findings.json"
LOG_FILE = "job.log"


def run_in_worker(settings_json: str, job_id: int, workdir: str) -> None:
    """Entry point of a worker process: capture every output in the job's log, run, exit with a code."""
    path = Path(workdir)
    path.mkdir(parents=True, exist_ok=True)
    log = os.open(path / LOG_FILE, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(log, 1)
    os.dup2(log, 2)
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
        force=True,
    )
    code = execute_job(Settings.model_validate_json(settings_json), job_id, path)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def execute_job(settings: Settings, job_id: int, workdir: Path) -> int:
    """Run one attempt in ``workdir``; returns :data:`EXIT_OK`, :data:`EXIT_ERROR`, :data:`EXIT_BLOCKED` or
    :data:`EXIT_UNPROCESSABLE` (the data cannot be processed; ``error.json`` holds the reason)."""
    logger = logging.getLogger("dicomflow.job")
    try:
        engine = create_index_engine(settings.index_url)
        store = open_blob_store(settings, fsync=False)
        with reading(engine) as conn:
            job = job_row(conn, job_id)
            study = study_row(conn, job.study_id)
            keys = study_blob_keys(conn, study)
            project = project_of_session(conn, study.session_id)[1]
        engine.dispose()
        registry = load_report_types(
            settings.processing.plugins, settings.processing.aliases, settings.processing.options
        )
        report_type = registry.get(job.report_type)
        logger.info("job %d: %s %s on %d instances", job_id, report_type.name, report_type.version, len(keys))
        with store.local_files(keys, settings.scratch_dir) as paths:  # inputs on this node's disk
            series = read_series(paths)
            selection = select(report_type, series)
            if selection.is_blocked:
                (workdir / FINDINGS_FILE).write_text(json.dumps([f.as_dict() for f in selection.findings]))
                logger.error(
                    "job %d: checks failed: %s", job_id, "; ".join(f.message for f in selection.findings)
                )
                return EXIT_BLOCKED
            info = _study_info(series[0].paths[0] if series else None, project)
            run(report_type, selection, Context(workdir, info, dict(report_type.options), logger))
        logger.info("job %d: done", job_id)
        return EXIT_OK
    except UnprocessableInput as exc:
        logger.exception("job %d cannot process its data", job_id)
        _write_error(workdir, exc.message)
        return EXIT_UNPROCESSABLE
    except Exception as exc:
        logger.exception("job %d failed", job_id)
        _write_error(workdir, f"{type(exc).__name__}: {exc}")
        return EXIT_ERROR


def _write_error(workdir: Path, error: str) -> None:
    (workdir / ERROR_FILE).write_text(json.dumps({"error": error, "traceback": traceback.format_exc()}))


def _study_info(first_file: Path | None, project: str) -> StudyInfo:
    if first_file is None:
        return StudyInfo("", project)
    ds = dcmread(first_file, stop_before_pixels=True)
    return StudyInfo(
        study_instance_uid=str(ds.get("StudyInstanceUID", "")),
        project=project,
        patient_id=str(ds.get("PatientID", "") or ""),
        patient_name=str(ds.get("PatientName", "") or ""),
        study_date=str(ds.get("StudyDate", "") or ""),
        study_description=str(ds.get("StudyDescription", "") or ""),
        accession_number=str(ds.get("AccessionNumber", "") or ""),
    )
