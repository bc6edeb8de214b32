"""C-STORE ingest benchmark: dicomflow side by side with DCMTK storescp (the floor) and Orthanc (the peer).

Usage (as root, from the repository root; ``make bench`` runs it with the defaults)::

    .venv/bin/python bench/ingest.py [--count 1000] [--reps 3] [--parallel 4] [--rows 512 --cols 512]
        [--receivers dicomflow,storescp,orthanc] [--out FILE.md] [--keep] [--no-netns]
        [--send-timeout 300] [--max-time 3600]

What it does:

* generates one synthetic CT study once (``--count`` slices of ``--rows`` x ``--cols`` int16, explicit VR
  little endian, real geometry, UIDs from ``pydicom.uid.generate_uid``) into a temp dir, and splits it
  into ``--parallel`` disjoint folders;
* re-executes itself in a private network namespace whose only interface is loopback (``unshare --net``,
  needs root) unless ``--no-netns``;
* per repetition (interleaved: rep 1 of every receiver, then rep 2, ...) and per mode (one association;
  ``--parallel`` associations at once), starts a FRESH receiver on an empty store, waits until it answers
  C-ECHO, times DCMTK ``storescu -aec AET 127.0.0.1 PORT +sd DIR`` (wall clock from the first storescu
  start to the last exit), samples the receiver's CPU, checks how many instances it stored, stops it and
  deletes its store;
* prints the medians per receiver and mode, and the ratios dicomflow/orthanc and dicomflow/storescp;
  ``--out`` writes the same as markdown.

DCMTK and Debian's Orthanc leave Nagle's algorithm on unless the environment has ``TCP_NODELAY=1``, so
storescu, echoscu, storescp and Orthanc are all started with it. Exit status: 0 if every run stored every
instance, 1 if any run failed, stored fewer instances than sent or was skipped by the deadline, 2 if
something needed is missing, 130 when interrupted. Needs python3 with numpy and pydicom (the venv has them)
and the Debian packages dcmtk, orthanc, iproute2 and util-linux (``make system-deps``); installs nothing.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import importlib.metadata
import json
import os
import platform
import shutil
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import NamedTuple

import numpy as np
from benchutil import out
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import PYDICOM_IMPLEMENTATION_UID, CTImageStorage, ExplicitVRLittleEndian, generate_uid

NETNS_MARKER = "DICOMFLOW_BENCH_NETNS"  # set in the re-executed child that runs inside the namespace
NODELAY = {"TCP_NODELAY": "1"}
RECEIVER_NAMES = ("dicomflow", "storescp", "orthanc")
DEBIAN_PACKAGES = {
    "storescu": "dcmtk",
    "echoscu": "dcmtk",
    "storescp": "dcmtk",
    "Orthanc": "orthanc",
    "unshare": "util-linux",
    "ip": "iproute2",
}
START_TIMEOUT = 60.0  # seconds for a receiver to answer C-ECHO
STOP_TIMEOUT = 30.0  # seconds between SIGTERM and SIGKILL
SETTLE_SECONDS = 1.0  # pause between "answers C-ECHO" and the first storescu
DISTINCT_PLANES = 32  # pixel planes generated and cycled through the study
FIELD_OF_VIEW_MM = 350.0
SLICE_MM = 1.0
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")

CT_CONSTANTS: dict[str, object] = {
    "SpecificCharacterSet": "ISO_IR 100",
    "ImageType": ["ORIGINAL", "PRIMARY", "AXIAL"],
    "SOPClassUID": CTImageStorage,
    "Modality": "CT",
    "Manufacturer": "dicomflow bench",
    "InstitutionName": "BENCH",
    "ReferringPhysicianName": "",
    "PatientName": "BENCH^PHANTOM",
    "PatientID": "BENCH0001",
    "PatientBirthDate": "19700101",
    "PatientSex": "O",
    "AccessionNumber": "BENCH0001",
    "StudyID": "1",
    "StudyDescription": "CT CHEST ABDOMEN (synthetic)",
    "SeriesDescription": f"AXIAL {SLICE_MM:g} mm",
    "SeriesNumber": 2,
    "AcquisitionNumber": 1,
    "BodyPartExamined": "CHEST",
    "KVP": "120",
    "SliceThickness": f"{SLICE_MM:g}",
    "SpacingBetweenSlices": f"{SLICE_MM:g}",
    "PatientPosition": "HFS",
    "PositionReferenceIndicator": "",
    "ImageOrientationPatient": [1, 0, 0, 0, 1, 0],
    "SamplesPerPixel": 1,
    "PhotometricInterpretation": "MONOCHROME2",
    "BitsAllocated": 16,
    "BitsStored": 16,
    "HighBit": 15,
    "PixelRepresentation": 1,
    "RescaleIntercept": "0",
    "RescaleSlope": "1",
    "RescaleType": "HU",
    "WindowCenter": "40",
    "WindowWidth": "400",
}


def log(text: str) -> None:
    """Write a progress line to stderr."""
    sys.stderr.write(f"[{time.strftime('%H:%M:%S')}] {text}\n")
    sys.stderr.flush()


# ---- synthetic study ------------------------------------------------------------------------------------


def phantom(rows: int, cols: int, t: float, rng: np.random.Generator) -> bytes:
    """One axial slice of a torso-like phantom in HU (int16 LE); t in [0, 1) moves along the body axis."""
    y, x = np.ogrid[-1.0 : 1.0 : rows * 1j, -1.0 : 1.0 : cols * 1j]
    img = np.full((rows, cols), -1000.0, dtype=np.float32)  # air
    body = (x / 0.9) ** 2 + (y / 0.7) ** 2 <= 1.0
    img[body] = -90.0  # subcutaneous fat
    img[(x / 0.84) ** 2 + (y / 0.64) ** 2 <= 1.0] = 45.0  # muscle and organs
    lung = 0.10 + 0.18 * float(np.sin(np.pi * t))  # lungs grow and shrink along z
    for cx in (-0.42, 0.42):
        img[((x - cx) / lung) ** 2 + ((y + 0.05) / (1.6 * lung)) ** 2 <= 1.0] = -850.0
    img[(x / 0.09) ** 2 + ((y - 0.45) / 0.09) ** 2 <= 1.0] = 900.0  # vertebral body
    img[(x / 0.05) ** 2 + ((y - 0.45) / 0.05) ** 2 <= 1.0] = 250.0  # marrow
    img[((x + 0.12) / 0.06) ** 2 + ((y - 0.25) / 0.06) ** 2 <= 1.0] = 180.0  # contrast-filled aorta
    img[(np.abs(y - 0.82) < 0.02) & (np.abs(x) < 0.8)] = 200.0  # table
    img += rng.normal(0.0, 12.0, size=img.shape).astype(np.float32) * body
    return bytes(np.clip(img, -1024, 3071).astype("<i2").tobytes())


def ct_dataset(rows: int, cols: int) -> Dataset:
    """The attributes shared by every slice of the series (patient, study, series, geometry, pixels)."""
    ds = Dataset()
    for keyword, value in CT_CONSTANTS.items():
        setattr(ds, keyword, value)
    spacing = round(FIELD_OF_VIEW_MM / max(rows, cols), 6)
    ds.Rows, ds.Columns = rows, cols
    ds.PixelSpacing = [spacing, spacing]
    ds.ImagePositionPatient = [round(-spacing * (cols - 1) / 2, 4), round(-spacing * (rows - 1) / 2, 4), 0]
    now = dt.datetime.now()
    for level in ("Study", "Series", "Content"):
        setattr(ds, f"{level}Date", now.strftime("%Y%m%d"))
        setattr(ds, f"{level}Time", now.strftime("%H%M%S"))
    ds.StudyInstanceUID = generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    ds.FrameOfReferenceUID = generate_uid()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = CTImageStorage
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    return ds


def set_slice(ds: Dataset, index: int, plane: bytes) -> None:
    """Turn the shared data set into slice ``index`` (0-based, head first: z decreases)."""
    uid = generate_uid()
    ds.SOPInstanceUID = uid
    ds.file_meta.MediaStorageSOPInstanceUID = uid
    ds.InstanceNumber = index + 1
    z = round(-index * SLICE_MM, 3)
    x0, y0 = ds.ImagePositionPatient[0], ds.ImagePositionPatient[1]
    ds.ImagePositionPatient = [x0, y0, z]
    ds.SliceLocation = z
    ds.PixelData = plane


def write_study(folder: Path, count: int, rows: int, cols: int) -> list[Path]:
    """Write ``count`` CT slices of one series into ``folder``; return the files in order."""
    folder.mkdir(parents=True)
    rng = np.random.default_rng(20240115)
    nplanes = min(count, DISTINCT_PLANES)
    planes = [phantom(rows, cols, k / nplanes, rng) for k in range(nplanes)]
    ds = ct_dataset(rows, cols)
    files = []
    for i in range(count):
        set_slice(ds, i, planes[i % nplanes])
        path = folder / f"ct{i + 1:05d}.dcm"
        ds.save_as(path, enforce_file_format=True)
        files.append(path)
    return files


def split(files: list[Path], root: Path, parts: int) -> list[Path]:
    """Hard-link (or copy) the files into ``parts`` disjoint folders of consecutive slices."""
    per = -(-len(files) // parts)
    folders = []
    for k in range(parts):
        folder = root / f"part{k + 1}"
        folder.mkdir(parents=True)
        for f in files[k * per : (k + 1) * per]:
            try:
                os.link(f, folder / f.name)
            except OSError:
                shutil.copy2(f, folder / f.name)
        folders.append(folder)
    return folders


@dataclass(frozen=True)
class Study:
    folder: Path
    files: list[Path]
    nbytes: int
    parts: list[Path]

    @property
    def count(self) -> int:
        return len(self.files)


def make_study(root: Path, args: argparse.Namespace) -> Study:
    """Generate the study, split it for the parallel mode and read it once (senders read from RAM)."""
    t0 = time.perf_counter()
    log(f"generating {args.count} CT slices {args.rows}x{args.cols} into {root / 'study'}")
    files = write_study(root / "study", args.count, args.rows, args.cols)
    parts = split(files, root / "split", args.parallel) if args.parallel > 0 else []
    nbytes = sum(len(f.read_bytes()) for f in files)
    log(f"generated {len(files)} files, {nbytes / 1e6:.1f} MB in {time.perf_counter() - t0:.1f} s")
    return Study(root / "study", files, nbytes, parts)


# ---- processes --------------------------------------------------------------------------------------------


class ProcStat(NamedTuple):
    state: str
    ppid: int
    pgrp: int
    ticks: int  # utime + stime + cutime + cstime


def read_stat(pid: int) -> ProcStat | None:
    """Parse /proc/PID/stat, or None if the process is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            data = fh.read().decode("latin-1")
    except OSError:
        return None
    rest = data[data.rfind(")") + 2 :].split()
    return ProcStat(rest[0], int(rest[1]), int(rest[2]), sum(int(v) for v in rest[11:15]))


