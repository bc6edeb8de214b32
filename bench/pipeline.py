"""Processing benchmark: how soon a study received over DICOM starts processing, and how many
``ct_volumetry`` jobs a server finishes per minute with 1 and 2 workers.

    .venv/bin/python bench/pipeline.py                  # settle 10 s, 20 studies, workers 1 and 2
    .venv/bin/python bench/pipeline.py --settle 2 --studies 6 --workers 1

Everything runs on loopback: ``dicomflow serve`` in a temp dir, DCMTK ``storescu`` as the sender, the
demo CT phantom (``dicomflow.demo``) as data. Figures come from the index's own timestamps (stage history,
job start and end), so polling does not blur them.
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
from benchutil import free_port, out

from dicomflow.demo import make_ct_phantom

ROOT = Path(__file__).resolve().parents[1]
DICOMFLOW = [sys.executable, "-m", "dicomflow"]


class Server:
    """``dicomflow serve`` with a token, a project ``bench`` and a rule running ``ct_volumetry``."""

    def __init__(self, work: Path, settle: float, workers: int) -> None:
        self.data = Path(tempfile.mkdtemp(prefix=f"data-w{workers}-", dir=work))
        self.dimse, self.http_port = free_port(), free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("DICOMFLOW_")}
        env |= {
            "DICOMFLOW_PROCESSING__SETTLE_TIME": str(settle),
            "DICOMFLOW_PROCESSING__WORKERS": str(workers),
            "DICOMFLOW_PROCESSING__POLL_INTERVAL": "0.2",
        }
        self.env = env
        self.log = (self.data.parent / f"{self.data.name}.log").open("wb")
        argv = [*DICOMFLOW, "serve", "--data-dir", str(self.data), "--dimse-port", str(self.dimse)]
        self.process = subprocess.Popen(
            [*argv, "--http-port", str(self.http_port)],
            stdout=self.log,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
        try:
            self._setup()
        except BaseException:
            self.stop()
            raise

    def _setup(self) -> None:
        self._wait_ready()
        self.cli("users", "create", "bench@example.org", "--password", "x", "--role", "admin")
        token = self.cli("tokens", "create", "--user", "bench@example.org").strip()
        self.client = httpx.Client(
            base_url=f"http://127.0.0.1:{self.http_port}/api/v1",
            headers={"Authorization": f"Bearer {token}"},
            trust_env=False,
            timeout=30,
        )
        self.client.post("/projects", json={"label": "bench"}).raise_for_status()
        self.client.post("/projects/bench/rules", json={"report_type": "ct_volumetry"}).raise_for_status()

    def cli(self, *args: str) -> str:
        done = subprocess.run(
            [*DICOMFLOW, *args, "--data-dir", str(self.data)],
            capture_output=True,
            text=True,
            env=self.env,
        )
        if done.returncode:
            raise RuntimeError(f"dicomflow {' '.join(args)} failed: {done.stderr}")
        return done.stdout

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"http://127.0.0.1:{self.http_port}/health", trust_env=False).is_success:
                    return
            except httpx.HTTPError:
                time.sleep(0.2)
        raise RuntimeError("dicomflow serve did not start")

    def studies(self) -> list[dict[str, Any]]:
        return list(self.client.get("/studies").json())

    def stop(self) -> None:
        os.killpg(self.process.pid, signal.SIGTERM)
        self.process.wait(60)
        self.log.close()


def write_studies(folder: Path, count: int, slices: int) -> list[Path]:
    folders = []
    for n in range(count):
        phantom = make_ct_phantom(slices=slices, patient_id=f"BENCH{n:03d}", seed=n)
        target = folder / f"study{n:03d}"
        target.mkdir(parents=True)
        for i, ds in enumerate(phantom.datasets):
            ds.save_as(target / f"{i:04d}.dcm", enforce_file_format=True)
        folders.append(target)
    return folders


def storescu(port: int, folder: Path) -> float:
    """Send a folder; returns the wall-clock time the last response arrived."""
    subprocess.run(
        ["storescu", "-aec", "kp-bench", "+sd", "127.0.0.1", str(port), str(folder)],
        check=True,
        capture_output=True,
        env={**os.environ, "TCP_NODELAY": "1"},
    )
    return time.time()


def wait_all(server: Server, count: int, timeout: float) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        studies = server.studies()
        if len(studies) == count and all(s["stage"] in ("Finished", "Failed") for s in studies):
            return studies
        time.sleep(0.5)
    raise RuntimeError(f"not all {count} studies ended within {timeout} s")


def ts(value: str) -> float:
    return datetime.fromisoformat(value).timestamp()


def readiness(work: Path, folders: list[Path], settle: float) -> list[float]:
    """Seconds from the last acknowledged instance to the study entering Processing, per study."""
    server = Server(work, settle, workers=1)
    try:
        acked = {}
        for folder in folders:
            acked[folder.name] = storescu(server.dimse, folder)
            time.sleep(0.2)
        studies = wait_all(server, len(folders), 600)
    finally:
        server.stop()
    by_patient = {s["subject"]: s for s in studies}
    delays = []
    for n, folder in enumerate(folders):
        study = by_patient[f"BENCH{n:03d}"]
        processing = next(h for h in study["history"] if h["stage"] == "Processing")
        delays.append(ts(processing["at"]) - acked[folder.name])
    return delays


def throughput(work: Path, folders: list[Path], workers: int) -> float:
    """ct_volumetry jobs per minute: jobs finished over the span from the first start to the last end."""
    server = Server(work, 0.5, workers)
    try:
        for folder in folders:
            storescu(server.dimse, folder)
        studies = wait_all(server, len(folders), 1800)
    finally:
        server.stop()
    jobs = [j for s in studies for j in s["jobs"]]
    failed = [j for j in jobs if j["state"] != "succeeded"]
    if failed:
        raise RuntimeError(f"jobs failed: {failed}")
    span = max(ts(j["finished_at"]) for j in jobs) - min(ts(j["started_at"]) for j in jobs)
    return len(jobs) / span * 60


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--settle", type=float, default=10.0, help="settle time in seconds (default 10)")
    parser.add_argument(
        "--studies", type=int, default=20, help="studies for the throughput runs (default 20)"
    )
    parser.add_argument("--slices", type=int, default=60, help="slices of each phantom (128x128, default 60)")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2], help="worker counts (default 1 2)")
    parser.add_argument("--readiness-studies", type=int, default=3, help="studies for the latency run")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="dicomflow-pipeline-bench-") as tmp:
        work = Path(tmp)
        folders = write_studies(work / "studies", max(args.studies, args.readiness_studies), args.slices)
        delays = readiness(work, folders[: args.readiness_studies], args.settle)
        extra = [d - args.settle for d in delays]
        out(f"machine: {os.cpu_count()} cores; phantom: {args.slices} slices 128x128 CT per study")
        out(
            f"last instance acknowledged -> Processing (settle {args.settle:g} s): "
            f"median {statistics.median(delays):.2f} s, max {max(delays):.2f} s "
            f"(settle + {statistics.median(extra):.2f} s median, + {max(extra):.2f} s max)"
        )
        rates = {}
        for workers in args.workers:
            rates[workers] = throughput(work, folders[: args.studies], workers)
            out(
                f"ct_volumetry, {args.studies} studies, {workers} worker(s): {rates[workers]:.1f} jobs/minute"
            )
        if 1 in rates and len(rates) > 1:
            for workers, rate in rates.items():
                if workers != 1:
                    out(f"speed-up {workers} workers / 1 worker: {rate / rates[1]:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
