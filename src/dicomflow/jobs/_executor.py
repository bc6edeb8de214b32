"""The embedded executor: due jobs run in a bounded pool of worker processes of ``dicomflow serve``.

Each attempt is its own process (from a forkserver with the pipeline modules preloaded, so a start costs
milliseconds, not an interpreter start): a crash, a leak or a hung native call cannot take the server down,
a timeout kills it, and its output lands in its own log. The queue is the ``jobs`` table, so a restart
resumes what was running, and a Celery executor can claim from the same table later.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import socket
import time
from dataclasses import dataclass
from datetime import timedelta
from multiprocessing.context import ForkServerContext
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import Protocol

from sqlalchemy import Connection, Engine

from dicomflow.config import Settings
from dicomflow.index import utcnow, writing
from dicomflow.index.jobs import claim_job, heartbeat, requeue_lost, running_workers
from dicomflow.jobs._execute import run_in_worker

LOGGER = logging.getLogger(__name__)


class JobSink(Protocol):
    """Who files a finished attempt (the flow)."""

    def job_ended(
        self, job_id: int, workdir: Path, exit_code: int | None, *, timed_out: bool = False
    ) -> None: ...


class Executor(Protocol):
    """What the processing engine needs of an executor. The embedded one runs attempts in local worker
    processes; a Celery one would claim from the same ``jobs`` table in workers on other hosts, run
    :func:`dicomflow.jobs.execute_job` and hand the workdir to the same sink."""

    @property
    def busy(self) -> int:
        """Attempts running now (of this executor)."""
        ...

    def recover(self) -> list[int]:
        """Requeue jobs a stopped worker left running; returns their ids."""
        ...

    def step(self) -> int:
        """Start due jobs and file ended ones; returns how many were started."""
        ...

    def stop(self) -> None:
        """Stop running attempts (they are resumed later)."""
        ...


@dataclass
class _Running:
    job_id: int
    process: BaseProcess
    workdir: Path
    deadline: float


def job_workdir(settings: Settings, job_id: int, attempt: int) -> Path:
    """Where one attempt of a job works and keeps its log and outputs."""
    return settings.data_dir.resolve() / "jobs" / str(job_id) / f"attempt-{attempt}"


def _context() -> ForkServerContext:
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["dicomflow.jobs._execute", "dicomflow.pipelines.builtin"])
    return context


class EmbeddedExecutor:
    """Claims due jobs and runs each in a worker process, at most ``settings.processing.workers`` at once."""

    def __init__(self, settings: Settings, engine: Engine, sink: JobSink) -> None:
        self.settings = settings
        self.engine = engine
        self.sink = sink
        self.worker_id = f"{socket.gethostname()}:{os.getpid()}"
        self._running: dict[int, _Running] = {}
        self._context = _context()
        self._settings_json = settings.model_dump_json()
        self._last_beat = 0.0

    @property
    def busy(self) -> int:
        """Attempts running now."""
        return len(self._running)

    def recover(self) -> list[int]:
        """Jobs whose worker stopped (beats too old, or a dead process of this host) go back to the queue.

        Run at start and now and then (under the job-recovery lease); never a job this executor runs.
        """
        stale = utcnow() - timedelta(seconds=self.settings.processing.stale_after)
        with writing(self.engine) as conn:
            ids = requeue_lost(conn, stale, workers_gone=list(self._dead_local_workers(conn)))
        if ids:
            LOGGER.warning("resuming %d job(s) whose worker stopped: %s", len(ids), ids)
        return ids

    def _dead_local_workers(self, conn: Connection) -> list[str]:
        host = socket.gethostname()
        workers = running_workers(conn)
        return [
            w
            for w in workers
            # ours while nothing runs here: left by an engine of this process that stopped (recovery runs
            # on the thread that claims, so a job claimed here is among _running already)
            if (w == self.worker_id and not self._running)
            or (w != self.worker_id and w.startswith(host + ":") and not _pid_alive(int(w.rsplit(":", 1)[1])))
        ]

    def step(self) -> int:
        """Reap ended attempts, kill overdue ones, beat, and start due jobs; returns attempts started."""
        self._reap()
        self._beat()
        started = 0
        while len(self._running) < self.settings.processing.workers and self._start_one():
            started += 1
        return started

    def _start_one(self) -> bool:
        with writing(self.engine) as conn:
            job = claim_job(conn, self.worker_id, utcnow())
        if job is None:
            return False
        workdir = job_workdir(self.settings, job.id, job.attempts)
        workdir.mkdir(parents=True, exist_ok=True)
        process = self._context.Process(
            target=run_in_worker,
            args=(self._settings_json, job.id, str(workdir)),
            name=f"dicomflow-job-{job.id}",
        )
        process.start()
        LOGGER.info(
            "job %d (%s) attempt %d started in process %s", job.id, job.report_type, job.attempts, process.pid
        )
        self._running[job.id] = _Running(job.id, process, workdir, time.monotonic() + job.timeout)
        return True

    def _reap(self) -> None:
        for job_id, running in list(self._running.items()):
            timed_out = running.process.is_alive() and time.monotonic() > running.deadline
            if timed_out:
                LOGGER.error("job %d exceeded its timeout; stopping it", job_id)
                running.process.kill()
                running.process.join(5)
            if running.process.is_alive():
                continue
            del self._running[job_id]
            exit_code = running.process.exitcode
            running.process.close()
            self.sink.job_ended(job_id, running.workdir, exit_code, timed_out=timed_out)

    def _beat(self) -> None:
        now = time.monotonic()
        if self._running and now - self._last_beat >= self.settings.processing.heartbeat:
            with writing(self.engine) as conn:
                heartbeat(conn, list(self._running), utcnow())
            self._last_beat = now

    def stop(self) -> None:
        """Stop running attempts (they are resumed at the next start)."""
        for running in self._running.values():
            running.process.kill()
            running.process.join(5)
        self._running.clear()


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