def proc_table() -> dict[int, ProcStat]:
    """Every process visible in /proc."""
    table = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit() and (stat := read_stat(int(entry))) is not None:
            table[int(entry)] = stat
    return table


def tree_cpu_seconds(root: int) -> float:
    """CPU seconds (user + system, reaped children included) of ``root`` and all its descendants."""
    table = proc_table()
    children: dict[int, list[int]] = {}
    for pid, stat in table.items():
        children.setdefault(stat.ppid, []).append(pid)
    ticks, todo = 0, [root]
    while todo:
        pid = todo.pop()
        ticks += table[pid].ticks if pid in table else 0
        todo.extend(children.get(pid, []))
    return ticks / CLOCK_TICKS


def group_alive(pgid: int) -> bool:
    """Whether any live (non-zombie) process is left in process group ``pgid``."""
    return any(stat.pgrp == pgid and stat.state != "Z" for stat in proc_table().values())


def signal_group(pgid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signum)


def wait_group(proc: subprocess.Popen[bytes], timeout: float) -> bool:
    """Wait until the leader has exited and its process group is empty."""
    end = time.monotonic() + timeout
    while True:
        if proc.poll() is not None and not group_alive(proc.pid):
            return True
        if time.monotonic() >= end:
            return False
        time.sleep(0.05)


