"""HTTP upload benchmark: dicomflow's native upload API side by side with Orthanc's REST ``POST /instances``.

Usage (as root, from the repository root)::

    .venv/bin/python bench/upload.py [--count 1000] [--reps 3] [--parallel 10] [--rows 512 --cols 512]
        [--out FILE.md] [--keep] [--no-netns] [--timeout 600]

What it does:

* generates one synthetic CT study once with ``bench/ingest.py``'s generator (``--count`` slices of
  ``--rows`` x ``--cols`` int16, explicit VR little endian) into a temp dir;
* re-executes itself in a private network namespace whose only interface is loopback (``unshare --net``,
  needs root) unless ``--no-netns``; servers and client run in it;
* per repetition (interleaved: dicomflow, then Orthanc), starts a FRESH server on an empty store and times
  one upload of the whole study with ``--parallel`` requests in flight, one file per request:

  - dicomflow: through the SDK (``dicomflow.client``): ``POST /api/v1/uploads``, ``PUT
    /api/v1/uploads/{id}/files`` per file, ``POST .../complete``, then ``GET /api/v1/uploads/{id}`` every
    50 ms until the import has ended: the time runs until every instance is stored and indexed;
  - Orthanc: ``POST /instances`` per file with httpx (the body is the file); Orthanc answers once the
    instance is stored and indexed;

  then checks how many instances the server stored, samples its CPU, stops it and deletes its store;
* prints the medians of instances/s, MB/s and server CPU and the ratio dicomflow / Orthanc (goal >= 1.0).

Exit status: 0 if every run stored every instance, 1 otherwise, 2 if something needed is missing, 130 when
interrupted. Needs the venv (dicomflow, httpx, numpy, pydicom) and the Debian packages orthanc, iproute2 and
util-linux; installs nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
import ingest  # noqa: E402  # bench/ingest.py: the study generator and process helpers

from dicomflow.client import Client  # noqa: E402

NETNS_MARKER = "DICOMFLOW_BENCH_UPLOAD_NETNS"
DICOMFLOW_PORTS = (11130, 18130)  # DIMSE, HTTP
ORTHANC_PORTS = (11132, 18132)
ADMIN = "bench@example.org"
PROJECT = "bench"
START_TIMEOUT = 60.0
POLL = 0.05
SERVERS = ("dicomflow", "orthanc")


@dataclass(frozen=True)
class Run:
    server: str
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
            f"{self.server:<9} rep {self.rep}: {self.wall:7.2f} s {self.sent / self.wall:7.1f} inst/s "
            f"{self.nbytes / 1e6 / self.wall:7.1f} MB/s CPU {100 * self.cpu / self.wall:4.0f}%  "
            f"stored {self.stored}/{self.sent}  {self.status}"
        )


@dataclass
class Bench:
    args: argparse.Namespace
    procs: ingest.Processes
    root: Path
    files: list[Path]
    nbytes: int


def http_client(parallel: int, timeout: float) -> httpx.Client:
    """One connection per request in flight, never through a proxy."""
    limits = httpx.Limits(max_connections=parallel, max_keepalive_connections=parallel)
    return httpx.Client(timeout=timeout, limits=limits, trust_env=False)


def wait_http(url: str, proc: subprocess.Popen[bytes], auth: tuple[str, str] | None = None) -> bool:
    """Poll ``url`` until it answers 2xx; False if the process exits or it does not in time."""
    end = time.monotonic() + START_TIMEOUT
    with httpx.Client(timeout=2, trust_env=False, auth=auth) as client:
        while time.monotonic() < end:
            if proc.poll() is not None:
                return False
            try:
                if client.get(url).is_success:
                    return True
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
    return False


# ---- dicomflow ---------------------------------------------------------------------------------------------


def dicomflow_cli(data: Path, *args: str) -> str:
    exe = str(ingest.dicomflow_executable())
    done = subprocess.run(
        [exe, *args, "--data-dir", str(data)], capture_output=True, text=True, timeout=120, check=True
    )
    return done.stdout.strip()


def start_dicomflow(ctx: Bench, work: Path) -> tuple[subprocess.Popen[bytes], str] | None:
    data = work / "store"
    dicomflow_cli(data, "users", "create", ADMIN, "--password", "bench password 1234", "--role", "admin")
    token = dicomflow_cli(data, "tokens", "create", "--user", ADMIN)
    dimse, http = DICOMFLOW_PORTS
    argv = [str(ingest.dicomflow_executable()), "serve", "--data-dir", str(data)]
    argv += ["--dimse-port", str(dimse), "--http-port", str(http)]
    proc = ctx.procs.start(argv, {}, work / "server.log")
    if not wait_http(f"http://127.0.0.1:{http}/health", proc):
        ingest.log(f"dicomflow did not come up; its log ends with:\n{ingest.tail(work / 'server.log')}")
        ctx.procs.stop(proc)
        return None
    with httpx.Client(trust_env=False, headers={"Authorization": f"Bearer {token}"}) as client:
        client.post(f"http://127.0.0.1:{http}/api/v1/projects", json={"label": PROJECT}).raise_for_status()
    return proc, token


def upload_dicomflow(ctx: Bench, token: str) -> int:
    """One upload of the study through the SDK; returns the instances the import stored."""
    parallel = ctx.args.parallel
    url = f"http://127.0.0.1:{DICOMFLOW_PORTS[1]}"
    with http_client(parallel, ctx.args.timeout) as http, Client(url, token, http=http) as client:
        t0 = time.perf_counter()
        upload = client.create_upload(PROJECT)
        client.upload_files(upload.id, ctx.files, parallel=parallel)
        client.complete_upload(upload.id)
        t1 = time.perf_counter()
        done = client.wait_for_import(upload.id, timeout=ctx.args.timeout, poll=POLL)
        t2 = time.perf_counter()
    ingest.log(
        f"dicomflow: files sent and upload completed in {t1 - t0:.2f} s, import ended {t2 - t1:.2f} s later"
    )
    if done.errors or done.summary_errors:
        ingest.log(f"dicomflow upload errors: {done.summary_errors} {done.errors[:3]}")
    return done.instances_imported


# ---- Orthanc -----------------------------------------------------------------------------------------------


def start_orthanc(ctx: Bench, work: Path) -> subprocess.Popen[bytes] | None:
    (work / "store").mkdir()
    (work / "index").mkdir()
    dimse, http = ORTHANC_PORTS
    config = work / "orthanc.json"
    config.write_text(json.dumps(ingest.orthanc_config(work, work / "store", dimse, http), indent=2))
    proc = ctx.procs.start(["Orthanc", str(config)], ingest.NODELAY, work / "server.log")
    if not wait_http(f"http://127.0.0.1:{http}/system", proc):
        ingest.log(f"Orthanc did not come up; its log ends with:\n{ingest.tail(work / 'server.log')}")
        ctx.procs.stop(proc)
        return None
    return proc


def upload_orthanc(ctx: Bench, _token: str) -> int:
    """``POST /instances`` of every file, ``--parallel`` at once; returns Orthanc's instance count."""
    url = f"http://127.0.0.1:{ORTHANC_PORTS[1]}"
    failures: list[str] = []
    lock = threading.Lock()
    with http_client(ctx.args.parallel, ctx.args.timeout) as http:

        def post(path: Path) -> None:
            response = http.post(f"{url}/instances", content=path.read_bytes())
            if not response.is_success:
                with lock:
                    failures.append(f"{path.name}: HTTP {response.status_code}")

        with ThreadPoolExecutor(max_workers=ctx.args.parallel) as pool:
            list(pool.map(post, ctx.files))
        if failures:
            ingest.log(f"Orthanc refused {len(failures)} file(s), e.g. {failures[0]}")
        return int(http.get(f"{url}/statistics").json()["CountInstances"])


