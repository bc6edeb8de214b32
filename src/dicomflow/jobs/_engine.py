"""The processing engine: one background loop that tracks arrivals, starts settled studies, runs jobs and
delivers exports. ``dicomflow serve`` runs it on a thread; ``dicomflow import --report-type`` drives it
until its studies end.

Several nodes may run it on one index: every node runs its executor (each job is claimed by one worker),
but the tracker and promotion, the outbox, job recovery and any added duty run only on the node holding
their lease (:mod:`dicomflow.jobs._leases`)."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence

from sqlalchemy import Engine

from dicomflow.config import JobExecutor, Settings
from dicomflow.flow import TERMINAL, Stage
from dicomflow.index import reading
from dicomflow.index.studies import StudyInfo, list_studies
from dicomflow.jobs._celery import CeleryExecutor
from dicomflow.jobs._executor import EmbeddedExecutor, Executor
from dicomflow.jobs._flow import Flow
from dicomflow.jobs._leases import JOB_RECOVERY, OUTBOX, TRACKER, Lease, LeasedDuty
from dicomflow.jobs._outbox import Outbox
from dicomflow.pipelines import ReportTypes, load_report_types
from dicomflow.storage import FileSystemBlobStore

LOGGER = logging.getLogger(__name__)


class ProcessingEngine:
    """Flow, executor and outbox over one installation.

    Given a ``flow`` (the process's own, with its blob store and report types), the engine runs on it and
    leaves closing it to its owner; otherwise it builds and closes its own. Its leases are held as the node
    (``cluster.node_id``), or as ``holder``: a process that is not the node's server (``dicomflow import``)
    must not share the server's name, or both would believe they hold the lease.
    """

    def __init__(
        self,
        settings: Settings,
        engine: Engine,
        registry: ReportTypes | None = None,
        *,
        track: bool = True,
        flow: Flow | None = None,
        holder: str | None = None,
    ) -> None:
        self.settings = settings
        self.engine = engine
        self._owns_flow = flow is None
        if flow is None:
            registry = registry or load_report_types(
                settings.processing.plugins, settings.processing.aliases, settings.processing.options
            )
            flow = Flow(
                settings,
                engine,
                FileSystemBlobStore(settings.blob_root, fsync=settings.storage.fsync),
                registry,
            )
        self.registry = flow.registry
        self.store = flow.store
        self.flow = flow
        self.executor: Executor = (
            CeleryExecutor(settings, engine)
            if settings.jobs.executor is JobExecutor.CELERY
            else EmbeddedExecutor(settings, engine, self.flow)
        )
        self.outbox = Outbox(settings, engine)
        self.holder = holder
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        recovery_interval = max(settings.processing.heartbeat, settings.processing.stale_after / 3)
        self.recovery = LeasedDuty(
            Lease.of(settings, engine, JOB_RECOVERY, holder), self.executor.recover, every=recovery_interval
        )
        self.duties: list[LeasedDuty] = [self.recovery]
        if track:  # node mode starts studies itself, when an association is released
            self.add_duty(TRACKER, self.flow.track, self.flow.promote_settled)
        self.add_duty(OUTBOX, self.outbox.dispatch)

    def add_duty(self, name: str, *duties: Callable[[], object], every: float = 0.0) -> LeasedDuty:
        """Run ``duties`` each round (at most every ``every`` seconds) on the node holding lease ``name``:
        a background singleton such as a connector poller."""
        leased = LeasedDuty(Lease.of(self.settings, self.engine, name, self.holder), *duties, every=every)
        self.duties.append(leased)
        return leased

    def step(self) -> None:
        """One round: the executor, and every duty whose lease this node holds; errors are logged and the
        next round tries again."""
        try:
            self.executor.step()
        except Exception:
            LOGGER.exception("processing step %s failed", "executor.step")
        for duty in self.duties:
            duty.run()

    def start(self) -> None:
        """Resume lost jobs (if this node holds the recovery lease), then run the loop on a daemon thread."""
        self.recovery.run()
        self._thread = threading.Thread(target=self._loop, name="dicomflow-processing", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.wait(self.settings.processing.poll_interval):
            self.step()

    def stop(self) -> None:
        """Stop the loop and the running attempts (resumed at the next start)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(30)
        for duty in self.duties:
            duty.release()
        self.executor.stop()
        if self._owns_flow:
            self.flow.close()
            self.store.close()

    def run_until_settled(self, study_ids: Sequence[int], timeout: float | None = None) -> list[StudyInfo]:
        """Drive the loop here until the studies end or wait for review (``import --report-type``)."""
        self.executor.recover()
        deadline = None if timeout is None else time.monotonic() + timeout
        waiting = TERMINAL | {Stage.QUALITY_CONTROL}
        while True:
            self.step()
            with reading(self.engine) as conn:
                studies = [s for s in list_studies(conn, latest_only=False) if s.id in set(study_ids)]
            if all(s.stage in waiting for s in studies) and self.executor.busy == 0:
                return studies
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"studies still running after {timeout} s")
            time.sleep(self.settings.processing.poll_interval)