class Processes:
    """Every process the benchmark starts, each in its own session so that it is stopped as a group."""

    def __init__(self) -> None:
        self._live: list[subprocess.Popen[bytes]] = []

    def start(self, argv: Sequence[str], env: dict[str, str], log_path: Path) -> subprocess.Popen[bytes]:
        with log_path.open("ab") as fh:
            proc = subprocess.Popen(
                list(argv),
                stdin=subprocess.DEVNULL,
                stdout=fh,
                stderr=subprocess.STDOUT,
                env={**os.environ, **env},
                start_new_session=True,
            )
        self._live.append(proc)
        return proc

    def stop(self, proc: subprocess.Popen[bytes]) -> None:
        """SIGTERM the process group, wait, SIGKILL it if it is still there."""
        if proc in self._live:
            self._live.remove(proc)
        signal_group(proc.pid, signal.SIGTERM)
        if wait_group(proc, STOP_TIMEOUT):
            return
        log(f"pid {proc.pid} ({proc.args[0]}) did not stop on SIGTERM; killing its process group")
        signal_group(proc.pid, signal.SIGKILL)
        wait_group(proc, 10.0)

    def stop_all(self) -> None:
        for proc in list(self._live):
            self.stop(proc)


def tail(path: Path, lines: int = 5) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def first_line(argv: list[str]) -> str:
    """First line of a command's output (for versions), or '?'."""
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return "?"
    lines = (done.stdout or done.stderr).strip().splitlines()
    return lines[0].strip("$ ") if lines else "?"


