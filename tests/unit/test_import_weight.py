"""What every process of ``dicomflow serve`` carries: the modules the supervisor imports before it forks the
receiving and HTTP processes. Rich (the command line's output), uvicorn and FastAPI (HTTP processes only) and
argon2 (password checks) are each a few MiB in every one of those processes, so none is imported there."""

from __future__ import annotations

import subprocess
import sys

# What the supervisor imports before the fork: the command line, serve's start-up, the ingest and the index
# (it migrates and recovers), and what the receiving processes add after it.
_BEFORE_FORK = """
import sys
import dicomflow.cli
from dicomflow.cli import _app
import dicomflow.serve._serve, dicomflow.serve._receivers, dicomflow.serve._janitors
import dicomflow.ingest, dicomflow.index, dicomflow.index.accounts, dicomflow.runtime, dicomflow.dimse
print(" ".join(sorted({name.split(".")[0] for name in sys.modules})))
"""


def test_the_supervisor_and_receivers_import_no_output_http_or_password_library() -> None:
    loaded = subprocess.run(
        [sys.executable, "-c", _BEFORE_FORK], check=True, capture_output=True, text=True
    ).stdout.split()
    assert not {"rich", "uvicorn", "fastapi", "starlette", "argon2"} & set(loaded)
