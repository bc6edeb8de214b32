"""A running ``dicomflow serve`` keeps the array, imaging and report libraries out of its supervisor, its
receiving processes and its HTTP processes, also after it has received and served instances; only job
workers load them (no job runs here).

Every one of those libraries is, or needs, compiled code (numpy's own extension modules, OpenBLAS in
``numpy.libs``, Pillow's ``_imaging``), so a library a process has imported shows up in its
``/proc/PID/maps``.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest
from dcmtk import storescu

from factories import DicomflowServer, make_study, write_files

pytestmark = pytest.mark.e2e

HEAVY = ("numpy", "scipy", "highdicom", "nibabel", "reportlab", "matplotlib", "PIL")


def _group(server: DicomflowServer) -> list[int]:
    """The pids of the server's process group (the supervisor and every process forked from it)."""
    assert server.process is not None
    pids = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and os.getpgid(int(entry.name)) == server.process.pid:
                pids.append(int(entry.name))
        except ProcessLookupError:
            continue
    return pids


def _heavy_mapped(pid: int) -> list[str]:
    """The heavy libraries with a file mapped into the process (their folder, or its ``.libs`` twin)."""
    maps = Path(f"/proc/{pid}/maps").read_text()
    return [name for name in HEAVY if f"/{name}/" in maps or f"/{name.lower()}.libs/" in maps]


def test_no_process_of_a_running_server_loads_a_heavy_library(
    make_server: Callable[..., DicomflowServer], tmp_path: Path
) -> None:
    server = make_server(DICOMFLOW_DIMSE__WORKERS="2", DICOMFLOW_HTTP__WORKERS="2")
    study = make_study(series=2, instances=3)
    storescu(server.dimse_port, write_files(study, tmp_path))
    assert server.instance_count() == 6
    for ds in study:  # more requests than HTTP processes: listing and zipping series, reading files
        assert server.get_json(f"/series/{ds.SeriesInstanceUID}")
        assert server.http.get(f"/series/{ds.SeriesInstanceUID}/download").content.startswith(b"PK")
        assert server.http.get(f"/instances/{ds.SOPInstanceUID}/file").content[128:132] == b"DICM"
    pids = _group(server)
    assert len(pids) >= 5  # supervisor, 2 receiving and 2 HTTP processes
    assert {pid: _heavy_mapped(pid) for pid in pids} == {pid: [] for pid in pids}