# ---- receivers --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Receiver:
    name: str
    aet: str
    ports: tuple[int, ...]  # the DIMSE port first, then any other port it listens on
    prepare: Callable[[Path, Path], list[str]]  # (work dir, empty store) -> command line
    count: Callable[[Path, Path], int]  # (work dir, store) -> instances stored
    env: dict[str, str] = field(default_factory=dict)
    tools: tuple[str, ...] = ()

    @property
    def port(self) -> int:
        return self.ports[0]


def dicomflow_executable() -> Path:
    """The ``dicomflow`` console script next to the running python (the venv), else the one on PATH."""
    beside = Path(sys.executable).parent / "dicomflow"
    return beside if beside.exists() else Path(shutil.which("dicomflow") or beside)


def sqlite_count(db: Path) -> int:
    with contextlib.closing(sqlite3.connect(f"{db.as_uri()}?mode=ro", uri=True, timeout=30)) as conn:
        (count,) = conn.execute("SELECT count(*) FROM instances").fetchone()
    return int(count)


def dicomflow_receiver() -> Receiver:
    exe, dimse, http = dicomflow_executable(), 11120, 18120

    def prepare(_work: Path, store: Path) -> list[str]:
        ports = ["--dimse-port", str(dimse), "--http-port", str(http)]
        return [str(exe), "serve", "--data-dir", str(store), *ports]

    def count(_work: Path, store: Path) -> int:
        return sqlite_count(store / "index.sqlite3")

    return Receiver("dicomflow", "DICOMFLOW", (dimse, http), prepare, count, tools=(str(exe),))


def storescp_receiver() -> Receiver:
    port = 11121

    def prepare(_work: Path, store: Path) -> list[str]:
        return ["storescp", "--fork", "-aet", "STORESCP", "-od", str(store), str(port)]

    def count(_work: Path, store: Path) -> int:
        return sum(1 for p in store.rglob("*") if p.is_file())

    return Receiver("storescp", "STORESCP", (port,), prepare, count, NODELAY, ("storescp",))


def orthanc_config(work: Path, store: Path, dimse: int, http: int) -> dict[str, object]:
    return {
        "Name": "bench-orthanc",
        "StorageDirectory": str(store),
        "IndexDirectory": str(work / "index"),
        "StorageCompression": False,
        "Plugins": [],
        "HttpServerEnabled": True,
        "HttpPort": http,
        "RemoteAccessAllowed": False,
        "AuthenticationEnabled": False,
        "DicomServerEnabled": True,
        "DicomAet": "ORTHANC",
        "DicomPort": dimse,
        "DicomCheckCalledAet": False,
        "DicomAlwaysAllowEcho": True,
        "DicomAlwaysAllowStore": True,
        "DicomModalities": {},
        "SyncStorageArea": True,
    }


def rest_count(port: int) -> int:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # never via a proxy
    with opener.open(f"http://127.0.0.1:{port}/statistics", timeout=30) as resp:
        return int(json.load(resp)["CountInstances"])