# ---- runs --------------------------------------------------------------------------------------------------


def run_one(ctx: Bench, server: str, rep: int) -> Run:
    """A fresh server, one timed upload of the study, then stop it and delete its store."""
    work = ctx.root / f"run_{server}_{rep}"
    work.mkdir(parents=True)
    sent, nbytes = len(ctx.files), ctx.nbytes
    proc: subprocess.Popen[bytes] | None = None
    try:
        if server == "dicomflow":
            started = start_dicomflow(ctx, work)
            proc, token = started if started else (None, "")
        else:
            proc, token = start_orthanc(ctx, work), ""
        if proc is None:
            return Run(server, rep, sent, nbytes, "start failed")
        upload: Callable[[Bench, str], int] = upload_dicomflow if server == "dicomflow" else upload_orthanc
        os.sync()
        time.sleep(ingest.SETTLE_SECONDS)
        cpu0, t0 = ingest.tree_cpu_seconds(proc.pid), time.perf_counter()
        try:
            stored = upload(ctx, token)
        except Exception as exc:  # noqa: BLE001  # a failed run is reported, the others go on
            ingest.log(f"{server} rep {rep}: {type(exc).__name__}: {exc}")
            return Run(server, rep, sent, nbytes, f"failed: {type(exc).__name__}")
        wall, cpu = time.perf_counter() - t0, ingest.tree_cpu_seconds(proc.pid) - cpu0
        status = "ok" if stored == sent else f"stored {stored} of {sent}"
        return Run(server, rep, sent, nbytes, status, stored, wall, cpu)
    finally:
        if proc is not None:
            ctx.procs.stop(proc)
        shutil.rmtree(work / "store" if ctx.args.keep else work, ignore_errors=True)


