"""The Celery executor with real parts: Debian's ``redis-server`` as the broker, ``dicomflow worker``
subprocesses, and the processing engine of an installation set to ``jobs.executor = "celery"`` (toy report
types from tests/plugins). The jobs table stays the truth: workers claim rows, the engine requeues lost ones.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
import redis
from pydicom.dataset import Dataset

from dicomflow.config import JobExecutor, Settings
from dicomflow.errors import NotFound
from dicomflow.flow import JobState
from dicomflow.index import migrate, reading, utcnow, writing
from dicomflow.index.jobs import JobRecord, claim_job, job_row, jobs_of_study
from dicomflow.index.results import results_of_study
from dicomflow.index.rules import add_rule
from dicomflow.index.studies import StudyInfo, StudyVersion, find_study, session_of_acquisition, study_row
from dicomflow.ingest import Source, open_ingestor
from dicomflow.jobs import CeleryExecutor, CeleryWorker, ProcessingEngine
from dicomflow.jobs._celery import QUEUE
from factories import DicomflowServer, create_project, make_study, server_env, to_bytes, write_files
from waiting import wait_until

PLUGIN = str(Path(__file__).parents[1] / "plugins" / "toy_report_types.py")
IMPORT = Source("import", "test", called_ae="kp-proj")


def _toml(value: Any) -> str:
    return json.dumps(value)  # strings, numbers and lists of strings: JSON is TOML here


class Worker:
    """``dicomflow worker`` in its own process group, on node ``node_id``."""

    def __init__(self, data_dir: Path, node_id: str) -> None:
        self.log = data_dir.parent / f"worker-{node_id}.log"
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "dicomflow", "worker", "--data-dir", str(data_dir)],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=server_env(DICOMFLOW_CLUSTER__NODE_ID=node_id),
                start_new_session=True,
            )
        self.worker_id = f"{node_id}:worker:{self.process.pid}"

    def wait_ready(self) -> None:
        def ready() -> bool:
            assert self.process.poll() is None, self.log.read_text()
            return " ready." in self.log.read_text()

        wait_until(ready, timeout=60, message=lambda: self.log.read_text())

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)


class Installation:
    """A data directory whose settings (its dicomflow.toml, read by the workers too) choose the Celery
    executor on ``broker_url``; the processing engine runs here, the jobs in :class:`Worker` processes."""

    def __init__(self, data_dir: Path, broker_url: str, seconds: float = 2.0) -> None:
        data_dir.mkdir(parents=True)
        self.data_dir = data_dir
        self.marker = data_dir.parent / "started"
        (data_dir / "dicomflow.toml").write_text(
            "[storage]\nfsync = false\n"
            "[processing]\n"
            f"plugins = [{_toml(PLUGIN)}]\n"
            "poll_interval = 0.05\nretry_delay = 0.05\nsettle_time = 0.0\n"
            "heartbeat = 0.2\nstale_after = 3.0\nmax_attempts = 2\nworkers = 1\n"
            "[processing.options.toy_slow]\n"
            f"started_marker = {_toml(str(self.marker))}\nseconds = {seconds}\n"
            f'[jobs]\nexecutor = "celery"\nbroker_url = {_toml(broker_url)}\n'
        )
        self.settings = Settings(data_dir=data_dir)
        self.ingestor = open_ingestor(self.settings)
        self.engine = self.ingestor.engine
        migrate(self.engine)
        self.project = create_project(self.engine, "proj")
        self.processing = ProcessingEngine(self.settings, self.engine)
        self.workers: list[Worker] = []

    def start_workers(self, count: int) -> list[Worker]:
        started = [Worker(self.data_dir, f"host-{len(self.workers) + i}") for i in range(count)]
        self.workers += started
        for worker in started:
            worker.wait_ready()
        return started

    def request(self, datasets: Sequence[Dataset], *report_types: str) -> list[int]:
        """Ingest one study and request ``report_types`` on it; returns the study version ids."""
        acquisitions = {self.ingestor.ingest_bytes([to_bytes(ds)], IMPORT).acquisition_id for ds in datasets}
        with reading(self.engine) as conn:
            sessions = sorted({session_of_acquisition(conn, a) for a in acquisitions})
        return self.processing.flow.request(sessions, report_types, actor="test")

    def wait_ended(self, study_id: int, timeout: float = 60) -> StudyVersion:
        def ended() -> StudyVersion | None:
            with reading(self.engine) as conn:
                study = study_row(conn, study_id)
            return study if study.stage in ("Finished", "Failed") else None

        return wait_until(ended, timeout=timeout, interval=0.1, message=self._logs)

    def wait_started(self) -> list[int]:
        """Wait until an attempt of ``toy_slow`` has written its pid; the pids written."""

        def pids() -> list[int]:
            text = self.marker.read_text() if self.marker.exists() else ""
            return [int(pid) for pid in text.split()]  # the file exists a moment before its line does

        return wait_until(pids, timeout=60, message=self._logs)

    def jobs(self, study_id: int) -> list[JobRecord]:
        with reading(self.engine) as conn:
            return jobs_of_study(conn, study_id)

    def _logs(self) -> str:
        return "\n".join(f"--- {w.log.name}\n{w.log.read_text()}" for w in self.workers)

    def close(self) -> None:
        self.processing.stop()
        for worker in self.workers:
            worker.stop()
        self.ingestor.close()


@pytest.fixture
def install(tmp_path: Path, redis_url: str) -> Iterator[Installation]:
    installation = Installation(tmp_path / "data", redis_url)
    yield installation
    installation.close()


def test_the_server_runs_no_job_and_two_workers_share_the_jobs_to_finished(install: Installation) -> None:
    assert isinstance(install.processing.executor, CeleryExecutor)
    workers = install.start_workers(2)
    studies = [install.request(make_study(series=1, instances=2), "toy_slow")[0] for _ in range(2)]
    studies.append(install.request(make_study(series=1, instances=3), "toy_count")[0])
    install.processing.start()  # after the requests (each promotes its study itself)

    ended = [install.wait_ended(study_id) for study_id in studies]
    assert [study.stage for study in ended] == ["Finished"] * 3
    jobs = [job for study_id in studies for job in install.jobs(study_id)]
    assert [(job.state, job.attempts) for job in jobs] == [(JobState.SUCCEEDED, 1)] * 3
    assert {jobs[0].worker, jobs[1].worker} == {w.worker_id for w in workers}  # the slow ones, side by side
    assert install.processing.executor.busy == 0
    with reading(install.engine) as conn:
        results = {r.name: r for r in results_of_study(conn, studies[2])}
    assert (install.data_dir / results["count.csv"].path).read_text().splitlines()[1].endswith(",3")


def test_a_worker_killed_mid_job_leaves_a_job_another_worker_finishes(install: Installation) -> None:
    workers = install.start_workers(2)
    (study_id,) = install.request(make_study(series=1, instances=2), "toy_slow")
    install.processing.start()

    install.wait_started()
    (running,) = install.jobs(study_id)
    victim = next(w for w in workers if w.worker_id == running.worker)
    survivor = next(w for w in workers if w is not victim)
    os.killpg(victim.process.pid, signal.SIGKILL)  # the worker and its attempt's process group
    victim.process.wait(10)

    study = install.wait_ended(study_id)
    assert study.stage == "Finished"
    (job,) = install.jobs(study_id)
    assert (job.state, job.attempts, job.worker) == (JobState.SUCCEEDED, 2, survivor.worker_id)
    assert len(install.marker.read_text().split()) == 2  # two attempts started


def test_an_attempt_orphaned_by_its_killed_worker_exits(tmp_path: Path, redis_url: str) -> None:
    install = Installation(tmp_path / "data", redis_url, seconds=60)
    try:
        (worker,) = install.start_workers(1)
        install.request(make_study(series=1, instances=2), "toy_slow")
        install.processing.start()
        (attempt,) = install.wait_started()

        os.kill(worker.process.pid, signal.SIGKILL)  # the worker alone, not its attempt's process
        worker.process.wait(10)

        wait_until(lambda: not _alive(attempt), timeout=10, message=f"attempt process {attempt} still runs")
    finally:
        install.close()


def test_sigterm_stops_a_worker_and_puts_its_running_job_back_in_the_queue(
    tmp_path: Path, redis_url: str
) -> None:
    install = Installation(tmp_path / "data", redis_url, seconds=60)
    try:
        (worker,) = install.start_workers(1)
        (study_id,) = install.request(make_study(series=1, instances=2), "toy_slow")
        install.processing.start()
        (attempt,) = install.wait_started()

        worker.process.send_signal(signal.SIGTERM)
        assert worker.process.wait(20) == 0, worker.log.read_text()

        (job,) = install.jobs(study_id)
        assert (job.state, job.attempts, job.error) == (JobState.QUEUED, 1, "resumed: its worker was stopped")
        assert not _alive(attempt)
    finally:
        install.close()


def test_a_duplicate_or_stale_message_is_dropped(install: Installation) -> None:
    (study_id,) = install.request(make_study(series=1, instances=2), "toy_count")
    (job,) = install.jobs(study_id)
    worker = CeleryWorker(install.settings, install.engine, install.processing.flow)
    with writing(install.engine) as conn:
        assert claim_job(conn, "elsewhere:worker:1", utcnow(), job_id=job.id) is not None

    assert worker.run_job(job.id) == "dropped"  # running elsewhere
    assert worker.run_job(job.id + 1000) == "dropped"  # no such job
    with reading(install.engine) as conn:
        assert job_row(conn, job.id).worker == "elsewhere:worker:1"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as stat:  # a zombie is gone too
        return stat.read().split(") ")[1][0] != "Z"


def test_a_due_job_whose_message_was_lost_is_announced_again_once_the_queue_is_empty(
    install: Installation, redis_url: str
) -> None:
    settings = install.settings.with_overrides(**{"jobs.announce_again": 0.2})
    executor = CeleryExecutor(settings, install.engine)
    broker = redis.Redis.from_url(redis_url)
    try:
        install.request(make_study(series=1, instances=2), "toy_count")
        assert executor.step() == 1
        assert executor.step() == 0  # announced for this attempt already
        time.sleep(0.3)
        assert executor.step() == 0  # its message still waits in the queue
        assert broker.llen(QUEUE) == 1

        broker.flushdb()  # the broker lost it (restarted without persistence)
        assert executor.step() == 1
        assert broker.llen(QUEUE) == 1
    finally:
        executor.stop()
        broker.close()


def test_the_executor_is_chosen_by_dicomflow_jobs_executor(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("DICOMFLOW_JOBS__EXECUTOR", raising=False)
    assert Settings(data_dir=tmp_path).jobs.executor is JobExecutor.EMBEDDED
    monkeypatch.setenv("DICOMFLOW_JOBS__EXECUTOR", "celery")
    monkeypatch.setenv("DICOMFLOW_JOBS__BROKER_URL", "redis://127.0.0.1:6390/3")
    settings = Settings(data_dir=tmp_path)
    assert (settings.jobs.executor, settings.jobs.broker_url) == (
        JobExecutor.CELERY,
        "redis://127.0.0.1:6390/3",
    )


def test_dicomflow_serve_with_the_celery_executor_runs_no_job_itself(
    tmp_path: Path, redis_url: str, free_port: Callable[[], int]
) -> None:
    install = Installation(tmp_path / "data", redis_url)
    server = DicomflowServer(install.data_dir, free_port(), free_port())  # its settings: the data dir's TOML
    try:
        with writing(install.engine) as conn:
            add_rule(conn, install.project.id, "toy_count", {})
        (worker,) = install.start_workers(1)
        server.start()
        datasets = make_study(series=1, instances=3)
        files = write_files(datasets, tmp_path / "send")
        port = str(server.dimse_port)
        subprocess.run(
            ["storescu", "-aec", "kp-proj", "127.0.0.1", port, *map(str, files)], check=True, timeout=60
        )

        def finished() -> StudyInfo | None:
            with reading(install.engine) as conn, contextlib.suppress(NotFound):  # not tracked yet
                study = find_study(conn, datasets[0].StudyInstanceUID)
                return study if study.stage == "Finished" else None
            return None

        study = wait_until(finished, timeout=60, interval=0.2, message=install._logs)
        assert [(job.state, job.worker) for job in install.jobs(study.id)] == [
            (JobState.SUCCEEDED, worker.worker_id)
        ]
        assert server.process is not None
        assert [cmd for cmd in _descendants(server.process.pid) if "forkserver" in cmd] == []
    finally:
        server.stop()
        install.close()


def _descendants(pid: int) -> list[str]:
    """The command lines of every process below ``pid``."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(") ", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = [], list(children.get(pid, []))
    while todo:
        child = todo.pop()
        todo += children.get(child, [])
        try:
            found.append(Path(f"/proc/{child}/cmdline").read_bytes().replace(b"\0", b" ").decode())
        except OSError:
            continue
    return found
