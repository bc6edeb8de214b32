"""The Celery executor: jobs run in ``dicomflow worker`` processes on any host that reaches the index, the
store and the broker (Redis). The server runs none itself.

The ``jobs`` table stays the queue and the truth; Celery only carries the claim:

- The server (:class:`CeleryExecutor`, in the processing loop where the embedded executor would run) reads
  the due jobs and publishes one message per job, naming its id (task :data:`TASK` on queue :data:`QUEUE`).
  It remembers what it announced (job id and attempts so far), so a job is announced once per attempt.
- A worker (:class:`CeleryWorker`) receiving a message claims that row in the index, transactionally
  (:func:`~dicomflow.index.jobs.claim_job`: queued or retrying and due → running, attempts + 1, worker id).
  A duplicate or stale message (the job is running elsewhere, ended, or not due yet) fails the claim and is
  dropped. The attempt then runs exactly as in the embedded executor: its own process from a forkserver,
  :func:`~dicomflow.jobs._execute.run_in_worker` in ``job_workdir(job, attempt)``, killed past its timeout;
  the worker thread heartbeats the row meanwhile, and files the outcome with the same
  :meth:`Flow.job_ended <dicomflow.jobs.Flow.job_ended>` (results, derived series, exports, retry or
  failure, the study's next stage) if the row is still its attempt.
- A worker killed mid-job (SIGKILL, a host lost) stops beating; the server's recovery (``requeue_lost``, every
  ``processing.heartbeat`` seconds) queues the job again once its heartbeat is ``processing.stale_after``
  old, and announces it again: another worker runs the next attempt, within ``max_attempts``. The orphaned
  attempt process notices its worker is gone and exits.
- SIGTERM stops a worker cleanly (Celery's warm shutdown): running attempts are stopped and their rows put
  back in the queue at once, so another worker takes them without waiting for staleness.
- Messages are acknowledged late (``acks_late``, ``reject_on_worker_lost``, prefetch 1), so a worker holds
  only what it runs; a message a dead worker held comes back after the broker's visibility timeout and is
  then a stale message like any other. A message lost altogether (a broker restarted without persistence)
  costs a delay only: when the broker's queue is empty while a due job has waited ``jobs.announce_again``
  seconds, the server announces it again. Nothing the platform must not lose lives in the broker.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import Engine

from dicomflow.config import Settings
from dicomflow.flow import JobState
from dicomflow.index import reading, utcnow, writing
from dicomflow.index.jobs import JobRecord, claim_job, due_jobs, heartbeat, job_row, release_job, requeue_lost
from dicomflow.jobs._execute import EXIT_ERROR, run_in_worker
from dicomflow.jobs._executor import JobSink, _context, _pid_alive, job_workdir

if TYPE_CHECKING:
    from celery import Celery

LOGGER = logging.getLogger(__name__)
TASK = "dicomflow.run_job"
QUEUE = "dicomflow.jobs"
_ORPHAN_CHECK = 0.5  # seconds between an attempt process's looks at its parent


def celery_app(settings: Settings) -> Celery:
    """The Celery application of ``settings.jobs.broker_url`` (no result backend: results live in the
    index)."""
    from celery import Celery

    app = Celery("dicomflow", broker=settings.jobs.broker_url, set_as_current=False)
    app.conf.update(
        task_default_queue=QUEUE,
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        task_ignore_result=True,
        worker_prefetch_multiplier=1,
        worker_enable_remote_control=False,
        worker_hijack_root_logger=False,
        broker_connection_retry_on_startup=True,
        broker_connection_timeout=5,
    )
    return app


class CeleryExecutor:
    """The server's side: announces due jobs on the broker and requeues those whose worker stopped beating;
    runs none itself (``busy`` is always 0)."""

    def __init__(self, settings: Settings, engine: Engine) -> None:
        self.settings = settings
        self.engine = engine
        self._app: Celery | None = None
        self._announced: dict[int, tuple[int, float]] = {}  # job id -> (attempts, when)
        self._last_sweep = 0.0

    @property
    def busy(self) -> int:
        """Attempts running here: none (they run in ``dicomflow worker`` processes)."""
        return 0

    def _celery(self) -> Celery:
        if self._app is None:
            self._app = celery_app(self.settings)
        return self._app

    def recover(self) -> list[int]:
        """Requeue running jobs whose heartbeat is ``processing.stale_after`` old (their worker stopped)."""
        stale = utcnow() - timedelta(seconds=self.settings.processing.stale_after)
        with writing(self.engine) as conn:
            ids = requeue_lost(conn, stale)
        if ids:
            LOGGER.warning("requeued %d job(s) whose worker stopped beating: %s", len(ids), ids)
        return ids

    def step(self) -> int:
        """Requeue lost jobs (every ``processing.heartbeat`` seconds), announce due jobs not announced for
        their current attempt; returns how many messages were sent."""
        now = time.monotonic()
        if now - self._last_sweep >= self.settings.processing.heartbeat:
            self._last_sweep = now
            self.recover()
        with reading(self.engine) as conn:
            due = due_jobs(conn, utcnow())
        announced: dict[int, tuple[int, float]] = {}
        fresh, overdue = [], []
        for job_id, attempts in due:
            previous = self._announced.get(job_id)
            if previous is None or previous[0] != attempts:
                fresh.append(job_id)  # new, or due again for another attempt
                announced[job_id] = (attempts, now)
                continue
            announced[job_id] = previous
            if now - previous[1] >= self.settings.jobs.announce_again:
                overdue.append(job_id)
        if overdue and self._queued_messages() == 0:
            LOGGER.warning("announcing %d due job(s) again (messages lost): %s", len(overdue), overdue)
            fresh += overdue
            announced.update({job_id: (announced[job_id][0], now) for job_id in overdue})
        for job_id in fresh:
            self._celery().send_task(TASK, args=[job_id], queue=QUEUE)
        self._announced = announced  # jobs no longer due are forgotten
        return len(fresh)

    def _queued_messages(self) -> int:
        with self._celery().connection_for_write() as connection:
            channel: Any = connection.default_channel  # the stub's StdChannel lacks queue_declare
            return int(channel.queue_declare(queue=QUEUE, durable=True).message_count)

    def stop(self) -> None:
        """Close the broker connections."""
        if self._app is not None:
            self._app.close()
            self._app = None


class CeleryWorker:
    """One ``dicomflow worker``: a Celery worker (thread pool of ``processing.workers``) whose task claims
    the named job in the index and runs it like the embedded executor; ``sink`` (the flow) files outcomes.
    """

    def __init__(self, settings: Settings, engine: Engine, sink: JobSink) -> None:
        self.settings = settings
        self.engine = engine
        self.sink = sink
        self.worker_id = f"{settings.cluster.node_id}:worker:{os.getpid()}"
        self.concurrency = max(1, settings.processing.workers)
        self._settings_json = settings.model_dump_json()
        self._stopping = threading.Event()
        self._filing = threading.Lock()  # one outcome filed at a time (the flow's ingest is shared)
        self._running: set[int] = set()  # claimed here, beaten by one thread (even while an attempt starts)
        self._running_lock = threading.Lock()
        self._context = _context()
        self._context.set_forkserver_preload(
            ["dicomflow.jobs._execute", "dicomflow.jobs._celery", "dicomflow.pipelines.builtin"]
        )

    def run(self) -> int:
        """Serve until SIGTERM (or SIGINT); returns the exit status."""
        from multiprocessing import forkserver

        from celery import signals

        app = celery_app(self.settings)
        app.task(name=TASK, acks_late=True, reject_on_worker_lost=True)(self.run_job)
        signals.worker_shutting_down.connect(self._shutting_down, weak=False)
        LOGGER.info("worker %s: %d job(s) at once, broker %s", self.worker_id, self.concurrency, _safe(app))
        worker = app.Worker(
            hostname=f"dicomflow-{os.getpid()}@{self.settings.cluster.node_id}",
            pool="threads",
            concurrency=self.concurrency,
            queues=[QUEUE],
            loglevel="INFO",
            quiet=True,
            without_gossip=True,
            without_mingle=True,
            without_heartbeat=True,
        )
        forkserver.ensure_running()  # started now, not on the first job
        threading.Thread(target=self._beat_while_serving, name="heartbeat", daemon=True).start()
        worker.start()
        return int(worker.exitcode or 0)

    def _shutting_down(self, *args: Any, **kwargs: Any) -> None:
        LOGGER.info("worker %s stopping: running attempts go back to the queue", self.worker_id)
        self._stopping.set()

    def run_job(self, job_id: int) -> str:
        """The task: claim job ``job_id`` and run an attempt of it; a message for a job someone else has
        (or that ended) is dropped. Returns what happened, for the worker's log."""
        if self._stopping.is_set():  # received while shutting down: back to the broker for another worker
            from celery.exceptions import Reject

            raise Reject("the worker is stopping", requeue=True)
        with writing(self.engine) as conn:
            job = claim_job(conn, self.worker_id, utcnow(), job_id=job_id)
        if job is None:
            LOGGER.info("job %d is not due (claimed elsewhere or ended): message dropped", job_id)
            return "dropped"
        with self._running_lock:
            self._running.add(job.id)
        try:
            return self._attempt(job)
        finally:
            with self._running_lock:
                self._running.discard(job.id)

    def _attempt(self, job: JobRecord) -> str:
        workdir = job_workdir(self.settings, job.id, job.attempts)
        workdir.mkdir(parents=True, exist_ok=True)
        process = self._context.Process(
            target=_run_orphan_safe,
            args=(self._settings_json, job.id, str(workdir), os.getpid()),
            name=f"dicomflow-job-{job.id}",
        )
        process.start()
        LOGGER.info(
            "job %d (%s) attempt %d started in process %s", job.id, job.report_type, job.attempts, process.pid
        )
        deadline = time.monotonic() + job.timeout
        timed_out = False
        while True:
            process.join(0.2)
            if not process.is_alive():
                break
            if self._stopping.is_set():
                process.kill()
                process.join(5)
                process.close()
                with writing(self.engine) as conn:
                    release_job(conn, job.id, self.worker_id, job.attempts, "resumed: its worker was stopped")
                return "released"
            if time.monotonic() > deadline:
                LOGGER.error("job %d exceeded its timeout; stopping it", job.id)
                process.kill()
                process.join(5)
                timed_out = True
                break
        exit_code = process.exitcode
        process.close()
        if not self._still_ours(job):
            LOGGER.warning(
                "job %d attempt %d was requeued meanwhile; its outcome is not filed", job.id, job.attempts
            )
            return "superseded"
        with self._filing:
            self.sink.job_ended(job.id, workdir, exit_code, timed_out=timed_out)
        return f"ended with exit code {exit_code}"

    def _beat_while_serving(self) -> None:
        while not self._stopping.wait(self.settings.processing.heartbeat):
            with self._running_lock:
                running = list(self._running)
            if not running:
                continue
            try:
                with writing(self.engine) as conn:
                    heartbeat(conn, running, utcnow())
            except Exception:  # the index may be away a moment; the next beat tries again
                LOGGER.exception("heartbeat of jobs %s failed", running)

    def _still_ours(self, job: JobRecord) -> bool:
        with reading(self.engine) as conn:
            now = job_row(conn, job.id)
        return (
            now.state is JobState.RUNNING
            and now.worker == self.worker_id[:128]
            and now.attempts == job.attempts
        )


def _safe(app: Celery) -> str:
    """The broker URL without its password."""
    with app.connection_for_write() as connection:
        return str(connection.as_uri())


def _run_orphan_safe(settings_json: str, job_id: int, workdir: str, worker_pid: int) -> None:
    """An attempt process: :func:`run_in_worker`, ended when the worker that started it is gone (killed), so
    no orphan runs on. (Its parent is the forkserver, which outlives the worker while any child lives.)"""
    _watch(lambda: _gone(worker_pid))
    run_in_worker(settings_json, job_id, workdir)


def _gone(pid: int) -> bool:
    """The process ended (a zombie waiting for its parent counts as ended)."""
    if not _pid_alive(pid):
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False  # no procfs here: alive as far as we can tell
    return stat.rsplit(") ", 1)[-1].startswith("Z")


def _watch(orphaned: Callable[[], bool]) -> None:
    def loop() -> None:
        while not orphaned():
            time.sleep(_ORPHAN_CHECK)
        os._exit(EXIT_ERROR)

    threading.Thread(target=loop, name="orphan-watch", daemon=True).start()