def median_rate(runs: list[Run], server: str) -> float:
    values = [run.sent / run.wall for run in runs if run.server == server and run.ok]
    return statistics.median(values) if values else float("nan")


def report(ctx: Bench, runs: list[Run], load: tuple[float, float, float]) -> None:
    args = ctx.args
    rows = [["server", "instances/s", "MB/s", "server CPU %", "wall s (each rep)", "runs ok"]]
    for server in SERVERS:
        mine = [run for run in runs if run.server == server]
        good = [run for run in mine if run.ok]

        def med(value: Callable[[Run], float], good: list[Run] = good) -> float:
            return statistics.median([value(run) for run in good]) if good else float("nan")

        rows.append(
            [
                server,
                ingest.fmt(med(lambda r: r.sent / r.wall)),
                ingest.fmt(med(lambda r: r.nbytes / 1e6 / r.wall), 1),
                ingest.fmt(med(lambda r: 100 * r.cpu / r.wall)),
                ", ".join(ingest.fmt(run.wall, 2) for run in mine),
                f"{len(good)}/{len(mine)}",
            ]
        )
    ratio = median_rate(runs, "dicomflow") / median_rate(runs, "orthanc")
    network = "private namespace, loopback only" if os.environ.get(NETNS_MARKER) == "1" else "host namespace"
    context = [
        f"data: {len(ctx.files)} CT slices {args.rows}x{args.cols} int16, explicit VR LE, "
        f"{ctx.nbytes / 1e6:.1f} MB; {args.parallel} requests in flight, one file each; medians of "
        f"{args.reps} rep(s)",
        f"machine: {os.cpu_count()} cores, load average at start {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}; "
        f"network: {network}",
        "dicomflow: SDK upload_files + complete, timed until GET /uploads/{id} says imported; "
        "Orthanc: POST /instances, timed until the last answer",
        "server CPU % = CPU seconds of the server's process tree / wall seconds (100 = one core); "
        "the client's CPU is not in it",
    ]
    table = ingest.render_text(rows)
    ingest.out()
    ingest.out("\n".join(context))
    ingest.out()
    ingest.out(table)
    ingest.out()
    ingest.out(f"dicomflow / orthanc (instances/s): {ingest.fmt(ratio, 2)}x (goal >= 1.0)")
    if args.out:
        lines = ["# dicomflow upload benchmark", "", *[f"- {line}" for line in context], ""]
        lines += [ingest.render_markdown(rows), "", f"dicomflow / orthanc: **{ingest.fmt(ratio, 2)}x**"]
        args.out.write_text("\n".join(lines) + "\n")


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="bench/upload.py",
        description=(__doc__ or "").split("\n\n", 1)[0],
        epilog="See the module docstring or bench/README.md for what is measured.",
    )
    parser.add_argument("--count", type=int, default=1000, help="CT slices in the study (default 1000)")
    parser.add_argument("--reps", type=int, default=3, help="repetitions per server (default 3)")
    parser.add_argument("--parallel", type=int, default=10, help="requests in flight (default 10)")
    parser.add_argument("--rows", type=int, default=512, help="slice rows (default 512)")
    parser.add_argument("--cols", type=int, default=512, help="slice columns (default 512)")
    parser.add_argument("--out", type=Path, help="also write the results as markdown to this file")
    parser.add_argument("--keep", action="store_true", help="keep the temp dir (data and logs)")
    parser.add_argument("--no-netns", action="store_true", help="stay in the host network namespace")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds per upload (default 600)")
    args = parser.parse_args(argv)
    if min(args.count, args.reps, args.parallel, args.rows, args.cols) < 1:
        parser.error("--count, --reps, --parallel, --rows and --cols must be at least 1")
    return args


