"""Prometheus counters of what happens in a process: instances received (by path and outcome), bytes,
rejections (by reason), job durations (by report type).

``dicomflow serve`` runs several forked processes (receivers, HTTP processes, the supervisor's processing
engine), and ``/metrics`` is answered by any one HTTP process, so the counters use prometheus-client's
multiprocess mode: :func:`share_between_processes` (called by the supervisor before it forks) points every
process at one directory, wiped at start, where each process keeps its values in a memory-mapped file;
:func:`exposition` sums them. Outside ``dicomflow serve`` the counters are the process's own.

The metric objects are made on first use in each process (prometheus-client, 1.4 MiB, is imported only by a
process that counts something); an increment costs a few microseconds, against milliseconds for an instance.
Gauges (queue depth, export backlog, lease holders) are not counted here: they are read from the index when
``/metrics`` is scraped (:mod:`dicomflow.usecases.metrics`).
"""

from __future__ import annotations

import os
import shutil
import threading
from pathlib import Path
from typing import Any

__all__ = [
    "MULTIPROCESS_VARIABLE",
    "exposition",
    "instance_received",
    "instance_rejected",
    "job_ended",
    "share_between_processes",
]

MULTIPROCESS_VARIABLE = "PROMETHEUS_MULTIPROC_DIR"
"""The environment variable prometheus-client reads (at import) for its multiprocess directory."""
JOB_BUCKETS = (1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1200.0, 1800.0, 3600.0, float("inf"))
"""Buckets of job durations, in seconds (jobs run seconds to an hour)."""


def share_between_processes(directory: Path) -> None:
    """Keep the counters of this process and of every process forked from it in ``directory``, emptied now.

    Call before anything imports prometheus-client (it reads :data:`MULTIPROCESS_VARIABLE` when imported),
    and while no other process uses the directory (``dicomflow serve`` holds the data directory's lock).
    """
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir(parents=True)
    os.environ[MULTIPROCESS_VARIABLE] = str(directory)


class _Metrics:
    """This process's metric objects and their labelled children (cached: ``labels()`` takes a lock)."""

    def __init__(self) -> None:
        from prometheus_client import Counter, Histogram

        self.received = Counter(
            "dicomflow_instances_received",
            "Instances received, by path (dimse, upload, import, pipeline, ...) and outcome (stored, "
            "duplicate, overwritten, kept-both, rejected).",
            ["path", "outcome"],
        )
        self.received_bytes = Counter(
            "dicomflow_received_bytes", "Bytes of instances received, by path.", ["path"]
        )
        self.rejected = Counter(
            "dicomflow_instances_rejected",
            "Instances (and associations) refused, by path and reason (the error code).",
            ["path", "reason"],
        )
        self.job_seconds = Histogram(
            "dicomflow_job_duration_seconds",
            "Duration of job attempts, by report type and outcome (succeeded, failed).",
            ["report_type", "outcome"],
            buckets=JOB_BUCKETS,
        )
        self._children: dict[tuple[str, ...], Any] = {}
        self._lock = threading.Lock()

    def child(self, metric: Any, *labels: str) -> Any:
        """``metric.labels(*labels)``, made once (a dict look-up then, without ``labels()``'s lock)."""
        key = (metric._name, *labels)
        found = self._children.get(key)
        if found is None:
            with self._lock:
                found = self._children[key] = metric.labels(*labels)
        return found


_MADE = threading.Lock()
_made: list[_Metrics] = []  # this process's metric objects, once made (fork: the child inherits them)


def _metrics() -> _Metrics:
    if not _made:
        with _MADE:  # two threads at once must not make (and register) them twice
            if not _made:
                _made.append(_Metrics())
    return _made[0]


def instance_received(path: str, outcome: str, size: int) -> None:
    """Count one instance received by ``path`` with ``outcome`` and ``size`` bytes (rejections: ``size``
    of what arrived, outcome ``rejected``). About 7 us, two thirds of it prometheus-client's mmap writes."""
    metrics = _metrics()
    metrics.child(metrics.received, path, outcome).inc()
    if size:
        metrics.child(metrics.received_bytes, path).inc(size)


def instance_rejected(path: str, reason: str) -> None:
    """Count one refusal by ``path`` for ``reason`` (an error code)."""
    metrics = _metrics()
    metrics.child(metrics.rejected, path, reason).inc()


def job_ended(report_type: str, outcome: str, seconds: float) -> None:
    """Record one job attempt of ``report_type`` that took ``seconds``."""
    metrics = _metrics()
    metrics.child(metrics.job_seconds, report_type, outcome).observe(seconds)


def exposition(*more: Any) -> tuple[bytes, str]:
    """The counters (of every process sharing the directory, else of this one) and the metric families
    that the collectors ``more`` yield, in the Prometheus text format; and its content type."""
    from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest

    counted = REGISTRY
    if os.environ.get(MULTIPROCESS_VARIABLE):
        from prometheus_client.multiprocess import MultiProcessCollector

        counted = CollectorRegistry()
        MultiProcessCollector(counted)  # type: ignore[no-untyped-call]  # prometheus-client leaves it unannotated
    _metrics()  # so that the families exist (at 0) before anything was counted
    extra = CollectorRegistry(auto_describe=False)
    for collector in more:
        extra.register(collector)
    return generate_latest(counted) + generate_latest(extra), CONTENT_TYPE_LATEST