def orthanc_receiver() -> Receiver:
    dimse, http = 11122, 18122

    def prepare(work: Path, store: Path) -> list[str]:
        (work / "index").mkdir()
        config = work / "orthanc.json"
        config.write_text(json.dumps(orthanc_config(work, store, dimse, http), indent=2))
        return ["Orthanc", str(config)]

    def count(_work: Path, _store: Path) -> int:
        return rest_count(http)

    return Receiver("orthanc", "ORTHANC", (dimse, http), prepare, count, NODELAY, ("Orthanc",))


def make_receivers(names: list[str]) -> list[Receiver]:
    factories = {"dicomflow": dicomflow_receiver, "storescp": storescp_receiver, "orthanc": orthanc_receiver}
    return [factories[name]() for name in names]


# ---- one run ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Mode:
    name: str
    dirs: list[Path]  # one storescu per folder, all at once


@dataclass(frozen=True)
class Run:
    receiver: str
    mode: str
    rep: int
    sent: int
    nbytes: int
    status: str = "ok"
    stored: int | None = None
    wall: float = float("nan")
    cpu: float = float("nan")

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def line(self) -> str:
        return (
            f"{self.receiver:<9} {self.mode:<9} rep {self.rep}: {self.wall:7.2f} s "
            f"{self.sent / self.wall:7.1f} inst/s {self.nbytes / 1e6 / self.wall:7.1f} MB/s "
            f"CPU {100 * self.cpu / self.wall:4.0f}%  stored {self.stored}/{self.sent}  {self.status}"
        )


@dataclass
class Bench:
    procs: Processes
    root: Path
    study: Study
    deadline: float  # time.monotonic() after which no run starts
    send_timeout: float
    keep: bool


