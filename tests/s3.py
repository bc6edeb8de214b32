"""A real S3 protocol server for the tests: moto's standalone server in a subprocess on 127.0.0.1.

``s3_server`` (one per session and xdist worker) starts it on a port from ``free_port``; ``s3_bucket``
makes a fresh bucket per test. Throwaway credentials (and no AWS configuration file) are set in the
environment when the session starts, so that every process the tests start inherits them, the job
executor's fork server included, whenever it started.
"""

from __future__ import annotations

import os
import secrets
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest

CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "dicomflow-tests",
    "AWS_SECRET_ACCESS_KEY": "dicomflow-tests-secret",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_EC2_METADATA_DISABLED": "true",
    "AWS_CONFIG_FILE": os.devnull,
    "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
}


@dataclass(frozen=True)
class S3Server:
    """A running S3 endpoint."""

    endpoint_url: str

    def client(self) -> Any:
        import boto3

        return boto3.session.Session().client("s3", endpoint_url=self.endpoint_url, region_name="us-east-1")

    def new_bucket(self) -> str:
        """A fresh, empty bucket."""
        name = f"dicomflow-{secrets.token_hex(6)}"
        self.client().create_bucket(Bucket=name)
        return name

    def overrides(self, bucket: str, prefix: str = "") -> dict[str, Any]:
        """Settings (dotted, for ``Settings.with_overrides``) of a store on ``bucket``."""
        return {
            "storage.backend": "s3",
            "storage.s3_endpoint_url": self.endpoint_url,
            "storage.s3_bucket": bucket,
            "storage.s3_prefix": prefix,
        }

    def environment(self, bucket: str, prefix: str = "") -> dict[str, str]:
        """The same as ``DICOMFLOW_*`` environment variables (for a server in a subprocess)."""
        return {
            "DICOMFLOW_STORAGE__BACKEND": "s3",
            "DICOMFLOW_STORAGE__S3_ENDPOINT_URL": self.endpoint_url,
            "DICOMFLOW_STORAGE__S3_BUCKET": bucket,
            "DICOMFLOW_STORAGE__S3_PREFIX": prefix,
        }


def _wait_for_port(port: int, process: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"moto's S3 server exited with status {process.returncode}")
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"moto's S3 server did not listen on 127.0.0.1:{port} within {timeout} s")


def pytest_configure(config: pytest.Config) -> None:
    """Throwaway AWS credentials for every process of the session (never a developer's own)."""
    os.environ.update(CREDENTIALS)


@pytest.fixture(scope="session")
def s3_server(free_port: Callable[[], int], tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    """moto's standalone S3 server on 127.0.0.1."""
    port = free_port()
    log = tmp_path_factory.mktemp("moto") / "server.log"
    with open(log, "wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, **CREDENTIALS},
        )
    try:
        _wait_for_port(port, process)
        yield S3Server(f"http://127.0.0.1:{port}")
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture
def s3_bucket(s3_server: S3Server) -> str:
    """A fresh bucket on the test S3 server."""
    return s3_server.new_bucket()
