"""What every process of ``dicomflow serve`` carries: the modules the supervisor imports before it forks the
receiving and HTTP processes, and what a receiving process adds. Rich (the command line's output), uvicorn and
FastAPI (HTTP processes only), argon2 (password checks) and the pipelines and processing flow (the supervisor
and HTTP processes, on first use) are each a few MiB in every one of those processes, so none is imported
there."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

# What the supervisor imports before the fork: the command line, serve's start-up, the ingest and the index
# (it migrates and recovers), and what the receiving processes add after it.
_BEFORE_FORK = """
import sys
from dicomflow.runtime import import_pydicom_without_pixel_libraries
assert import_pydicom_without_pixel_libraries()  # as serve does first (with fast paths on)
import dicomflow.cli
from dicomflow.cli import _app
import dicomflow.serve._serve, dicomflow.serve._receivers
import dicomflow.ingest, dicomflow.index, dicomflow.index.accounts, dicomflow.runtime, dicomflow.dimse
from dicomflow.config import Settings
from dicomflow.runtime import open_application
settings = Settings.model_validate({"data_dir": sys.argv[1], "storage": {"fsync": False}})
application = open_application(settings)  # as a receiving process opens it (migrated here)
application.ingestor
print(" ".join({name.split(".")[0] for name in sys.modules} | {m for m in sys.modules if "dicomflow." in m}))
"""


def test_the_supervisor_and_receivers_import_no_output_http_password_or_pipeline_library(
    tmp_path: Path,
) -> None:
    loaded = subprocess.run(
        [sys.executable, "-c", _BEFORE_FORK, str(tmp_path)], check=True, capture_output=True, text=True
    ).stdout.split()
    assert not {"rich", "uvicorn", "fastapi", "starlette", "argon2"} & set(loaded)
    assert not {"requests", "tqdm", "numpy", "PIL"} & set(loaded)  # pydicom's, hidden at its import
    assert not {"dicomflow.pipelines", "dicomflow.jobs", "dicomflow.checks"} & set(loaded)