def port_busy(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(1.0)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def echo(rx: Receiver) -> bool:
    argv = ["echoscu", "-q", "-to", "2", "-ta", "5", "-aec", rx.aet, "127.0.0.1", str(rx.port)]
    try:
        done = subprocess.run(
            argv, env={**os.environ, **NODELAY}, capture_output=True, timeout=15, check=False
        )
    except subprocess.TimeoutExpired:
        return False
    return done.returncode == 0


def wait_ready(rx: Receiver, proc: subprocess.Popen[bytes], deadline: float) -> bool:
    """Poll C-ECHO until the receiver answers; False if it exits or does not answer in time."""
    end = min(deadline, time.monotonic() + START_TIMEOUT)
    while time.monotonic() < end:
        if proc.poll() is not None:
            return False
        if echo(rx):
            return True
        time.sleep(0.25)
    return False


def start_receiver(ctx: Bench, rx: Receiver, work: Path, store: Path) -> subprocess.Popen[bytes] | None:
    """Start the receiver on an empty store; None (after logging why) if it does not come up."""
    busy = [port for port in rx.ports if port_busy(port)]
    if busy:
        log(f"{rx.name}: port(s) {busy} already in use on 127.0.0.1")
        return None
    proc = ctx.procs.start(rx.prepare(work, store), rx.env, work / "receiver.log")
    if wait_ready(rx, proc, ctx.deadline):
        return proc
    log(f"{rx.name} did not answer C-ECHO (exit status {proc.poll()}); its log ends with:")
    log(tail(work / "receiver.log"))
    ctx.procs.stop(proc)
    return None


def wait_exit(proc: subprocess.Popen[bytes], end: float) -> int:
    """Exit status of ``proc``, or 124 if it is still running at ``end`` (time.monotonic())."""
    try:
        return proc.wait(timeout=max(0.0, end - time.monotonic()))
    except subprocess.TimeoutExpired:
        return 124


def send(ctx: Bench, rx: Receiver, mode: Mode, work: Path) -> tuple[float, list[int]]:
    """Run one storescu per folder at once; wall seconds from the first start to the last exit."""
    end = time.monotonic() + max(1.0, min(ctx.send_timeout, ctx.deadline - time.monotonic()))
    senders = []
    t0 = time.perf_counter()
    for k, folder in enumerate(mode.dirs, 1):
        argv = ["storescu", "-aec", rx.aet, "127.0.0.1", str(rx.port), "+sd", str(folder)]
        senders.append(ctx.procs.start(argv, NODELAY, work / f"storescu{k}.log"))
    codes = [wait_exit(proc, end) for proc in senders]
    wall = time.perf_counter() - t0
    for proc in senders:
        ctx.procs.stop(proc)
    for k, code in enumerate(codes, 1):
        if code != 0:
            log(f"storescu {k} exited with {code}; its log ends with:\n{tail(work / f'storescu{k}.log')}")
    return wall, codes


def stored_count(rx: Receiver, work: Path, store: Path) -> int | None:
    try:
        return rx.count(work, store)
    except (OSError, sqlite3.Error, ValueError, KeyError) as exc:
        log(f"{rx.name}: cannot count the stored instances: {exc}")
        return None


def measure(ctx: Bench, rx: Receiver, mode: Mode, rep: int, proc: subprocess.Popen[bytes], work: Path) -> Run:
    """Time the send to a running receiver, with its CPU and the check of what it stored."""
    os.sync()
    time.sleep(SETTLE_SECONDS)
    cpu0 = tree_cpu_seconds(proc.pid)
    wall, codes = send(ctx, rx, mode, work)
    cpu1 = tree_cpu_seconds(proc.pid)
    sent = ctx.study.count
    stored = stored_count(rx, work, work / "store")
    problems = [f"storescu exit {code}" for code in codes if code != 0]
    if stored is None:
        problems.append("count failed")
    elif stored != sent:
        problems.append(f"stored {stored} of {sent}")
    status = "; ".join(problems) or "ok"
    return Run(rx.name, mode.name, rep, sent, ctx.study.nbytes, status, stored, wall, cpu1 - cpu0)


def run_one(ctx: Bench, rx: Receiver, mode: Mode, rep: int) -> Run:
    """A fresh receiver on an empty store, one timed send, then stop it and delete its store."""
    work = ctx.root / f"run_{rx.name}_{mode.name}_{rep}"
    store = work / "store"
    store.mkdir(parents=True)
    proc = None
    try:
        proc = start_receiver(ctx, rx, work, store)
        if proc is None:
            return Run(rx.name, mode.name, rep, ctx.study.count, ctx.study.nbytes, "start failed")
        return measure(ctx, rx, mode, rep, proc, work)
    finally:
        if proc is not None:
            ctx.procs.stop(proc)
        shutil.rmtree(store if ctx.keep else work, ignore_errors=True)
        os.sync()


def run_all(ctx: Bench, receivers: list[Receiver], modes: list[Mode], reps: int) -> list[Run]:
    """Interleaved: rep 1 of every receiver and mode, then rep 2, ..."""
    runs = []
    for rep in range(1, reps + 1):
        for rx in receivers:
            for mode in modes:
                if time.monotonic() >= ctx.deadline:
                    log(f"deadline reached: skipping {rx.name} {mode.name} rep {rep}")
                    runs.append(Run(rx.name, mode.name, rep, ctx.study.count, ctx.study.nbytes, "skipped"))
                    continue
                log(f"run: {rx.name} {mode.name} rep {rep}")
                run = run_one(ctx, rx, mode, rep)
                log(run.line() if run.stored is not None else f"{run.receiver} {run.mode}: {run.status}")
                runs.append(run)
    return runs


# ---- report -----------------------------------------------------------------------------------------------


def median_of(runs: list[Run], value: Callable[[Run], float]) -> float:
    values = [value(run) for run in runs if run.ok]
    return statistics.median(values) if values else float("nan")


def fmt(value: float, digits: int = 0) -> str:
    return "-" if value != value else f"{value:.{digits}f}"  # NaN -> "-"


def summary_rows(runs: list[Run], receivers: list[Receiver], modes: list[Mode]) -> list[list[str]]:
    rows = [["receiver", "mode", "instances/s", "MB/s", "receiver CPU %", "wall s (each rep)", "runs ok"]]
    for rx in receivers:
        for mode in modes:
            mine = [run for run in runs if run.receiver == rx.name and run.mode == mode.name]
            walls = ", ".join(fmt(run.wall, 2) for run in mine)
            rows.append(
                [
                    rx.name,
                    mode.name,
                    fmt(median_of(mine, lambda r: r.sent / r.wall)),
                    fmt(median_of(mine, lambda r: r.nbytes / 1e6 / r.wall), 1),
                    fmt(median_of(mine, lambda r: 100 * r.cpu / r.wall)),
                    walls,
                    f"{sum(run.ok for run in mine)}/{len(mine)}",
                ]
            )
    return rows


def rate(runs: list[Run], receiver: str, mode: str) -> float:
    """Median instances/s of the successful runs of one receiver in one mode."""
    mine = [run for run in runs if run.receiver == receiver and run.mode == mode]
    return median_of(mine, lambda r: r.sent / r.wall)


def ratio_rows(runs: list[Run], receivers: list[Receiver], modes: list[Mode]) -> list[list[str]]:
    """dicomflow's median instances/s over each other receiver's, per mode."""
    others = [rx.name for rx in receivers if rx.name != "dicomflow"]
    if len(others) == len(receivers) or not others:
        return []
    rows = [["mode", *[f"dicomflow / {name}" for name in others]]]
    for mode in modes:
        ours = rate(runs, "dicomflow", mode.name)
        rows.append([mode.name, *[fmt(ours / rate(runs, name, mode.name), 2) for name in others]])
    return rows


def label_columns(header: list[str]) -> int:
    """How many leading columns hold names (left aligned) rather than figures (right aligned)."""
    return sum(1 for cell in header if cell in ("receiver", "mode"))


def render_text(rows: list[list[str]]) -> str:
    labels = label_columns(rows[0])
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = []
    for row in rows:
        cells = [
            c.ljust(w) if i < labels else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths, strict=True))
        ]
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines)