def preflight(args: argparse.Namespace) -> list[str]:
    tools = ["Orthanc", str(ingest.dicomflow_executable())]
    netns = not args.no_netns and os.environ.get(NETNS_MARKER) != "1"
    tools += ["unshare", "ip"] if netns else []
    problems = [ingest.install_hint(tool) for tool in tools if shutil.which(tool) is None]
    if netns and os.geteuid() != 0:
        problems.append("the private network namespace needs root: run as root, or pass --no-netns")
    return problems


def reexec_in_netns(argv: list[str]) -> None:
    """Replace this process by itself inside a new network namespace with loopback up; does not return."""
    script = str(Path(__file__).resolve())
    inner = ["sh", "-c", 'ip link set lo up && exec "$@"', "sh", sys.executable, script, *argv]
    os.execvpe("unshare", ["unshare", "--net", "--", *inner], {**os.environ, NETNS_MARKER: "1"})


def bench(args: argparse.Namespace, root: Path, procs: ingest.Processes) -> int:
    load = os.getloadavg()
    t0 = time.perf_counter()
    ingest.log(f"generating {args.count} CT slices {args.rows}x{args.cols}")
    files = ingest.write_study(root / "study", args.count, args.rows, args.cols)
    nbytes = sum(len(f.read_bytes()) for f in files)  # and into the page cache
    ingest.log(f"generated {nbytes / 1e6:.1f} MB in {time.perf_counter() - t0:.1f} s")
    ctx = Bench(args, procs, root, files, nbytes)
    runs = []
    for rep in range(1, args.reps + 1):
        for server in SERVERS:
            ingest.log(f"run: {server} rep {rep}")
            run = run_one(ctx, server, rep)
            ingest.log(run.line() if run.stored is not None else f"{server} rep {rep}: {run.status}")
            runs.append(run)
    report(ctx, runs, load)
    return 0 if all(run.ok for run in runs) else 1


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    problems = preflight(args)
    for problem in problems:
        ingest.log(problem)
    if problems:
        return 2
    if not args.no_netns and os.environ.get(NETNS_MARKER) != "1":
        reexec_in_netns(argv)
    for signum in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, ingest.on_signal)
    root = Path(tempfile.mkdtemp(prefix="dicomflow-bench-upload-"))
    procs = ingest.Processes()
    try:
        return bench(args, root, procs)
    except KeyboardInterrupt:
        ingest.log("interrupted")
        return 130
    finally:
        procs.stop_all()
        if args.keep:
            ingest.log(f"kept {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
