"""Past one machine: servers and Celery workers on separate hosts share one PostgreSQL, one Redis and one S3
server, and nothing is lost or done twice when a host dies.

The hosts are network namespaces on a bridge (``hosts.py``): the services listen on the bridge's address,
each ``dicomflow serve`` and ``dicomflow worker`` runs in a namespace of its own with its own data directory
and node id, and the test process joins the bridge to send and read. Every study of project ``lab`` runs
``toy_capture`` (a rule), which files a Secondary Capture back and exports it to ``archive``: DCMTK
``storescp`` writing every object it receives under a name of its own (``+uf``), so that an export sent
twice shows as two files.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from hosts import Namespace, Network
from pydicom import dcmread

from factories import ADMIN_EMAIL, ADMIN_PASSWORD, make_series, make_study, write_files
from waiting import wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.serial]

PLUGINS = Path(__file__).resolve().parents[1] / "plugins"
PROJECT = "lab"
DIMSE_PORT, HTTP_PORT = 11112, 8080
PG_PORT, REDIS_PORT, S3_PORT, ARCHIVE_PORT = 5432, 6379, 9000, 11113
AWS = {"AWS_ACCESS_KEY_ID": "lab", "AWS_SECRET_ACCESS_KEY": "lab-secret", "AWS_DEFAULT_REGION": "us-east-1"}


class Lab:
    """The lab network, its services, and the dicomflow servers and workers started on its hosts."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.net = Network(str(os.getpid()), 150 + int(os.environ.get("PYTEST_XDIST_WORKER", "gw0")[2:] or 0))
        self.me = self.net.attach_test_process()
        self.services = self.net.switch.address
        self.archive = root / "archive"
        self.servers: dict[str, Namespace] = {}
        self.workers: list[Namespace] = []
        self.token = ""
        self._clients: dict[str, httpx.Client] = {}

    # -- services on the switch ---------------------------------------------------------------------------

    def start_services(self) -> None:
        self._postgres()
        self.net.switch.popen(
            [
                "redis-server",
                "--bind",
                self.services,
                "--port",
                str(REDIS_PORT),
                "--save",
                "",
                "--appendonly",
                "no",
                "--protected-mode",
                "no",
            ],
            log=self.root / "redis.log",
        )
        self.net.switch.popen(
            [sys.executable, "-m", "moto.server", "-H", self.services, "-p", str(S3_PORT)],
            log=self.root / "s3.log",
            env={**os.environ, **AWS},
        )
        self.archive.mkdir()
        self.net.switch.popen(
            ["storescp", "-aet", "ARCHIVE", "+uf", "-od", str(self.archive), str(ARCHIVE_PORT)],
            log=self.root / "archive.log",
        )
        import boto3

        s3 = boto3.client("s3", endpoint_url=f"http://{self.services}:{S3_PORT}", **_boto_credentials())
        wait_until(lambda: _reachable(self.services, S3_PORT), timeout=60, interval=0.3, message=self.logs)
        s3.create_bucket(Bucket="dicomflow")
        wait_until(lambda: _reachable(self.services, REDIS_PORT), timeout=30, interval=0.3, message=self.logs)
        wait_until(
            lambda: _reachable(self.services, ARCHIVE_PORT), timeout=30, interval=0.3, message=self.logs
        )

    def _postgres(self) -> None:
        from pg import POSTGRES_USER, postgres_bin_dir

        bin_dir, data = postgres_bin_dir(), self.root / "pg"
        data.mkdir()
        shutil.chown(data, POSTGRES_USER, POSTGRES_USER)
        as_postgres = ["runuser", "-u", POSTGRES_USER, "--"]
        subprocess.run(
            [
                *as_postgres,
                str(bin_dir / "initdb"),
                "-D",
                str(data / "db"),
                "-U",
                POSTGRES_USER,
                "--auth=trust",
                "--no-sync",
            ],
            check=True,
            capture_output=True,
            timeout=120,
            cwd=data,
        )
        with open(data / "db" / "pg_hba.conf", "a") as hba:
            hba.write(f"host all all {self.services.rsplit('.', 1)[0]}.0/24 trust\n")
        options = (
            f"-c listen_addresses={self.services} -c port={PG_PORT} -c unix_socket_directories='' "
            "-c fsync=off -c max_connections=400"
        )
        done = self.net.switch.run(
            [
                *as_postgres,
                str(bin_dir / "pg_ctl"),
                "-D",
                str(data / "db"),
                "-l",
                str(data / "log"),
                "-o",
                options,
                "-w",
                "start",
            ],
            cwd=data,
        )
        assert done.returncode == 0, done.stdout + done.stderr
        done = self.net.switch.run(
            [
                *as_postgres,
                str(bin_dir / "psql"),
                "-h",
                self.services,
                "-p",
                str(PG_PORT),
                "-c",
                "CREATE DATABASE dicomflow",
            ],
            cwd=data,
        )
        assert done.returncode == 0, done.stdout + done.stderr

    # -- dicomflow ----------------------------------------------------------------------------------------

    def env(self, node: str, address: str) -> dict[str, str]:
        env = {name: value for name, value in os.environ.items() if not name.startswith("DICOMFLOW_")}
        env.update(AWS)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(PLUGINS), env.get("PYTHONPATH", "")]))
        env.update(
            {
                "DICOMFLOW_INDEX__URL": f"postgresql+psycopg://postgres@{self.services}:{PG_PORT}/dicomflow",
                "DICOMFLOW_STORAGE__BACKEND": "s3",
                "DICOMFLOW_STORAGE__S3_ENDPOINT_URL": f"http://{self.services}:{S3_PORT}",
                "DICOMFLOW_STORAGE__S3_BUCKET": "dicomflow",
                "DICOMFLOW_STORAGE__FSYNC": "false",
                "DICOMFLOW_JOBS__EXECUTOR": "celery",
                "DICOMFLOW_JOBS__BROKER_URL": f"redis://{self.services}:{REDIS_PORT}/0",
                "DICOMFLOW_JOBS__ANNOUNCE_AGAIN": "5",
                "DICOMFLOW_CLUSTER__NODE_ID": node,
                "DICOMFLOW_CLUSTER__LEASE_SECONDS": "3",
                "DICOMFLOW_DIMSE__HOST": address,
                "DICOMFLOW_DIMSE__WORKERS": "1",
                "DICOMFLOW_HTTP__HOST": address,
                "DICOMFLOW_HTTP__WORKERS": "1",
                "DICOMFLOW_PROCESSING__PLUGINS": json.dumps(["toy_report_types"]),
                "DICOMFLOW_PROCESSING__SETTLE_TIME": "1",
                "DICOMFLOW_PROCESSING__POLL_INTERVAL": "0.3",
                "DICOMFLOW_PROCESSING__HEARTBEAT": "0.5",
                "DICOMFLOW_PROCESSING__STALE_AFTER": "4",
                "DICOMFLOW_PROCESSING__RETRY_DELAY": "0.5",
                "DICOMFLOW_PROCESSING__OPTIONS": json.dumps(
                    {"toy_slow": {"started_marker": str(self.root / "slow-started"), "seconds": 6}}
                ),
                "DICOMFLOW_PROCESSING__NODES": json.dumps(
                    {"archive": {"host": self.services, "port": ARCHIVE_PORT, "ae_title": "ARCHIVE"}}
                ),
            }
        )
        return env

    def data_dir(self, node: str) -> Path:
        return self.root / node / "data"

    def cli(self, host: Namespace, node: str, *args: str) -> str:
        done = host.run(
            [sys.executable, "-m", "dicomflow", *args, "--data-dir", str(self.data_dir(node))],
            env=self.env(node, host.address),
        )
        assert done.returncode == 0, f"dicomflow {' '.join(args)}: {done.stdout}{done.stderr}"
        return done.stdout.strip()

    def start_server(self, node: str) -> Namespace:
        """Start ``dicomflow serve`` as ``node`` on a host of its own (again on the same host after a
        kill) and wait until it is ready."""
        host = self.launch_server(node)
        self.wait_ready(host)
        return host

    def wait_ready(self, host: Namespace) -> None:
        wait_until(lambda: self._healthy(host), timeout=120, interval=0.3, message=self.logs)

    def launch_server(self, node: str) -> Namespace:
        host = self.servers.get(node) or self.net.host(node)
        self.servers[node] = host
        self.data_dir(node).mkdir(parents=True, exist_ok=True)
        host.popen(
            [
                sys.executable,
                "-m",
                "dicomflow",
                "serve",
                "--data-dir",
                str(self.data_dir(node)),
                "--dimse-port",
                str(DIMSE_PORT),
                "--http-port",
                str(HTTP_PORT),
            ],
            log=self.root / f"{node}.log",
            env=self.env(node, host.address),
        )
        return host

    def start_worker(self, node: str, host: Namespace | None = None) -> Namespace:
        host = host or self.net.host(node)
        self.data_dir(node).mkdir(parents=True, exist_ok=True)
        host.popen(
            [
                sys.executable,
                "-m",
                "dicomflow",
                "worker",
                "--data-dir",
                str(self.data_dir(node)),
                "--concurrency",
                "1",
            ],
            log=self.root / f"{node}.log",
            env=self.env(node, host.address),
        )
        return host

    def _healthy(self, host: Namespace) -> bool:
        try:
            return httpx.get(
                f"http://{host.address}:{HTTP_PORT}/ready", timeout=2, trust_env=False
            ).is_success
        except httpx.HTTPError:
            return False

    def api(self, node: str) -> httpx.Client:
        """An HTTP client of a server's native API, with the admin token (one per server)."""
        if node not in self._clients:
            self._clients[node] = httpx.Client(
                base_url=f"http://{self.servers[node].address}:{HTTP_PORT}/api/v1",
                headers={"Authorization": f"Bearer {self.token}"},
                timeout=30,
                trust_env=False,
            )
        return self._clients[node]

    def storescu(self, node: str, files: list[Path], project: str = PROJECT) -> subprocess.Popen[str]:
        """``storescu -v`` of ``files`` to a server (into ``project``), in the background."""
        return subprocess.Popen(
            [
                "storescu",
                "-v",
                "-aec",
                f"kp-{project}",
                self.servers[node].address,
                str(DIMSE_PORT),
                *map(str, files),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )

    def study(self, node: str, uid: str) -> dict[str, Any] | None:
        answer = self.api(node).get(f"/studies/{uid}")
        return answer.json() if answer.status_code == 200 else None

    def archived(self) -> Counter[str]:
        """SOP Instance UID -> how many times ``archive`` received it."""
        return Counter(
            str(dcmread(path, stop_before_pixels=True).SOPInstanceUID) for path in self.archive.iterdir()
        )

    def logs(self) -> str:
        """The last lines of every service's, server's and worker's log (for a failure's message)."""
        return "\n".join(
            f"--- {log.name}\n{log.read_text(errors='replace')[-3000:]}"
            for log in sorted(self.root.glob("*.log"))
        )

    def remove(self) -> None:
        for client in self._clients.values():
            client.close()
        self.net.remove()


def _boto_credentials() -> dict[str, str]:
    return {
        "aws_access_key_id": AWS["AWS_ACCESS_KEY_ID"],
        "aws_secret_access_key": AWS["AWS_SECRET_ACCESS_KEY"],
        "region_name": AWS["AWS_DEFAULT_REGION"],
    }


def _reachable(host: str, port: int) -> bool:
    import socket

    try:
        socket.create_connection((host, port), timeout=1).close()
        return True
    except OSError:
        return False


def acknowledged(output: str, files: list[Path]) -> list[Path]:
    """The files ``storescu -v`` got a success status for (it logs the file, then the store response)."""
    done, current = [], None
    by_name = {str(path): path for path in files}
    for line in output.splitlines():
        sending = re.search(r"Sending file: (\S+)", line)
        if sending:
            current = by_name.get(sending.group(1))
        elif "Received Store Response (Success)" in line and current is not None:
            done.append(current)
            current = None
    return done


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    root = Path(tempfile.mkdtemp(prefix="dicomflow-lab-"))
    os.chmod(root, 0o755)  # postgres (initdb) reaches its folder through it
    lab = Lab(root)
    try:
        lab.start_services()
        a = lab.start_server("a")
        lab.start_server("b")
        lab.cli(a, "a", "projects", "create", PROJECT)
        lab.cli(a, "a", "rules", "add", PROJECT, "toy_capture")
        lab.cli(a, "a", "projects", "create", "slow")
        lab.cli(a, "a", "rules", "add", "slow", "toy_slow")
        lab.cli(a, "a", "users", "create", ADMIN_EMAIL, "--password", ADMIN_PASSWORD, "--role", "admin")
        lab.token = lab.cli(a, "a", "tokens", "create", "--user", ADMIN_EMAIL).splitlines()[-1]
        lab.workers = [lab.start_worker("w1"), lab.start_worker("w2")]
        yield lab
    finally:
        lab.remove()
        shutil.rmtree(root, ignore_errors=True)


def _finished(lab: Lab, uids: list[str], node: str = "a") -> bool:
    studies = [lab.study(node, uid) for uid in uids]
    return all(s is not None and s["stage"] in {"Finished", "Failed"} for s in studies)


def test_both_servers_receive_at_once_and_serve_every_result(lab: Lab, tmp_path: Path) -> None:
    studies = [make_study(series=1, instances=4), make_study(series=1, instances=4)]
    senders = [
        lab.storescu(node, write_files(study, tmp_path / node))
        for node, study in zip("ab", studies, strict=False)
    ]
    for sender in senders:
        output, _ = sender.communicate(timeout=120)
        assert sender.returncode == 0, output
    uids = [str(study[0].StudyInstanceUID) for study in studies]
    wait_until(lambda: _finished(lab, uids), timeout=120, interval=0.3, message=lab.logs)
    for uid in uids:
        assert lab.study("a", uid)["stage"] == "Finished"  # type: ignore[index]  # found above
        for node in "ab":
            results = lab.api(node).get(f"/studies/{uid}/results").json()
            assert results, f"no result of {uid} on {node}"
            for result in results:
                answer = lab.api(node).get(f"/results/{result['id']}/file")
                assert answer.status_code == 200 and answer.content, (node, result)
    wait_until(lambda: len(lab.archived()) >= 2, timeout=60, interval=0.3, message=lab.logs)
    assert set(lab.archived().values()) == {1}


def test_an_upload_started_on_one_server_completes_on_the_other(lab: Lab, tmp_path: Path) -> None:
    from dicomflow.client import Client

    study = make_study(series=1, instances=3)
    files = write_files(study, tmp_path)
    with (
        Client(f"http://{lab.servers['a'].address}:{HTTP_PORT}", token=lab.token) as on_a,
        Client(f"http://{lab.servers['b'].address}:{HTTP_PORT}", token=lab.token) as on_b,
    ):
        upload = on_a.create_upload(PROJECT)
        on_a.upload_files(upload.id, files[:2])
        on_b.upload_files(upload.id, files[2:])
        on_b.complete_upload(upload.id)
        done = on_a.wait_for_import(upload.id, timeout=120)
    assert done.state == "imported", done
    assert done.files_received == 3 and done.instances_imported == 3, done


def test_a_server_killed_mid_ingest_loses_nothing_and_sends_nothing_twice(lab: Lab, tmp_path: Path) -> None:
    series = make_series(300)
    files = write_files(series, tmp_path)
    sender = lab.storescu("a", files)
    wait_until(lambda: len(_sop_uids(lab, series)) >= 5, timeout=60, interval=0.1, message=lab.logs)
    lab.servers["a"].kill_all()  # the whole host: receiving, HTTP and supervisor processes
    output, _ = sender.communicate(timeout=60)
    acked = acknowledged(output, files)
    assert 5 <= len(acked) < len(files), output[-2000:]  # killed mid-ingest
    lab.start_server("a")  # the same node id and data dir: it recovers what it left behind
    wait_until(lambda: len(_sop_uids(lab, series)) >= len(acked), timeout=60, interval=0.3, message=lab.logs)
    stored = _sop_uids(lab, series)
    assert {str(dcmread(path, stop_before_pixels=True).SOPInstanceUID) for path in acked} <= set(stored)
    assert len(stored) == len(set(stored))  # each once
    uid = str(series[0].StudyInstanceUID)
    wait_until(lambda: _finished(lab, [uid], node="b"), timeout=180, interval=0.3, message=lab.logs)
    jobs = lab.api("b").get("/jobs").json()
    assert all(job["state"] in {"succeeded", "failed"} for job in jobs), jobs
    assert set(lab.archived().values()) == {1}


def _sop_uids(lab: Lab, series: list[Any]) -> list[str]:
    """The SOP Instance UIDs of a series the index holds (as server b answers)."""
    answer = lab.api("b").get(f"/series/{series[0].SeriesInstanceUID}")
    if answer.status_code != 200:
        return []
    return [instance["sop_instance_uid"] for instance in answer.json()["instances"]]


def test_a_worker_killed_mid_job_leaves_a_job_another_worker_finishes(lab: Lab, tmp_path: Path) -> None:
    study = make_study(series=1, instances=2)
    sender = lab.storescu("b", write_files(study, tmp_path), project="slow")
    output, _ = sender.communicate(timeout=60)
    assert sender.returncode == 0, output
    marker = lab.root / "slow-started"
    wait_until(
        lambda: marker.exists() and marker.read_text().split(), timeout=120, interval=0.3, message=lab.logs
    )
    pid = int(marker.read_text().split()[0])
    running_on = next(host for host in lab.workers if pid in host.pids())
    running_on.kill_all()  # the worker host dies mid-job
    uid = str(study[0].StudyInstanceUID)
    wait_until(lambda: _finished(lab, [uid], node="b"), timeout=180, interval=0.3, message=lab.logs)
    assert lab.study("b", uid)["stage"] == "Finished"  # type: ignore[index]  # found above
    job = next(job for job in lab.api("a").get("/jobs").json() if job["study_instance_uid"] == uid)
    assert job["state"] == "succeeded" and job["attempts"] >= 2, job
    assert len(marker.read_text().split()) >= 2  # it started again elsewhere
    lab.start_worker(f"{running_on.name}-again", host=running_on)


def test_a_third_server_starting_while_two_receive_loses_nothing(lab: Lab, tmp_path: Path) -> None:
    series = [make_series(300), make_series(300)]
    files = [write_files(one, tmp_path / str(n)) for n, one in enumerate(series)]
    senders = [lab.storescu(node, part) for node, part in zip("ab", files, strict=True)]
    lab.wait_ready(lab.launch_server("c"))  # it starts up (migrates, recovers its own staging) meanwhile
    for sender, part, one in zip(senders, files, series, strict=True):
        output, _ = sender.communicate(timeout=120)
        assert sender.returncode == 0, output
        assert len(acknowledged(output, part)) == len(part)
        expected = len(one)
        wait_until(lambda: len(_sop_uids(lab, one)) == expected, timeout=60, interval=0.3, message=lab.logs)  # noqa: B023  # called at once
    answer = lab.api("c").get(f"/series/{series[0][0].SeriesInstanceUID}/download")
    assert answer.status_code == 200 and answer.content.startswith(b"PK")  # every blob readable from c