def render_markdown(rows: list[list[str]]) -> str:
    labels = label_columns(rows[0])
    align = ["---" if i < labels else "---:" for i in range(len(rows[0]))]
    return "\n".join("| " + " | ".join(row) + " |" for row in [rows[0], align, *rows[1:]])


def context_lines(args: argparse.Namespace, study: Study, load: tuple[float, float, float]) -> list[str]:
    try:
        version = importlib.metadata.version("dicomflow")
    except importlib.metadata.PackageNotFoundError:
        version = "?"
    orthanc = first_line(["Orthanc", "--version"]) if "orthanc" in args.names else "Orthanc not run"
    network = "private namespace, loopback only" if os.environ.get(NETNS_MARKER) == "1" else "host namespace"
    parallel = f"; parallel{args.parallel} = {args.parallel} storescu at once on disjoint folders"
    return [
        f"data: {study.count} CT slices {args.rows}x{args.cols} int16, explicit VR LE, "
        f"{study.nbytes / 1e6:.1f} MB (MB = 10^6 bytes of files sent); figures are medians of "
        f"{args.reps} rep(s)",
        f"modes: single = 1 association{parallel if args.parallel else ''}",
        f"machine: {os.cpu_count()} cores, Linux {platform.release()}, load average at start "
        f"{load[0]:.2f} {load[1]:.2f} {load[2]:.2f}; network: {network}",
        f"versions: dicomflow {version}; {first_line(['storescu', '--version'])}; {orthanc}",
        "sender: TCP_NODELAY=1 storescu -aec AET 127.0.0.1 PORT +sd DIR; storescp and Orthanc run with "
        "TCP_NODELAY=1",
        "receiver CPU % = CPU seconds of the receiver's process tree / wall seconds (100 = one core)",
    ]


def report(
    args: argparse.Namespace,
    study: Study,
    runs: list[Run],
    receivers: list[Receiver],
    modes: list[Mode],
    load: tuple[float, float, float],
) -> None:
    context = context_lines(args, study, load)
    tables = [t for t in (summary_rows(runs, receivers, modes), ratio_rows(runs, receivers, modes)) if t]
    out()
    out("\n".join(context))
    for table in tables:
        out()
        out(render_text(table))
    if args.out:
        text = ["# dicomflow ingest benchmark", "", *[f"- {line}" for line in context]]
        for table in tables:
            text += ["", render_markdown(table)]
        args.out.write_text("\n".join(text) + "\n")
        log(f"wrote {args.out}")


