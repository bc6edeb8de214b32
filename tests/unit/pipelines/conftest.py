"""Fixtures: ``dciodvfy``, dicom3tools' validator of one Part 10 file (a missing tool fails, never skips)."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest


def _dciodvfy(path: Path) -> tuple[list[str], list[str]]:
    done = subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True, timeout=120, check=False)
    lines = (done.stdout + done.stderr).splitlines()
    errors = [line for line in lines if line.startswith("Error")]
    return errors, [line for line in lines if line.startswith("Warning")]


@pytest.fixture
def dciodvfy() -> Callable[[Path], tuple[list[str], list[str]]]:
    """A function returning the ``Error`` and the ``Warning`` lines of ``dciodvfy`` on a file."""
    return _dciodvfy
