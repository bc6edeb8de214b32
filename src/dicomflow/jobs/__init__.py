"""Durable jobs: the flow over the index, the executors (embedded worker processes, or Celery workers on
other hosts), the export outbox."""

from dicomflow.jobs._celery import CeleryExecutor, CeleryWorker
from dicomflow.jobs._engine import ProcessingEngine
from dicomflow.jobs._execute import execute_job
from dicomflow.jobs._executor import EmbeddedExecutor, Executor, job_workdir
from dicomflow.jobs._flow import Flow
from dicomflow.jobs._leases import JOB_RECOVERY, OUTBOX, TRACKER, UPLOAD_EXPIRY, Lease, LeasedDuty
from dicomflow.jobs._outbox import Outbox

__all__ = [
    "JOB_RECOVERY",
    "OUTBOX",
    "TRACKER",
    "UPLOAD_EXPIRY",
    "CeleryExecutor",
    "CeleryWorker",
    "EmbeddedExecutor",
    "Executor",
    "Flow",
    "Lease",
    "LeasedDuty",
    "Outbox",
    "ProcessingEngine",
    "execute_job",
    "job_workdir",
]
