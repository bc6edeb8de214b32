"""``GET /metrics``: the counters of every process of this server, and gauges read from the index at scrape
time (queue depth by report type, export backlog by node, lease holders), in the Prometheus text format.

Gauges come from the index, not from counters kept by one process: the index is the one place that knows
them for every node and worker, and each is one grouped query over an indexed column.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from dicomflow import metrics
from dicomflow.index import reading, utcnow
from dicomflow.index.jobs import queue_depth
from dicomflow.index.leases import current_leases
from dicomflow.index.outbox import export_backlog

if TYPE_CHECKING:
    from dicomflow.runtime import Application


class _IndexGauges:
    """A prometheus-client collector: the gauges of the index, read at each scrape."""

    def __init__(self, app: Application) -> None:
        self.app = app

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import GaugeMetricFamily

        with reading(self.app.engine) as conn:
            depth = queue_depth(conn)
            backlog = export_backlog(conn)
            leases = current_leases(conn, utcnow())
        jobs = GaugeMetricFamily(
            "dicomflow_jobs_waiting",
            "Jobs not ended (queue depth), by report type and state (queued, retrying, running).",
            labels=["report_type", "state"],
        )
        for (report_type, state), count in sorted(depth.items()):
            jobs.add_metric([report_type, state], count)
        exports = GaugeMetricFamily(
            "dicomflow_export_backlog", "Exports not yet delivered, by node.", labels=["node"]
        )
        for node, count in sorted(backlog.items()):
            exports.add_metric([node], count)
        holders = GaugeMetricFamily(
            "dicomflow_lease_holder",
            "Background duties and the node holding each (1 while its lease runs).",
            labels=["lease", "holder"],
        )
        for lease in leases:
            holders.add_metric([lease.name, lease.holder], 1)
        yield from (jobs, exports, holders)


def scrape(app: Application) -> tuple[bytes, str]:
    """The metrics page and its content type.

    Raises
    ------
    IndexUnavailable
        If the index cannot answer (the counters alone would hide it).
    """
    return metrics.exposition(_IndexGauges(app))
