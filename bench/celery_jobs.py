"""Executor benchmark: ``ct_volumetry`` jobs per minute with the embedded executor (one worker process of
the server, the default) and with 1 and 2 ``dicomflow worker`` processes of the Celery executor (one job
at a time each), in the same run.

    .venv/bin/python bench/celery_jobs.py                       # 8 studies per run, 5 reps (~10 min)
    .venv/bin/python bench/celery_jobs.py --studies 4 --reps 2  # a quick look

One run: a fresh data directory holding ``--studies`` demo CT phantoms (``dicomflow.demo``, ingested here)
whose ``ct_volumetry`` jobs are queued at once; then the executor under test runs them, driven by the
processing engine of this process (the loop ``dicomflow serve`` runs), on the product's default settings:
``jobs.executor = "embedded"``, or ``"celery"`` with 1 or 2 ``dicomflow worker`` subprocesses started (and
ready) before, on a private ``redis-server`` on loopback that the script starts and stops. Both executors
are measured warm: their forkserver (which preloads the pipelines, once per server or worker) runs before
the first job. Jobs per minute are jobs / (last end - first start), from the index's own timestamps. Each
rep runs the three executors one after the other (interleaved, so a change of load hits all three);
printed: median and range per executor, and the ratio of medians to the embedded executor. Exit status 0
when every job of every run succeeded.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from benchutil import free_port, out
from pydicom.dataset import Dataset

ROOT = Path(__file__).resolve().parents[1]
DICOMFLOW = [sys.executable, "-m", "dicomflow"]
SOURCE_AE = "kp-bench"


class Redis:
    """A private ``redis-server`` on loopback, without persistence."""

    def __init__(self, work: Path) -> None:
        self.port = free_port()
        self.process = subprocess.Popen(
            ["redis-server", "--bind", "127.0.0.1", "--port", str(self.port), "--save", "",
             "--appendonly", "no", "--dir", str(work), "--logfile", str(work / "redis.log")],
            stdin=subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.monotonic() + 20
        while True:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1) as conn:
                    conn.sendall(b"PING\r\n")
                    if conn.recv(16).startswith(b"+PONG"):
                        return
            except OSError:
                pass
            if time.monotonic() > deadline or self.process.poll() is not None:
                raise RuntimeError("redis-server did not start")
            time.sleep(0.1)

    def url(self, db: int) -> str:
        return f"redis://127.0.0.1:{self.port}/{db}"

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(10)


def phantoms(count: int, slices: int) -> list[list[Dataset]]:
    from dicomflow.demo import make_ct_phantom

    return [make_ct_phantom(slices=slices, patient_id=f"BENCH{n:03d}", seed=n).datasets for n in range(count)]


def prepare(data: Path, studies: list[list[Dataset]], jobs_settings: dict[str, str]) -> None:
    """A data directory with the studies ingested and their ct_volumetry jobs queued (nothing runs yet)."""
    from io import BytesIO

    from dicomflow.config import Settings
    from dicomflow.index import catalog, migrate, reading, writing
    from dicomflow.index.studies import session_of_acquisition
    from dicomflow.ingest import Source, open_ingestor
    from dicomflow.jobs import ProcessingEngine

    data.mkdir(parents=True)
    (data / "dicomflow.toml").write_text(
        "[jobs]\n" + "".join(f"{key} = {json.dumps(value)}\n" for key, value in jobs_settings.items())
    )
    settings = Settings(data_dir=data)
    ingestor = open_ingestor(settings)
    try:
        migrate(ingestor.engine)
        with writing(ingestor.engine) as conn:
            catalog.create_project(conn, "bench", "default")
        source = Source("import", "bench", called_ae=SOURCE_AE)
        acquisitions = set()
        for datasets in studies:
            for ds in datasets:
                buffer = BytesIO()
                ds.save_as(buffer, enforce_file_format=True)
                acquisitions.add(ingestor.ingest_bytes([buffer.getvalue()], source).acquisition_id)
        with reading(ingestor.engine) as conn:
            sessions = sorted({session_of_acquisition(conn, a) for a in acquisitions})
        processing = ProcessingEngine(settings, ingestor.engine)
        try:
            processing.flow.request(sessions, ["ct_volumetry"], actor="bench")
        finally:
            processing.stop()
    finally:
        ingestor.close()


class Worker:
    """``dicomflow worker`` (one job at a time) in its own process group."""

    def __init__(self, data: Path, name: str) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("DICOMFLOW_")}
        env["DICOMFLOW_CLUSTER__NODE_ID"] = name
        self.log_path = data.parent / f"{data.name}-{name}.log"
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                [*DICOMFLOW, "worker", "--data-dir", str(data), "--concurrency", "1"],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,
            )

    def wait_ready(self) -> None:
        deadline = time.monotonic() + 120
        while " ready." not in self.log_path.read_text(errors="replace"):
            if time.monotonic() > deadline or self.process.poll() is not None:
                raise RuntimeError(f"dicomflow worker did not start: {self.log_path.read_text()}")
            time.sleep(0.1)

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(10)


def run(data: Path, workers: int, count: int, timeout: float) -> float:
    """Run the queued jobs of ``data`` (``workers`` Celery workers, 0 = embedded); jobs per minute."""
    from multiprocessing import forkserver

    from dicomflow.config import Settings
    from dicomflow.flow import JobState
    from dicomflow.index import create_index_engine, reading
    from dicomflow.index.jobs import list_jobs
    from dicomflow.jobs import ProcessingEngine

    settings = Settings(data_dir=data)
    started = [Worker(data, f"bench-{n}") for n in range(workers)]
    engine = create_index_engine(settings.index_url)
    processing = ProcessingEngine(settings, engine)
    try:
        for worker in started:
            worker.wait_ready()  # a worker starts its forkserver before it says ready
        forkserver.ensure_running()  # and so, before measuring, does the embedded one (a server: once)
        processing.start()
        deadline = time.monotonic() + timeout
        ended = (JobState.SUCCEEDED, JobState.FAILED)
        while True:
            with reading(engine) as conn:
                jobs = list_jobs(conn)
            if len(jobs) == count and all(job.state in ended for job in jobs):
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"jobs not ended after {timeout} s: {[job.state for job in jobs]}")
            time.sleep(0.5)
    finally:
        processing.stop()
        for worker in started:
            worker.stop()
        engine.dispose()
    failed = [(job.id, job.error) for job in jobs if job.state is not JobState.SUCCEEDED]
    if failed:
        raise RuntimeError(f"jobs failed: {failed}")
    first = min(job.started_at for job in jobs if job.started_at is not None)
    last = max(job.finished_at for job in jobs if job.finished_at is not None)
    return len(jobs) / (last - first).total_seconds() * 60


def summary(name: str, rates: Sequence[float], reference: float | None) -> str:
    median = statistics.median(rates)
    line = (
        f"{name}: median {median:.1f} jobs/min (range {min(rates):.1f}-{max(rates):.1f}, {len(rates)} reps)"
    )
    return line if reference is None else f"{line} = {median / reference:.2f}x embedded"


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--studies", type=int, default=8, help="studies (jobs) per run (default 8)")
    parser.add_argument("--slices", type=int, default=60, help="slices of each phantom (128x128, default 60)")
    parser.add_argument("--reps", type=int, default=5, help="repetitions of each executor (default 5)")
    parser.add_argument("--timeout", type=float, default=1800, help="seconds a run may take (default 1800)")
    args = parser.parse_args()
    load = os.getloadavg()
    executors = {"embedded (1 worker process)": 0, "celery, 1 worker": 1, "celery, 2 workers": 2}
    rates: dict[str, list[float]] = {name: [] for name in executors}
    with tempfile.TemporaryDirectory(prefix="dicomflow-celery-bench-") as tmp:
        work = Path(tmp)
        broker = Redis(work)
        try:
            studies = phantoms(args.studies, args.slices)
            db = 0
            for rep in range(1, args.reps + 1):
                for name, workers in executors.items():
                    data = work / f"rep{rep}-w{workers}"
                    jobs = {
                        "executor": "celery" if workers else "embedded",
                        "broker_url": broker.url(db % 16),
                    }
                    db += 1
                    prepare(data, studies, jobs)
                    rate = run(data, workers, args.studies, args.timeout)
                    rates[name].append(rate)
                    out(f"rep {rep}, {name}: {rate:.1f} jobs/min")
        finally:
            broker.stop()
    out(
        f"machine: {os.cpu_count()} cores, load average at start {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}; "
        f"{args.studies} ct_volumetry jobs per run ({args.slices}-slice 128x128 CT phantoms), "
        f"{args.reps} rep(s), executors interleaved"
    )
    reference = statistics.median(rates["embedded (1 worker process)"])
    for name, values in rates.items():
        out(summary(name, values, None if name.startswith("embedded") else reference))
    return 0


if __name__ == "__main__":
    sys.exit(main())
