"""The export outbox: results bound for other DICOM nodes are sent by C-STORE from a persisted queue,
retried with doubling back-off until the node takes them (a node that is down only delays delivery).

Each round claims its exports in the index before sending them, so two senders (two nodes during a lease
handover) never send the same export; a sender that dies mid-send leaves claims that end after
``processing.export_claim_seconds``, and those exports are sent again."""

from __future__ import annotations

import logging
import os
import uuid
from collections import defaultdict
from datetime import timedelta
from pathlib import Path

from sqlalchemy import Engine

from dicomflow import dimse
from dicomflow.config import Settings
from dicomflow.index import reading, utcnow, writing
from dicomflow.index.outbox import (
    OutboxEntry,
    claim_exports,
    export_failed,
    export_sent,
    has_claimable_exports,
)
from dicomflow.jobs._backoff import backoff

LOGGER = logging.getLogger(__name__)


class Outbox:
    """Delivers due outbox items, one association per node and round."""

    def __init__(self, settings: Settings, engine: Engine) -> None:
        self.settings = settings
        self.engine = engine

    def dispatch(self) -> int:
        """Claim and send what is due; returns how many items were delivered."""
        claimer = f"{self.settings.cluster.node_id}:{os.getpid()}:{uuid.uuid4().hex[:12]}"
        now = utcnow()
        until = now + timedelta(seconds=self.settings.processing.export_claim_seconds)
        with reading(self.engine) as conn:  # most rounds find nothing: no write transaction then
            if not has_claimable_exports(conn, now):
                return 0
        with writing(self.engine) as conn:
            due = claim_exports(conn, claimer, now, until)
        by_node: dict[str, list[OutboxEntry]] = defaultdict(list)
        for item in due:
            by_node[item.node].append(item)
        delivered = 0
        for node, items in by_node.items():
            try:
                delivered += self._deliver(node, items)
            except Exception as exc:  # free the claims now rather than when they end
                LOGGER.exception("exporting to %s failed", node)
                self._failed(items, f"sending failed: {type(exc).__name__}: {exc}")
        return delivered

    def _deliver(self, node_name: str, items: list[OutboxEntry]) -> int:
        node = self.settings.processing.nodes.get(node_name)
        data_dir = self.settings.data_dir.resolve()
        if node is None:
            self._failed(items, f"node {node_name!r} is not configured")
            return 0
        outgoing = {}
        for item in items:
            described = dimse.describe(data_dir / item.path)
            if described is None:
                self._failed([item], f"{item.path} is not a DICOM file")
            else:
                outgoing[described.path] = (item, described)
        statuses: dict[Path, str] = {}
        report = dimse.send(  # pynetdicom is loaded with the first export, not in every process
            [d for _, d in outgoing.values()],
            node.host,
            node.port,
            calling_ae=node.calling_ae_title,
            called_ae=node.ae_title,
            on_done=lambda path, status: statuses.__setitem__(path, status),
        )
        details = dict(report.failures)
        sent = [
            item.id for path, (item, _) in outgoing.items() if statuses.get(path) in ("success", "warning")
        ]
        with writing(self.engine) as conn:
            export_sent(conn, sent)
        for path, (item, _) in outgoing.items():
            if item.id not in sent:
                self._failed([item], f"{node_name} did not store it: {details.get(path, statuses.get(path))}")
        if sent:
            LOGGER.info("exported %d instance(s) to %s", len(sent), node_name)
        return len(sent)

    def _failed(self, items: list[OutboxEntry], error: str, statuses: dict[int, str] | None = None) -> None:
        processing = self.settings.processing
        with writing(self.engine) as conn:
            for item in items:
                delay = backoff(
                    item.attempts + 1, processing.export_retry_delay, processing.export_retry_delay_max
                )
                detail = f"{error} ({statuses[item.id]})" if statuses else error
                export_failed(conn, item.id, detail, utcnow() + delay)
        if items:
            LOGGER.warning("export of %d item(s) failed: %s; retrying with back-off", len(items), error)