# ---- main -------------------------------------------------------------------------------------------------


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="bench/ingest.py",
        description=(__doc__ or "").split("\n\n", 1)[0],
        epilog="See the module docstring or bench/README.md for what is measured.",
    )
    parser.add_argument("--count", type=int, default=1000, help="CT slices in the study (default 1000)")
    parser.add_argument("--reps", type=int, default=3, help="repetitions per receiver and mode (default 3)")
    parser.add_argument("--parallel", type=int, default=4, help="associations in parallel mode (0 = skip)")
    parser.add_argument("--rows", type=int, default=512, help="slice rows (default 512)")
    parser.add_argument("--cols", type=int, default=512, help="slice columns (default 512)")
    parser.add_argument("--receivers", default=",".join(RECEIVER_NAMES), help="comma separated, in order")
    parser.add_argument("--out", type=Path, help="also write the results as markdown to this file")
    parser.add_argument("--keep", action="store_true", help="keep the temp dir (data and logs)")
    parser.add_argument("--no-netns", action="store_true", help="stay in the host network namespace")
    parser.add_argument("--send-timeout", type=float, default=300.0, help="seconds per send (default 300)")
    parser.add_argument("--max-time", type=float, default=3600.0, help="overall deadline in s (default 3600)")
    args = parser.parse_args(argv)
    args.names = [name.strip() for name in args.receivers.split(",") if name.strip()]
    unknown = sorted(set(args.names) - set(RECEIVER_NAMES))
    if unknown or not args.names:
        parser.error(f"--receivers: choose from {', '.join(RECEIVER_NAMES)} (got {args.receivers!r})")
    if args.count < 1 or args.reps < 1 or args.rows < 1 or args.cols < 1:
        parser.error("--count, --reps, --rows and --cols must be at least 1")
    if not 0 <= args.parallel <= args.count:
        parser.error("--parallel must be between 0 and --count")
    return args


def wants_netns(args: argparse.Namespace) -> bool:
    return not args.no_netns and os.environ.get(NETNS_MARKER) != "1"


def install_hint(tool: str) -> str:
    if tool in DEBIAN_PACKAGES:
        return f"{tool} not found: apt-get install {DEBIAN_PACKAGES[tool]} (`make bench` installs it)"
    return f"{tool} not found: install dicomflow into the venv (`make`, or pip install -e .)"


def preflight(args: argparse.Namespace, receivers: list[Receiver]) -> list[str]:
    """What is missing to run, as messages (empty when everything is there)."""
    tools = ["storescu", "echoscu", *[tool for rx in receivers for tool in rx.tools]]
    if wants_netns(args):
        tools += ["unshare", "ip"]
    problems = [install_hint(tool) for tool in dict.fromkeys(tools) if shutil.which(tool) is None]
    if wants_netns(args) and os.geteuid() != 0:
        problems.append("the private network namespace needs root: run as root, or pass --no-netns")
    return problems


def reexec_in_netns(argv: list[str]) -> None:
    """Replace this process by itself inside a new network namespace with loopback up; does not return."""
    script = str(Path(__file__).resolve())
    inner = ["sh", "-c", 'ip link set lo up && exec "$@"', "sh", sys.executable, script, *argv]
    os.execvpe("unshare", ["unshare", "--net", "--", *inner], {**os.environ, NETNS_MARKER: "1"})


def on_signal(signum: int, _frame: FrameType | None) -> None:
    log(f"got {signal.Signals(signum).name}: stopping everything started")
    raise SystemExit(128 + signum)  # unwinds through the finally blocks that stop what was started


def bench(args: argparse.Namespace, root: Path, procs: Processes) -> int:
    load = os.getloadavg()
    deadline = time.monotonic() + args.max_time
    receivers = make_receivers(args.names)
    study = make_study(root, args)
    modes = [Mode("single", [study.folder])]
    if args.parallel > 0:
        modes.append(Mode(f"parallel{args.parallel}", study.parts))
    ctx = Bench(procs, root, study, deadline, args.send_timeout, args.keep)
    runs = run_all(ctx, receivers, modes, args.reps)
    report(args, study, runs, receivers, modes, load)
    failed = [run for run in runs if not run.ok]
    for run in failed:
        log(f"FAILED: {run.receiver} {run.mode} rep {run.rep}: {run.status}")
    return 1 if failed else 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    problems = preflight(args, make_receivers(args.names))
    for problem in problems:
        log(problem)
    if problems:
        return 2
    if wants_netns(args):
        reexec_in_netns(argv)
    for signum in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, on_signal)
    root = Path(tempfile.mkdtemp(prefix="dicomflow-bench-"))
    procs = Processes()
    try:
        return bench(args, root, procs)
    except KeyboardInterrupt:
        log("interrupted")
        return 130
    finally:
        procs.stop_all()
        if args.keep:
            log(f"kept {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
