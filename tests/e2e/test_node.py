"""``dicomflow node PIPELINE.py``: a report type as its own SCP, driven with DCMTK ``storescu``."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from dcmtk import storescu

from factories import dicomflow, make_study, server_env, write_files
from waiting import wait_until

pytestmark = pytest.mark.e2e

PIPELINE = """
from dicomflow.pipelines import Input, Measurements, ReportType, VolumeGrinder


class CtInput(Input):
    required_values = {"Modality": "CT"}
    required_tags = ["ImagePositionPatient", "PixelSpacing"]
    grinder = VolumeGrinder()


class PetInput(Input):
    required_values = {"Modality": "PT"}


class MeanHu(ReportType):
    name = "mean_hu"
    inputs = {"ct": CtInput, "pet": PetInput}

    def process(self, inputs, context):
        return [Measurements({"mean_hu": float(inputs["ct"].array.mean())})]
"""


@contextmanager
def running_node(tmp_path: Path, port: int, *options: str) -> Iterator[Path]:
    """``dicomflow node`` on ``port`` with the pipeline above, until the block ends; yields its data dir."""
    pipeline = tmp_path / "my_pipeline.py"
    pipeline.write_text(PIPELINE)
    data = tmp_path / "node-data"
    log = (tmp_path / "node.log").open("wb")
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "dicomflow",
            "node",
            str(pipeline),
            "--port",
            str(port),
            "--data-dir",
            str(data),
            *options,
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=server_env(DICOMFLOW_PROCESSING__POLL_INTERVAL="0.1"),
        start_new_session=True,
    )
    try:

        def answers() -> bool:
            assert process.poll() is None, (tmp_path / "node.log").read_text()
            echo = ["echoscu", "-aec", "DICOMNODE", "127.0.0.1", str(port)]
            return subprocess.run(echo, check=False).returncode == 0

        wait_until(answers, 30, interval=0.2, message=lambda: (tmp_path / "node.log").read_text())
        yield data
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(30)
        log.close()


@pytest.fixture
def node(tmp_path: Path, free_port: Callable[[], int]) -> Iterator[tuple[int, Path]]:
    port = free_port()
    with running_node(tmp_path, port) as data:
        yield port, data


def _studies(data: Path) -> list[dict[str, object]]:
    done = dicomflow("status", "--json", "--data-dir", str(data), env=server_env())
    assert done.returncode == 0, done.stderr
    return list(json.loads(done.stdout))


def test_node_refuses_what_no_input_accepts_and_processes_when_every_input_is_there(
    node: tuple[int, Path], tmp_path: Path
) -> None:
    port, data = node
    ct = make_study(series=1, instances=4, PatientID="NODE1")
    pet = make_study(series=1, instances=2, modality="PT", PatientID="NODE1")  # another study, same patient
    mr = make_study(series=1, instances=1, modality="MR", PatientID="NODE1")

    refused = storescu(port, write_files(mr, tmp_path / "mr"), "-v", called_ae="DICOMNODE")
    assert "Warning: DataSetDoesNotMatchSOPClass" in refused.stdout + refused.stderr  # 0xB007
    storescu(port, write_files(ct, tmp_path / "ct"), called_ae="DICOMNODE")
    time.sleep(1)
    assert _studies(data) == []  # the PET input is still missing: nothing runs

    storescu(port, write_files(pet, tmp_path / "pet"), called_ae="DICOMNODE")
    wait_until(lambda: [s for s in _studies(data) if s["stage"] == "Finished"], interval=0.3)
    (study,) = _studies(data)
    assert study["stage"] == "Finished", study
    rows = dicomflow("ls", "--json", "--data-dir", str(data), env=server_env()).stdout
    assert mr[0].SeriesInstanceUID not in rows and ct[0].SeriesInstanceUID in rows


def _send(port: int, folder: Path) -> tuple[int, str]:
    done = dicomflow("send", str(folder), "--port", str(port), "--called-ae", "DICOMNODE", env=server_env())
    return done.returncode, done.stdout + done.stderr


def test_send_counts_the_node_refusal_0xb007_as_a_failure(node: tuple[int, Path], tmp_path: Path) -> None:
    port, _ = node
    mr = make_study(series=1, instances=2, modality="MR")

    write_files(mr, tmp_path / "mr")
    code, output = _send(port, tmp_path / "mr")

    # 0xB007 is a warning in PS3.4 B.2.3, but the node answers it for instances it did not keep (issue 9, 24)
    assert code == 1, output
    assert "failure 0xB007" in output and "no input of mean_hu accepts it" in output
    assert "Traceback" not in output


def test_send_fails_when_the_node_refuses_with_a_failure_status(
    tmp_path: Path, free_port: Callable[[], int]
) -> None:
    port = free_port()
    mr = make_study(series=1, instances=2, modality="MR")
    ct = make_study(series=1, instances=2, PatientID="NODE2")
    write_files(mr, tmp_path / "in" / "mr")
    write_files(ct, tmp_path / "in" / "ct")

    with running_node(tmp_path, port, "--reject-status", "0xA900"):
        code, output = _send(port, tmp_path / "in")

    assert code == 1, output
    assert "failure 0xA900" in output and "no input of mean_hu accepts it" in output
    assert "Traceback" not in output
